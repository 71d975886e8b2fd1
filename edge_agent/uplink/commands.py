"""Commands from the central platform: validate a request, carry it out, reply.

Bytes in, a CommandReply out; nothing here knows MQTT. Every check runs before anything is touched, so a
refused command changes nothing, and `CommandRouter.handle` always answers (only cancellation escapes).
`handle` serves the trusted local socket; `handle_delivery` serves the broker's deliveries, which an
Admission (admission.py: signature, expiry, once-only) checks before they run.
The request and reply shapes are published as JSON Schemas in docs/schemas/ (scripts/write_schemas.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NoReturn, Protocol, get_args, runtime_checkable

import structlog
from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError, field_serializer
from pydantic.json_schema import JsonSchemaValue

from edge_agent.config import AgentConfig, BacnetDevice
from edge_agent.config.base import Name
from edge_agent.control.points import Points
from edge_agent.control.settings import ControlMode, ControlSettings
from edge_agent.errors import CommandRefused, DeviceError
from edge_agent.readings import utc_now

log = structlog.get_logger("edge_agent.commands")

MAX_COMMAND_BYTES = 16384  # larger payloads are refused unread, but for apply_config's
MAX_CONFIG_COMMAND_BYTES = 192 * 1024  # apply_config: a whole configuration file (MQTT 5 packets: 256 KiB)
WRITE_TIMEOUT_S = 30.0  # bound on one write_point, connection included
COMMAND_PRIORITIES = (9, 15)  # BACnet priorities a command may write at: operator (8) and life safety win
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MODEL_FILE_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,58}\.onnx$"
EXPIRES_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"  # RFC 3339
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class CommandHandlers(Protocol):
    """What the router acts on: the running agent, or a fake in tests."""

    @property
    def config(self) -> AgentConfig: ...
    @property
    def control(self) -> ControlSettings: ...  # mutable: the router assigns its fields
    @property
    def points(self) -> Points: ...  # writes go through it
    def status(self) -> object: ...  # a dataclass tree
    def rebirth(self) -> None: ...


class ConfigPush(Protocol):
    """What apply_config acts on (service/config_rollout.py); a router without one refuses it."""

    async def apply(self, args: ApplyConfigArgs) -> dict[str, JsonValue]: ...


# --- requests ---------------------------------------------------------------------------------------

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    """No unknown fields, no coercion: "12" is not a number and true is not 1."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True)


class NoArgs(_Strict):
    """Commands without arguments take `{}`, or no `args` at all."""


class DemandTargetArgs(_Strict):
    kw: FiniteFloat
    """The building demand (15-minute average) to stay under, within the configured limits."""


class ControlModeArgs(_Strict):
    mode: Annotated[ControlMode, Field(strict=False)]  # strict would want the enum object, not its string
    """off: nothing computed; shadow: decisions computed and logged, never written; active: written."""


class WritePointArgs(_Strict):
    device: Name
    point: Name
    value: FiniteFloat | None
    """Within the point's write_range; null relinquishes the agent's priority (BACnet only)."""
    priority: Annotated[int, Field(ge=1, le=16)] | None = None
    """BACnet only, 9-15; default: the device's write_priority."""


class ApplyModelArgs(_Strict):
    file: Annotated[str, Field(pattern=MODEL_FILE_PATTERN)]
    """The model's file name ('load_shaving-v8.onnx'): how the gateway names it on disk and in the birth."""
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    """Of the model file's exact bytes, hex: the bytes received or fetched must have it."""
    signature: str | None = None
    """The model's `.sig` line, as `edge-agent model sign` writes it: 'ed25519:<key> <base64 signature>'.
    Required: a pushed model must be signed by a key of [control] model_keys."""
    data: str | None = None
    """The model file, base64 (the command stays under 16 KiB: a model up to about 11 KiB); or `url`."""
    url: Annotated[str, Field(pattern=r"^https?://", max_length=2048)] | None = None
    """Where the gateway fetches the model (http or https; at most 16 MiB, within 60 s); or `data`."""


class ApplyConfigArgs(_Strict):
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:+-]{1,64}$")]
    """The configuration's version as central names it; the birth's `config.version` shows it."""
    config: Annotated[str, Field(min_length=1)]
    """The whole configuration file, TOML text, checked as `edge-agent config check` checks a file."""


Expires = Annotated[str, Field(pattern=EXPIRES_PATTERN, json_schema_extra={"format": "date-time"})]


class Request(_Strict):
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    """Chosen by the sender, unique for the command's lifetime; the reply carries it back."""
    expires: Expires | None = None
    """RFC 3339, UTC ('2026-12-07T17:00:00Z'): not run after this. Required over MQTT (the local socket
    takes none); at most [commands] max_expiry_s ahead."""

    def expiry(self) -> datetime | None:
        """`expires` as an aware datetime (the pattern has already checked its form)."""
        if self.expires is None:
            return None
        try:
            return datetime.fromisoformat(self.expires)
        except ValueError:  # 2026-02-30 fits the pattern
            message = f"expires: {self.expires!r} is no date and time"
            raise CommandRefused(CommandErrorCode.INVALID, message, "expires") from None


class SetDemandTarget(Request):
    """Set the demand target the controller keeps the building under."""

    command: Literal["set_demand_target"]
    args: DemandTargetArgs


class SetControlMode(Request):
    """Switch load shaving off, to shadow (decide, never write) or to active."""

    command: Literal["set_control_mode"]
    args: ControlModeArgs


class WritePoint(Request):
    """Write one point of one device, or relinquish it (BACnet)."""

    command: Literal["write_point"]
    args: WritePointArgs


class Rebirth(Request):
    """Publish the gateway's birth messages again."""

    command: Literal["rebirth"]
    args: NoArgs = NoArgs()


class Status(Request):
    """Reply with the agent's status: devices, queue, buffer, uplink."""

    command: Literal["status"]
    args: NoArgs = NoArgs()


class ApplyModel(Request):
    """Run a signed control model: checked, in shadow for [control] model_shadow_s, then it decides."""

    command: Literal["apply_model"]
    args: ApplyModelArgs


class ApplyConfig(Request):
    """Replace the configuration file and restart on it, on trial: rolled back unless healthy in time."""

    command: Literal["apply_config"]
    args: ApplyConfigArgs


Command = Annotated[
    SetDemandTarget | SetControlMode | WritePoint | Rebirth | Status | ApplyModel | ApplyConfig,
    Field(discriminator="command"),
]
_COMMAND: TypeAdapter[Command] = TypeAdapter(Command)
COMMAND_NAMES: tuple[str, ...] = tuple(
    get_args(model.model_fields["command"].annotation)[0]
    for model in (SetDemandTarget, SetControlMode, WritePoint, Rebirth, Status, ApplyModel, ApplyConfig)
)
LARGE_COMMANDS = ("apply_config",)  # the commands that may take up to MAX_CONFIG_COMMAND_BYTES


@runtime_checkable
class ModelHandler(Protocol):
    """What runs apply_model (the agent: service/model_push.py)."""

    async def apply_model(self, args: ApplyModelArgs) -> dict[str, JsonValue]: ...


# --- replies ----------------------------------------------------------------------------------------


class CommandErrorCode(StrEnum):
    TOO_LARGE = "too-large"  # over MAX_COMMAND_BYTES (apply_config: MAX_CONFIG_COMMAND_BYTES), not run
    MALFORMED = "malformed"  # not UTF-8, not JSON, or not a JSON object
    UNKNOWN_COMMAND = "unknown-command"
    INVALID = "invalid"  # against the schema (or a rule of the device's protocol): `field` names where
    UNKNOWN_POINT = "unknown-point"  # no such device, or no such point on it
    NOT_WRITABLE = "not-writable"  # the point has no write_range
    OUT_OF_LIMITS = "out-of-limits"  # outside the write range, the demand target limits, or priorities 9-15
    DEVICE_ERROR = "device-error"  # the device refused the write or could not be reached
    TIMEOUT = "timeout"  # no answer within WRITE_TIMEOUT_S
    INTERNAL = "internal"  # a bug: the gateway's log has the traceback
    # refused before reading, by the uplink (docs/mqtt.md, "Commands")
    RETAINED = "retained"  # a retained message: replayed by the broker at every subscribe, never run
    BAD_RESPONSE_TOPIC = "bad-response-topic"  # not a concrete topic under the gateway's reply topic
    BUSY = "busy"  # too many commands waiting: send it again later
    # admission (admission.py)
    UNSIGNED = "unsigned"  # trusted keys are configured and the command carries no signature
    BAD_SIGNATURE = "bad-signature"  # not signed by a trusted key for this gateway's command topic
    EXPIRED = "expired"  # `expires` has passed, or lies further ahead than max_expiry_s
    DUPLICATE = "duplicate"  # the id was taken by other content, or its first run's outcome is unknown
    NOT_RECORDED = "not-recorded"  # the id could not be recorded (disk): not run, rather than maybe twice
    FETCH_FAILED = "fetch-failed"  # apply_model: its url could not be fetched (the message says why)
    NOT_APPLIED = "not-applied"  # apply_config: no configuration file, or it could not be written


class ReplyError(BaseModel):
    """Why a command was refused."""

    model_config = ConfigDict(
        frozen=True, use_attribute_docstrings=True, json_schema_serialization_defaults_required=True
    )

    code: CommandErrorCode
    message: str
    field: str | None = None
    """The request's field at fault as a dotted path ('args.kw'), when there is one."""


class CommandReply(BaseModel):
    """The gateway's answer to one command: a result when ok, an error otherwise."""

    model_config = ReplyError.model_config

    id: str | None
    """The request's id, or null when it could not be read."""
    command: str | None
    """The command's name, or null when the request named no known command."""
    ok: bool
    result: dict[str, JsonValue] | None = None
    error: ReplyError | None = None
    ts: Annotated[datetime, Field(json_schema_extra={"format": "date-time"})]
    """When the reply was made: UTC, milliseconds, 'Z'."""

    @field_serializer("ts")
    def _utc_millis(self, ts: datetime) -> str:
        return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def to_json(self) -> bytes:
        data = self.model_dump(mode="json")
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


# --- the router -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """A command as the broker delivered it: untrusted until an Admission has checked it."""

    payload: bytes
    topic: str  # the topic it came on, which a signature covers
    refusal: CommandRefused | None = None  # the uplink's verdict before reading (retained, busy...)


class Admission(Protocol):
    """What a delivered command must pass, around the router's own checks (admission.py)."""

    def opened(self, delivery: Delivery) -> bytes:
        """The command's own bytes, its signature checked; raises CommandRefused."""
        ...

    async def admit(self, request: Request, body: bytes) -> CommandReply | None:
        """Checks expiry and records the id before the command acts; raises CommandRefused. A replay of a
        command already answered gets that first reply back, to send again instead of running it."""
        ...

    async def settle(self, request: Request, reply: CommandReply) -> None:
        """Keep the reply for the id's replays; never raises."""
        ...


class CommandRouter:
    def __init__(
        self,
        handlers: CommandHandlers,
        now: Callable[[], datetime] = utc_now,
        admission: Admission | None = None,
        config_push: ConfigPush | None = None,
    ) -> None:
        self._handlers = handlers
        self._now = now
        self._admission = admission
        self._config_push = config_push

    async def handle(self, payload: bytes) -> CommandReply:
        """The reply to one trusted request (the local socket). Never raises, except CancelledError."""
        return await self._handle(payload, None)

    async def handle_delivery(self, delivery: Delivery) -> CommandReply:
        """The reply to one command from the broker, admitted first. Never raises, except CancelledError."""
        return await self._handle(delivery.payload, delivery)

    async def _handle(self, payload: bytes, delivery: Delivery | None) -> CommandReply:
        request_id: str | None = None
        name: str | None = None
        admitted: Request | None = None
        try:
            _check_size(payload, MAX_CONFIG_COMMAND_BYTES if _claims_large(payload) else MAX_COMMAND_BYTES)
            if delivery is not None and delivery.refusal is not None:
                request_id, name = _unverified_names(delivery.payload)
                raise delivery.refusal  # noqa: TRY301 - answered like every other refusal
            body = payload if delivery is None else self._admitted(delivery).opened(delivery)
            data = parse_object(body, MAX_CONFIG_COMMAND_BYTES)
            request_id = _readable_id(data)
            name = _known_name(data)
            request = _validate(data, name)
            if delivery is not None:
                earlier = await self._admitted(delivery).admit(request, body)
                if earlier is not None:
                    log.info("command replayed: answered again, not run", id=request_id, command=name)
                    return earlier
                admitted = request
            reply = await self._reply(request_id, name, self._run(request))
        except CommandRefused as refusal:
            if request_id is None and delivery is not None:  # unsigned, altered: named for the reply only
                request_id, name = _unverified_names(delivery.payload)
            reply = self._refused(request_id, name, refusal)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # BaseException: bacpypes3's errors derive from it, and get a reply too
            reply = self._internal(request_id, name, exc)
        if admitted is not None and self._admission is not None:
            await self._admission.settle(admitted, reply)
        return reply

    def _admitted(self, delivery: Delivery) -> Admission:
        if self._admission is None:
            raise RuntimeError("a command from the broker, and no admission to check it")
        return self._admission

    async def _reply(
        self, request_id: str | None, name: str | None, running: Awaitable[dict[str, JsonValue]]
    ) -> CommandReply:
        try:
            result = await running
        except CommandRefused as refusal:
            return self._refused(request_id, name, refusal)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            return self._internal(request_id, name, exc)
        log.info("command done", id=request_id, command=name)
        return CommandReply(id=request_id, command=name, ok=True, result=result, ts=self._now())

    def _refused(self, request_id: str | None, name: str | None, refusal: CommandRefused) -> CommandReply:
        error = ReplyError(code=CommandErrorCode(refusal.code), message=refusal.message, field=refusal.field)
        return self._refusal(request_id, name, error)

    def _internal(self, request_id: str | None, name: str | None, exc: BaseException) -> CommandReply:
        error = ReplyError(
            code=CommandErrorCode.INTERNAL,
            message=f"internal error ({type(exc).__name__}); the gateway's log has the details",
        )
        return self._refusal(request_id, name, error, exc)

    def _refusal(
        self, request_id: str | None, name: str | None, error: ReplyError, exc: BaseException | None = None
    ) -> CommandReply:
        extra: dict[str, Any] = {} if exc is None else {"exc_info": exc}
        code, message = error.code.value, error.message
        log.warning("command refused", id=request_id, command=name, code=code, error=message, **extra)
        return CommandReply(id=request_id, command=name, ok=False, error=error, ts=self._now())

    async def _run(self, request: Command) -> dict[str, JsonValue]:
        control = self._handlers.control
        match request:
            case SetDemandTarget(args=DemandTargetArgs(kw=kw)):
                low, high = control.demand_target_limits_kw
                if not low <= kw <= high:
                    message = f"{kw} kW is outside the limits [{low}, {high}]"
                    raise CommandRefused(CommandErrorCode.OUT_OF_LIMITS, message, "args.kw")
                control.demand_target_kw = kw
                return {"demand_target_kw": kw}
            case SetControlMode(args=ControlModeArgs(mode=mode)):
                control.mode = mode
                return {"mode": mode.value}
            case WritePoint(args=args):
                return await self._write_point(args)
            case Rebirth():
                self._handlers.rebirth()
                return {}
            case Status():
                return _json_data(self._handlers.status())
            case ApplyModel() | ApplyConfig():
                return await self._apply(request)

    async def _apply(self, request: ApplyModel | ApplyConfig) -> dict[str, JsonValue]:
        """A model or a whole configuration pushed: each to the part of the gateway that takes it."""
        if isinstance(request, ApplyModel):
            if not isinstance(self._handlers, ModelHandler):
                raise CommandRefused(CommandErrorCode.INVALID, "this gateway takes no models", "command")
            return await self._handlers.apply_model(request.args)
        if self._config_push is None:
            message = "this gateway runs on the built-in configuration: no file to replace"
            raise CommandRefused(CommandErrorCode.NOT_APPLIED, message)
        return await self._config_push.apply(request.args)

    async def _write_point(self, args: WritePointArgs) -> dict[str, JsonValue]:
        priority = _checked_priority(self._handlers.config, args)
        key = f"{args.device}/{args.point}"
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self._handlers.points.write(key, args.value, priority)
        except TimeoutError:
            raise CommandRefused(
                CommandErrorCode.TIMEOUT, f"{key}: no answer in {WRITE_TIMEOUT_S:g} s"
            ) from None
        except DeviceError as exc:
            raise CommandRefused(CommandErrorCode.DEVICE_ERROR, str(exc)) from exc
        return {"device": args.device, "point": args.point, "value": args.value, "priority": priority}


def _check_size(payload: bytes, limit: int = MAX_COMMAND_BYTES) -> None:
    if len(payload) > limit:
        raise CommandRefused(CommandErrorCode.TOO_LARGE, f"{len(payload)} bytes, over {limit}")


def parse_object(payload: bytes, limit: int = MAX_COMMAND_BYTES) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes no larger than `limit`; CommandRefused otherwise."""
    _check_size(payload, limit)
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CommandRefused(CommandErrorCode.MALFORMED, f"not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandRefused(CommandErrorCode.MALFORMED, "the request must be a JSON object")
    return data


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def _claims_large(payload: bytes) -> bool:
    """Whether a payload over MAX_COMMAND_BYTES (and within MAX_CONFIG_COMMAND_BYTES) claims to be a command
    that may be that large. Only its size limit hangs on this: it is checked as any other afterwards."""
    if not MAX_COMMAND_BYTES < len(payload) <= MAX_CONFIG_COMMAND_BYTES:
        return False
    try:
        data = parse_object(payload, MAX_CONFIG_COMMAND_BYTES)
        inner = data.get("signed")
        if isinstance(inner, str):
            data = parse_object(inner.encode(), MAX_CONFIG_COMMAND_BYTES)
    except (CommandRefused, UnicodeEncodeError):
        return False
    return data.get("command") in LARGE_COMMANDS


def _unverified_names(payload: bytes) -> tuple[str | None, str | None]:
    """The id and command name a refused payload (or the command inside its envelope) claims, so that
    the sender can match the refusal; never acted on."""
    try:
        data = parse_object(payload)
        inner = data.get("signed")
        if isinstance(inner, str):
            data = parse_object(inner.encode())
    except (CommandRefused, UnicodeEncodeError):
        return None, None
    name = data.get("command")
    return _readable_id(data), name if name in COMMAND_NAMES else None


def _readable_id(data: dict[str, Any]) -> str | None:
    value = data.get("id")
    return value if isinstance(value, str) and re.fullmatch(ID_PATTERN, value) else None


def _known_name(data: dict[str, Any]) -> str:
    name = data.get("command")
    if not isinstance(name, str):
        raise CommandRefused(CommandErrorCode.INVALID, "command: must name a command", "command")
    if name not in COMMAND_NAMES:
        known = ", ".join(COMMAND_NAMES)
        raise CommandRefused(
            CommandErrorCode.UNKNOWN_COMMAND, f"unknown command {name[:64]!r} (known: {known})"
        )
    return name


def _validate(data: dict[str, Any], name: str) -> Command:
    try:
        return _COMMAND.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"][1:] if first["loc"][:1] == (name,) else first["loc"]  # drop the union's tag
        field = ".".join(str(part) for part in loc) or None
        message = f"{field}: {first['msg']}" if field else first["msg"]
        raise CommandRefused(CommandErrorCode.INVALID, message, field) from None


def _checked_priority(config: AgentConfig, args: WritePointArgs) -> int | None:
    """The priority to write at, once every rule for this device and point has passed."""
    device = next((d for d in config.devices if d.name == args.device), None)
    if device is None:
        raise CommandRefused(CommandErrorCode.UNKNOWN_POINT, f"no device {args.device!r}", "args.device")
    point = next((p for p in device.points if p.name == args.point), None)
    if point is None:
        message = f"device {device.name!r} has no point {args.point!r}"
        raise CommandRefused(CommandErrorCode.UNKNOWN_POINT, message, "args.point")
    key = f"{device.name}/{point.name}"
    if point.write_range is None:
        raise CommandRefused(
            CommandErrorCode.NOT_WRITABLE, f"{key} is read-only (no write_range)", "args.point"
        )
    priority: int | None = None
    if isinstance(device, BacnetDevice):
        priority = device.write_priority if args.priority is None else args.priority
        lowest, highest = COMMAND_PRIORITIES
        if not lowest <= priority <= highest:
            message = (
                f"{key}: priority {priority} is outside {lowest}-{highest} "
                "(an operator's 8 and life safety always win)"
            )
            raise CommandRefused(CommandErrorCode.OUT_OF_LIMITS, message, "args.priority")
    elif args.priority is not None:
        raise CommandRefused(
            CommandErrorCode.INVALID, f"{key}: Modbus writes take no priority", "args.priority"
        )
    elif args.value is None:
        raise CommandRefused(CommandErrorCode.INVALID, f"{key}: only BACnet can relinquish", "args.value")
    low, high = point.write_range
    if args.value is not None and not low <= args.value <= high:
        message = f"{key}: {args.value} is outside its write range [{low}, {high}]"
        raise CommandRefused(CommandErrorCode.OUT_OF_LIMITS, message, "args.value")
    return priority


def _json_data(tree: object) -> dict[str, JsonValue]:
    """A dataclass tree as JSON data: datetimes ISO-8601, enums by value, NaN and infinities null."""
    data = json.loads(TypeAdapter(type(tree)).dump_json(tree))
    if not isinstance(data, dict):
        raise TypeError(f"status() returned {type(tree).__name__}, not a dataclass")
    return data


# --- schemas ----------------------------------------------------------------------------------------


def command_schemas() -> dict[str, JsonSchemaValue]:
    """docs/schemas/ file name -> JSON Schema (draft 2020-12) of the command request and of its reply."""
    documents = {
        "command.json": (
            _over_mqtt(_COMMAND.json_schema()),
            "edge-agent command",
            "A command from the central platform to one gateway; the `command` field selects the `args`.",
        ),
        "signed_command.json": (
            SignedCommand.model_json_schema(),
            "edge-agent signed command",
            "A command with its ed25519 signature; docs/mqtt.md says which bytes are signed.",
        ),
        "reply.json": (
            CommandReply.model_json_schema(mode="serialization"),
            "edge-agent command reply",
            "The gateway's answer to one command: `result` when `ok`, otherwise `error` with a code.",
        ),
    }
    return {
        name: {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": title, "description": description}
        for name, (schema, title, description) in documents.items()
    }


class SignedCommand(_Strict):
    """The envelope of a signed command (admission.py); the gateway reads `signed` as a command."""

    signed: str
    """The command (command.json) as JSON text, exactly the text that was signed."""
    signature: str
    """base64 of the ed25519 signature over b"edge-agent command v1\\n" + topic + b"\\n" + signed (UTF-8)."""


def _over_mqtt(schema: JsonSchemaValue) -> JsonSchemaValue:
    """The commands' schema as the broker's senders must follow it: `expires` required, a string."""
    for definition in schema["$defs"].values():
        properties = definition.get("properties", {})
        if "expires" in properties:
            expires = properties["expires"]
            properties["expires"] = {"title": expires["title"], "description": expires["description"]}
            properties["expires"].update(expires["anyOf"][0])
            definition["required"] = [*definition["required"], "expires"]
    return schema
