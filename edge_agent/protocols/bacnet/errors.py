"""bacpypes3's refusals in edge-agent's terms, in one place.

A device that refuses a confirmed request answers an Error, a Reject or an Abort, and bacpypes3 raises it as
an ErrorRejectAbortNack, which derives from BaseException: `except Exception` misses it. So every request to a
device runs inside `translated(device, address)`, which raises the DeviceError instead; the adaptive batching
alone lets a refusal through, to judge it with `refusal_kind`. An error inside an answer (a property of a
ReadPropertyMultiple that could not be read) comes as an ErrorType value: `error_type` words it the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

from bacpypes3.apdu import AbortPDU, ErrorPDU, ErrorRejectAbortNack, RejectPDU
from bacpypes3.basetypes import ErrorType

from edge_agent.errors import DeviceError, DeviceRejected, DeviceUnreachable

_TOO_BIG_ABORTS = {"segmentationNotSupported", "bufferOverflow", "apduTooLong", "outOfResources"}
_TOO_BIG_ERRORS = {
    "abortSegmentationNotSupported",
    "abortBufferOverflow",
    "abortApduTooLong",
    "abortOutOfResources",
    "rejectBufferOverflow",
    "rejectTooManyArguments",
}


def _name(value: Any) -> str:
    return str(getattr(value, "attr", value))


@contextlib.contextmanager
def translated(device: str, address: str) -> Iterator[None]:
    """Around a request to `device`: a refusal leaves as the DeviceError `translate` makes of it."""
    try:
        yield
    except ErrorRejectAbortNack as exc:
        raise translate(device, address, exc) from None


def translate(device: str, address: str, exc: ErrorRejectAbortNack) -> DeviceError:
    """A refusal as a DeviceError: DeviceUnreachable for an abort noResponse (bacpypes3's own timer ran out),
    DeviceRejected with the abort or reject reason, or the error's class:code, as `code`."""
    if isinstance(exc, AbortPDU):
        reason = _name(exc.apduAbortRejectReason)
        if reason == "noResponse":
            return DeviceUnreachable(device, address, "no answer", "abort noResponse")
        return DeviceRejected(device, address, "aborted", f"abort {reason}")
    if isinstance(exc, RejectPDU):
        return DeviceRejected(device, address, "rejected", f"reject {_name(exc.apduAbortRejectReason)}")
    if isinstance(exc, ErrorPDU):
        return DeviceRejected(device, address, "error", f"{_name(exc.errorClass)}:{_name(exc.errorCode)}")
    return DeviceRejected(device, address, str(exc) or "refused", type(exc).__name__)


def error_type(device: str, address: str, error: ErrorType) -> DeviceRejected:
    """An error in place of a value in an answer, worded as `translate` words an Error."""
    return DeviceRejected(device, address, "error", f"{_name(error.errorClass)}:{_name(error.errorCode)}")


def refusal_kind(exc: ErrorRejectAbortNack) -> Literal["unreachable", "too-big", "unsupported", "error"]:
    """What a refused request means: no answer, too big for the device, a service it lacks, or an error."""
    if isinstance(exc, AbortPDU):
        reason = _name(exc.apduAbortRejectReason)
        if reason == "noResponse":
            return "unreachable"
        return "too-big" if reason in _TOO_BIG_ABORTS else "error"
    if isinstance(exc, RejectPDU):
        return "unsupported" if _name(exc.apduAbortRejectReason) == "unrecognizedService" else "too-big"
    if isinstance(exc, ErrorPDU):
        code = _name(exc.errorCode)
        if code == "rejectUnrecognizedService":
            return "unsupported"
        return "too-big" if code in _TOO_BIG_ERRORS else "error"
    return "error"
