"""The project's own error hierarchy; library errors are translated into it at the protocol boundary.

EdgeAgentError
├── ConfigError            a configuration file that cannot be used (carries every problem found)
└── DeviceError            a device did not give us what we asked for (device, address, code)
    ├── DeviceUnreachable  no connection, or no answer within the caller's time bound
    ├── DeviceRejected     the device answered with an error or exception code
    └── DeviceGarbage      the device answered something we cannot decode
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Base class of every error edge-agent raises on purpose."""


class ConfigError(EdgeAgentError):
    """A configuration that cannot be used; `problems` lists 'path: message' lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class StartupError(EdgeAgentError):
    """The agent cannot start: the message names the resource and the reason."""


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
