"""An independent BACnet client (bacpypes3 directly, not the agent's code) that reads a point's priority
array, to judge from outside what the agent left on a controller."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from bacpypes3.ipv4.app import NormalApplication
from bacpypes3.local.device import DeviceObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from bench.faults.parts import LOOPBACK


def _slot(value: Any) -> float | None:
    if getattr(value, "null", None) is not None:
        return None
    for choice in ("real", "double", "unsigned", "integer", "enumerated"):
        found = getattr(value, choice, None)
        if found is not None:
            return float(found)
    return None


async def priority_array(port: int, obj: str = "analog-value,1", timeout_s: float = 5) -> list[float | None]:
    """The 16 slots (index 0 is priority 1) of `obj` on the controller at 127.0.0.1:PORT."""
    device = DeviceObject(
        objectIdentifier=("device", 3999),
        objectName="fault-bench",
        vendorIdentifier=999,
        numberOfApduRetries=1,
    )
    app = NormalApplication(device, Address(f"{LOOPBACK}:{free_udp_port()}"))
    try:
        async with asyncio.timeout(timeout_s):
            array = await app.read_property(
                Address(f"{LOOPBACK}:{port}"), ObjectIdentifier(obj), "priority-array"
            )
        return [_slot(slot) for slot in array]
    finally:
        app.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])
