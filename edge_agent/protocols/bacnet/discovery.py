"""Finding BACnet devices: Who-Is (directed, ranged, broadcast) and foreign-device registration with a BBMD.

`who_is(stack, address, ...)` sends one Who-Is and collects the I-Am answers for at most `wait_s` seconds:
- to one device's address it returns as soon as that device answers;
- to a directed broadcast address (192.168.1.255:47808; on loopback 127.255.255.255:PORT) it collects for the
  whole wait. Only devices listening on the broadcast address hear it: a bacpypes3 device does when its own
  address carries a prefix (127.0.0.2/8:PORT), and not when bound to a bare 127.0.0.1:PORT;
- with no address it is a global broadcast, which needs a local address with a prefix (HOST/24:47808) or a
  foreign-device registration: a stack bound to a bare or ephemeral address has nowhere to send it, and
  `who_is` says so instead of silently finding nothing. On loopback every device listens on its own port, so
  a broadcast reaches only those on the stack's own port: test through a BBMD instead.

Foreign-device mode (`foreign_device_stack`): the local stack registers with a BBMD (Register-Foreign-Device
with a time-to-live, renewed by bacpypes3 every TTL seconds) and its broadcasts go to the BBMD as
Distribute-Broadcast-To-Network, which forwards them to the BBMD's subnet and its peers. On close the stack
deregisters (bacpypes3 sends a registration with TTL 0, which bacpypes3's BBMD treats as a delete).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from bacpypes3.apdu import WhoIsRequest
from bacpypes3.basetypes import HostNPort
from bacpypes3.pdu import Address, GlobalBroadcast

from edge_agent.config import BacnetConfig
from edge_agent.protocols.bacnet.app import BacnetApplication, split_host_port
from edge_agent.protocols.bacnet.client import SegmentationName, local_device_object

DEFAULT_WAIT_S = 3.0  # bacpypes3's own Who-Is wait
DEREGISTER_WAIT_S = 0.5  # how long close() lets the deregistration go out
MAX_INSTANCE = 4194303


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    """One I-Am: who answered, from where, and what it accepts."""

    instance: int
    address: str
    """HOST:PORT the I-Am came from, as a BacnetDevice.host."""
    vendor_id: int
    max_apdu: int
    segmentation: str
    """segmentedBoth, segmentedTransmit, segmentedReceive or noSegmentation."""


class _IAmCollector:
    """Sits in bacpypes3's list of pending Who-Is (app._who_is_futures), which offers it every I-Am."""

    def __init__(self, low: int | None, high: int | None, unicast: Address | None) -> None:
        self.low, self.high, self.unicast = low, high, unicast
        self.found: dict[tuple[int, str], DiscoveredDevice] = {}
        self.answers: list[Any] = []
        self.done = asyncio.Event()

    def match(self, apdu: Any) -> None:
        instance = int(apdu.iAmDeviceIdentifier[1])
        if (self.low is not None and instance < self.low) or (self.high is not None and instance > self.high):
            return
        device = DiscoveredDevice(
            instance=instance,
            address=str(apdu.pduSource),
            vendor_id=int(apdu.vendorID),
            max_apdu=int(apdu.maxAPDULengthAccepted),
            segmentation=str(getattr(apdu.segmentationSupported, "attr", apdu.segmentationSupported)),
        )
        self.found[(device.instance, device.address)] = device
        self.answers.append(apdu)
        if self.unicast is not None and apdu.pduSource == self.unicast:
            self.done.set()


def _can_broadcast(app: Any) -> bool:
    for link in app.link_layers.values():
        if getattr(link, "bbmdAddress", None) is not None:  # registered (or registering) foreign device
            return True
        if getattr(getattr(link, "server", None), "broadcast_address", None) is not None:
            return True
    return False


async def who_is(
    stack: BacnetApplication,
    address: str | None = None,
    *,
    low: int | None = None,
    high: int | None = None,
    wait_s: float = DEFAULT_WAIT_S,
) -> list[DiscoveredDevice]:
    """Who-Is to `address` (HOST:PORT of a device or a directed broadcast) or, with None, a global
    broadcast; `low`..`high` limits the instances asked for. Returns the answers sorted by instance, after
    at most `wait_s` seconds (sooner when the one device asked for by address has answered). The devices'
    max APDU and segmentation also go into the stack's device cache, as bacpypes3's own who_is does."""
    if (low is None) != (high is None):
        raise ValueError("give both low and high, or neither")
    if low is not None and high is not None and not 0 <= low <= high <= MAX_INSTANCE:
        raise ValueError(f"instance range {low}..{high} is not within 0..{MAX_INSTANCE}")
    app = stack.app
    if address is None:
        if not _can_broadcast(app):
            raise ValueError(
                f"the local BACnet address {stack.address} has no broadcast address: give it a prefix "
                "(HOST/24:47808), register as a foreign device, or ask a directed broadcast address"
            )
        destination: Address = GlobalBroadcast()
        unicast = None
    else:
        host, port = split_host_port(address)
        destination = unicast = Address(f"{host}:{port}")
    request = WhoIsRequest(destination=destination)
    if low is not None:
        request.deviceInstanceRangeLowLimit = low
        request.deviceInstanceRangeHighLimit = high
    collector = _IAmCollector(low, high, unicast)
    if not hasattr(app, "_who_is_futures"):
        app._who_is_futures = []
    app._who_is_futures.append(collector)
    try:
        app.request(request)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await collector.done.wait()
    finally:
        app._who_is_futures.remove(collector)
    for i_am in collector.answers:
        await app.device_info_cache.set_device_info(i_am)
    return sorted(collector.found.values(), key=lambda d: (d.instance, d.address))


# --- foreign-device mode ---------------------------------------------------------------------------------


class ForeignDeviceStack(BacnetApplication):
    """The agent's stack registered as a foreign device with the BBMD at `bbmd` (HOST:PORT), renewing every
    `ttl_s` seconds. Reads, writes and COV work as with a normal stack; broadcasts go through the BBMD."""

    def __init__(self, address: str, objects: list[Any], bbmd: str, ttl_s: int) -> None:
        super().__init__(address, objects)
        if not 1 <= ttl_s <= 65535:
            raise ValueError("ttl_s must be 1-65535 s")
        host, port = split_host_port(bbmd)
        self.bbmd = f"{host}:{port}"
        self.ttl_s = ttl_s

    def _network_port_settings(self) -> dict[str, Any]:
        return {
            "bacnetIPMode": "foreign",
            "fdBBMDAddress": HostNPort(self.bbmd),
            "fdSubscriptionLifetime": self.ttl_s,
        }

    def _links(self) -> list[Any]:
        if self._app is None:
            return []
        return [link for link in self._app.link_layers.values() if hasattr(link, "bbmdRegistrationStatus")]

    @property
    def registered(self) -> bool:
        """The BBMD acknowledged the last registration."""
        return any(link.bbmdRegistrationStatus == 0 for link in self._links())

    async def wait_registered(self) -> None:
        """Until the BBMD has acknowledged the registration; the caller bounds the wait."""
        for link in self._links():
            await link._registration_event.wait()

    async def close(self) -> None:
        """Deregister (bounded by DEREGISTER_WAIT_S), then close the stack."""
        for link in self._links():
            if link.bbmdRegistrationStatus == -2:
                continue
            before = asyncio.all_tasks()
            link.unregister()  # stops renewing; schedules the TTL-0 registration as a task
            sending = asyncio.all_tasks() - before
            if sending:
                await asyncio.wait(sending, timeout=DEREGISTER_WAIT_S)
        await super().close()


def foreign_device_stack(
    config: BacnetConfig,
    bbmd: str,
    ttl_s: int = 300,
    *,
    max_apdu: int | None = None,
    segmentation: SegmentationName | None = None,
) -> ForeignDeviceStack:
    """The agent's own stack in foreign-device mode: bound to config.local_address, registered with the
    BBMD at `bbmd` (HOST[:PORT]) for `ttl_s` seconds at a time."""
    device = local_device_object(config, max_apdu, segmentation)
    return ForeignDeviceStack(config.local_address, [device], bbmd, ttl_s)
