"""A stop is never lost to a cancel that Python 3.11's wait_for swallowed (inside aiomqtt's publish, or
pymodbus): the loops that await those libraries check after each call. Seen in CI: an uplink whose command
reply's PUBACK came with the stop's cancel waited for the next command forever."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import MqttConfig
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.commands import Delivery
from edge_agent.uplink.session import Route, Uplink


class SwallowingClient:
    """A client whose publish, like 3.11's wait_for, returns its answer when the cancel comes with it."""

    def __init__(self) -> None:
        self.publishing = asyncio.Event()

    async def publish(self, *_args: Any, **_kwargs: Any) -> None:
        self.publishing.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return  # the answer came in the same breath: the cancel is lost


@pytest.mark.integration  # (a real SQLite file)
async def test_a_command_loop_stops_though_its_reply_swallowed_the_cancel(tmp_path: Path) -> None:
    async def handler(_delivery: Delivery) -> bytes:
        return b"{}"

    async with Buffer(tmp_path / "b.db") as buffer:
        uplink = Uplink(MqttConfig(url="mqtt://127.0.0.1:1"), "gw", buffer, commands=handler)
        client = SwallowingClient()
        commands: asyncio.Queue[tuple[Delivery, Route]] = asyncio.Queue()
        commands.put_nowait((Delivery(b"{}", "edge/gw/cmd", None), ("edge/gw/reply", None)))
        answering = asyncio.create_task(uplink._answer(client, commands))  # type: ignore[arg-type]
        await client.publishing.wait()
        answering.cancel()
        await asyncio.wait({answering}, timeout=5)  # (without the check: waits for the next command for ever)
        assert answering.cancelled()
