"""Modbus failures in edge-agent's terms, in one place, at two levels.

- `answer`: pymodbus' exceptions and isError() answers as the wire's errors (ExceptionAnswer, MalformedAnswer,
  ConnectionError), which our own Modbus TCP wire (tcp.py) raises directly.
- `translated`: the wire's errors, and the link's time bound, as DeviceErrors naming the device and where.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from pymodbus import ExceptionResponse
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from edge_agent.config import ModbusDevice
from edge_agent.errors import (
    DeviceGarbage,
    DeviceRejected,
    DeviceUnreachable,
    ExceptionAnswer,
    MalformedAnswer,
)

ILLEGAL_ADDRESS = "modbus exception 2"
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


async def answer(request: Any) -> Any:
    """pymodbus' answer to an awaited request, its failures as the wire's errors."""
    try:
        response = await request
    except (ConnectionException, ModbusIOException) as exc:
        raise ConnectionError(f"no answer ({type(exc).__name__})") from exc
    except ModbusException as exc:
        raise MalformedAnswer(str(exc)) from exc
    if isinstance(response, ExceptionResponse) or response.isError():
        raise ExceptionAnswer(int(getattr(response, "exception_code", 0)))
    return response


class Translated:
    """See `translated`. A class, not a generator: it holds no state, so a planned request makes its own
    once and enters it at every poll for the cost of two calls (a generator would be made for every one)."""

    __slots__ = ("_connecting", "_device", "_where")

    def __init__(self, device: ModbusDevice, where: str, connecting: bool) -> None:
        self._device = device
        self._where = where
        self._connecting = connecting

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            return
        device = self._device
        at = f"{device.address} {self._where}"
        if isinstance(exc, ConnectionError):
            if self._connecting:
                raise DeviceUnreachable(device.name, at, "cannot connect") from exc
            raise DeviceUnreachable(device.name, at, str(exc) or "no answer", "no connection") from exc
        if self._connecting:
            return  # a connect's time bound is the caller's to word
        if isinstance(exc, TimeoutError):
            message = f"no answer within {device.timeout_s} s"
            raise DeviceUnreachable(device.name, at, message, "timeout") from exc
        if isinstance(exc, ExceptionAnswer):
            name = EXCEPTION_NAMES.get(exc.code, "unknown exception")
            raise DeviceRejected(device.name, at, name, f"modbus exception {exc.code}") from exc
        if isinstance(exc, MalformedAnswer):
            raise DeviceGarbage(device.name, at, str(exc), "malformed answer") from exc


def translated(device: ModbusDevice, where: str, *, connecting: bool = False) -> Translated:
    """A context manager around requests through the device's link: a failure leaves it as a DeviceError at
    `where` ("holding registers 0+80"). With `connecting`, around the link's connect alone: a ConnectionError
    is "cannot connect", and a TimeoutError passes (the caller bounds the connect and says so)."""
    return Translated(device, where, connecting)
