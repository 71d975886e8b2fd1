"""The one small interface every protocol client implements.

A client is bound to one configured device: `open` connects (raising DeviceUnreachable when it cannot),
`read` reads a batch of the device's points in as few requests as the protocol allows, `write` writes one
point, `close` lets go and may be called at any time, even after a failed or cancelled open. Clients are also
async context managers. No method takes a timeout: the caller bounds every call with asyncio.timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from edge_agent.errors import DeviceError


class PointResult(NamedTuple):
    """One point's outcome in a batch read: a value, or the error that kept us from it. (A named tuple:
    one is made for every point of every poll, at half a dataclass' cost.)"""

    point: str
    value: float | None
    error: DeviceError | None = None
    unavailable: bool = False  # the device says the quantity is not available (a sentinel value)


class ProtocolClient(Protocol):
    async def open(self) -> None: ...

    def read_budget_s(self, points: Sequence[str]) -> float:
        """How long the caller should allow a read of these points, waiting for a shared wire included."""
        ...

    async def close(self) -> None: ...

    async def read(self, points: Sequence[str]) -> list[PointResult]:
        """Read the named points. Per-point failures come back as results; a lost connection raises
        DeviceUnreachable."""
        ...

    async def write(self, point: str, value: float | None, priority: int | None = None) -> None:
        """Write one point; None relinquishes it where the protocol knows priorities (BACnet)."""
        ...


class ClientContext:
    """Mixin: `async with client:` opens and closes."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
