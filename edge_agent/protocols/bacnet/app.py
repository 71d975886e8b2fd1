"""Lifecycle of one local bacpypes3 Application (a BACnet/IP stack bound to one UDP address).

bacpypes3 surprises (shared/DOMAIN.md, and measured on 0.0.110):
- it binds with SO_REUSEPORT and, when the bind fails, retries forever in the background without a word,
  so we check the port with a plain bind first;
- binding finishes in a background task, and close() only closes transports that already exist;
- a request abandoned by a timeout keeps retrying inside the stack: we stop those timers on close.
"""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType
from typing import Any, Self

from bacpypes3.app import Application

from edge_agent.errors import StartupError

BIND_TIMEOUT_S = 2.0


def split_host_port(address: str, default_port: int = 47808) -> tuple[str, int]:
    host, _, port = address.partition(":")
    return host.split("/")[0], int(port) if port else default_port


def check_udp_port_free(address: str) -> None:
    """Raise OSError when HOST:PORT cannot be bound (in use, or not a local address)."""
    host, port = split_host_port(address)
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, port))


class BacnetApplication:
    """Owns an Application built from `objects` (a device object first); async context manager."""

    def __init__(self, address: str, objects: list[Any]) -> None:
        self.address = address
        self._objects = objects
        self._app: Application | None = None

    @property
    def app(self) -> Application:
        if self._app is None:
            raise RuntimeError(f"BACnet stack on {self.address} is not running")
        return self._app

    async def __aenter__(self) -> Self:
        from bacpypes3.local.networkport import NetworkPortObject

        try:
            check_udp_port_free(self.address)
        except (OSError, ValueError) as exc:
            raise StartupError(f"BACnet/IP address {self.address}: cannot bind: {exc}") from exc
        port = NetworkPortObject(
            self.address,
            objectIdentifier=("network-port", 1),
            objectName="NetworkPort-1",
            **self._network_port_settings(),
        )
        self._app = Application.from_object_list([*self._objects, port])
        try:
            await self._wait_bound()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _network_port_settings(self) -> dict[str, Any]:
        """Extra properties of the network port object (a foreign-device stack sets its BBMD here)."""
        return {}

    async def _wait_bound(self) -> None:
        async with asyncio.timeout(BIND_TIMEOUT_S):
            for link in self.app.link_layers.values():
                await link.server._local_transport_ready.wait()

    async def close(self) -> None:
        app, self._app = self._app, None
        if app is None:
            return
        for link in app.link_layers.values():
            for task in list(getattr(link.server, "_transport_tasks", [])):
                if not task.done():  # a bind still retrying: stop it quietly (its callback logs the cancel)
                    for callback, _context in list(getattr(task, "_callbacks", None) or []):
                        task.remove_done_callback(callback)
                    task.cancel()
        asap = getattr(app, "asap", None)
        if asap is not None:
            for machine in [*asap.clientTransactions, *asap.serverTransactions]:
                machine.stop_timer()
        app.close()
        await asyncio.sleep(0)  # the socket is released on the next loop iteration
