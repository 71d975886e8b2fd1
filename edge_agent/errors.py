"""The project's own error hierarchy: every exception class edge_agent defines, and only here.

EdgeAgentError
├── ConfigError            a configuration file that cannot be used (carries every problem found)
├── StartupError           the agent cannot start: an address it cannot bind, a buffer it cannot open
├── ShutdownIncomplete     a stop that could not commit every accepted reading (how many)
├── DeviceError            a device did not give us what we asked for (device, address, code)
│   ├── DeviceUnreachable  no connection, or no answer within the caller's time bound
│   ├── DeviceRejected     the device answered with an error or exception code
│   └── DeviceGarbage      the device answered something we cannot decode
├── ModelError             a policy model or savings baseline that cannot be used (path, reason)
│   └── InferenceFailed    the model loads, and fails when it is run (error: the ModelError)
├── BufferUnreadable       a buffer file the read-only tools cannot read (path, reason)
├── JournalError           the write journal cannot be written: the write it was to record is not sent
├── Refused                a command-line request refused before anything was sent: usage or policy
├── CommandRefused         an MQTT command refused: the reply's code, and the request's field at fault
├── BusRequestFailed       a technician's Modbus request on the agent's bus refused or failed (code)
├── ExceptionAnswer        a Modbus exception answer on the wire (code)
└── MalformedAnswer        a Modbus answer that does not fit its request

Library errors are translated into this tree at the protocol boundary, one module per library:
protocols/modbus/errors.py (pymodbus, and our own Modbus TCP wire), protocols/bacnet/errors.py (bacpypes3),
store/errors.py (sqlite3), store/holds.py (sqlite3, the write journal), control/onnx_policy.py (onnxruntime);
the uplink keeps aiomqtt's MqttError inside uplink/session.py, which retries on it and never lets it out.

Signals that never leave their home are drawn all the same, so that this is the one place to look:
- ExceptionAnswer, MalformedAnswer: what every Modbus wire raises; ModbusClient turns them into DeviceErrors.
- CommandRefused: raised inside uplink/commands.py and the commands it runs (service/model_push.py), and
  caught by the router, which turns it into a reply.
- BusRequestFailed: raised in service/bus_requests.py, a reply on the local socket; the command line's
  agent wire (cli/agent_bus.py) turns it back into the wire's errors.
- cli/model_card.py's protobuf walker says "corrupt" with ValueError or TypeError, caught there: no class.
A test (tests/test_errors.py) holds this drawing and the code to each other.
"""

from __future__ import annotations

from pathlib import Path


class EdgeAgentError(Exception):
    """Base class of every error edge-agent raises on purpose."""


class ConfigError(EdgeAgentError):
    """A configuration that cannot be used; `problems` lists 'path: message' lines."""

    def __init__(
        self, source: str, problems: list[str], details: list[dict[str, object]] | None = None
    ) -> None:
        self.source = source
        self.problems = problems
        self.details = details if details is not None else [_whole_file(p) for p in problems]
        """The problems as data (where, message, line, suggestion, device), for `config check --json`."""
        super().__init__(f"{source}: " + "; ".join(problems))


def _whole_file(problem: str) -> dict[str, object]:
    return {"where": "", "message": problem, "line": None, "suggestion": None, "device": None}


class StartupError(EdgeAgentError):
    """The agent cannot start: the message names the resource and the reason. `restart_helps` False: an
    operator must fix it first (the message says how); the agent then exits 2 and systemd does not restart
    it."""

    def __init__(self, message: str, *, restart_helps: bool = True) -> None:
        super().__init__(message)
        self.restart_helps = restart_helps


class ShutdownIncomplete(EdgeAgentError):
    """The agent stopped without committing `readings` accepted readings to its buffer (they are lost)."""

    def __init__(self, readings: int) -> None:
        super().__init__(f"stopped with {readings} accepted readings not committed to the buffer: lost")
        self.readings = readings


class DeviceError(EdgeAgentError):
    """A device failed a request: which device, at which address (register or object), and why."""

    def __init__(self, device: str, address: str, message: str, code: str | None = None) -> None:
        self.device = device
        self.address = address
        self.code = code
        detail = f" ({code})" if code else ""
        super().__init__(f"{device} {address}: {message}{detail}")


class DeviceUnreachable(DeviceError):
    """No connection to the device, or the connection broke."""


class DeviceRejected(DeviceError):
    """The device answered with an error: a Modbus exception code or a BACnet error/reject/abort."""


class DeviceGarbage(DeviceError):
    """The device answered with something that cannot be decoded."""


class ModelError(EdgeAgentError):
    """A policy model that cannot be used: missing, corrupt, mismatched, or failing (onnx_policy.py); or a
    savings baseline file that cannot be read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"model {path}: {reason}")
        self.path = path
        self.reason = reason


class InferenceFailed(ModelError):
    """The model loads, and fails when it is run (the agent would then fall back to the rules)."""

    def __init__(self, error: ModelError) -> None:
        super().__init__(error.path, error.reason)
        self.error = error


class BufferUnreadable(EdgeAgentError):
    """The buffer file is missing, or is not an edge-agent buffer SQLite can read."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"buffer {path}: {reason}")
        self.path = path
        self.reason = reason


class JournalError(EdgeAgentError):
    """The write journal (control/holds.py) could not record or forget a hold: which file, and why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"write journal {path}: {reason}")
        self.path = path
        self.reason = reason


class Refused(EdgeAgentError):
    """A request edge-agent will not carry out: a usage or policy mistake. Nothing was sent."""


class CommandRefused(EdgeAgentError):
    """A command from the central platform refused: `code` is the reply's error code (a CommandErrorCode),
    `field` the request's field at fault as a dotted path, when there is one."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class BusRequestFailed(EdgeAgentError):
    """A `modbus_request` on the agent's local socket refused or failed: `code` is the reply's (invalid,
    unknown-link, not-writable, out-of-limits, modbus-exception, malformed, unreachable, timeout); `exception`
    the Modbus exception code when the device answered with one."""

    def __init__(self, code: str, message: str, exception: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.exception = exception


class ExceptionAnswer(EdgeAgentError):
    """The device answered with a Modbus exception (`code`: 2 is "illegal data address")."""

    def __init__(self, code: int) -> None:
        super().__init__(f"modbus exception {code}")
        self.code = code


class MalformedAnswer(EdgeAgentError):
    """An answer that does not fit its request: another function, a wrong length, a bad frame."""
