"""Change-of-value subscriptions to one BACnet device, delivered as PointResults.

`CovSubscriber(client, points)` subscribes (SubscribeCOV) to each point's object; a point the device refuses
(the object has no COV, services:serviceRequestDenied, a device without the service, ...) or that reads a
property COV does not report (anything but present-value) is left to polling: `cov_points` and
`polled_points` say which is which, `refusals` says why. Notifications come out of the subscriber as an async
iterator (or `get`/`get_nowait`), the subscriptions' initial values first. A renewal task re-subscribes every
RENEW_FRACTION of the lifetime; `close` cancels every subscription on the device so none is left behind.

A subscription that is alive reports every change, so no notification means no change: a renewal the device
acknowledges confirms each point's last value. A point the device did not notify since the renewal before
(devices need not answer a renewal with a notification) then gets that value again, as a fresh result:
whoever judges freshness (LatestValues) sees a COV point fresh as long as its subscription lives.

bacpypes3's own `app.change_of_value(address, object_id, ...)` context manager, measured on 0.0.110: it needs
an Address (matched against each notification's source) and an ObjectIdentifier; given strings, the request
dies in a background task and `__aenter__` never returns. Two subscriptions from one application to one
device work concurrently, each under its own subscriber process identifier (bacpypes3 keys notifications by
(address, process id) and checks the object). It is not used here because it registers for notifications
only after the device's acknowledgement (the device's immediate first notification races with that), it
forgets the subscription before the device acknowledged the cancel (a notification in flight is answered
unknownSubscription), its cancel is unbounded and its renewal failures go unseen. This module registers
first, cancels then forgets, bounds every request by the device's timeout_s (bacpypes3 itself waits
APDU_TIMEOUT_MS) and reports renewal failures as error results.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import structlog
from bacpypes3.apdu import SubscribeCOVRequest
from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.vendor import get_vendor_info

from edge_agent.config import BacnetPoint
from edge_agent.errors import DeviceError, DeviceGarbage, DeviceRejected, DeviceUnreachable
from edge_agent.protocols.bacnet.app import BacnetApplication
from edge_agent.protocols.bacnet.client import BacnetClient, number
from edge_agent.protocols.base import ClientContext, PointResult

log = structlog.get_logger("edge_agent.bacnet_cov")

DEFAULT_LIFETIME_S = 300
RENEW_FRACTION = 0.75  # renew when three quarters of the lifetime have passed
RETRY_S = 5.0  # after a failed renewal, try again this soon (capped by the renewal interval)
QUEUE_SIZE = 1000  # notifications held for a slow consumer; the oldest go first
COV_PROPERTY = "present-value"


def renewal_interval_s(lifetime_s: float) -> float:
    """How often a subscription is renewed, and so how often a silent point's value is confirmed."""
    return lifetime_s * RENEW_FRACTION


@dataclass(frozen=True, slots=True)
class CovStatistics:
    cov_points: int
    polled_points: int
    notifications: int
    queued: int
    dropped: int
    renewals: int
    renewal_failures: int


class _Subscription:
    """What bacpypes3 looks up in app._cov_contexts by (device address, process id): it checks
    `monitored_object_identifier` against the notification and hands each property value to `put`."""

    def __init__(self, owner: CovSubscriber, point: BacnetPoint, process_id: int) -> None:
        self.owner = owner
        self.point = point
        self.process_id = process_id
        self.monitored_object_identifier = ObjectIdentifier(point.object)
        self.last: float | None = None  # the last value notified
        self.heard = False  # notified since the renewal before

    async def put(self, property_value: Any) -> None:
        self.owner._notified(self, property_value)


class CovSubscriber(ClientContext):
    """COV for some (default: all) points of the client's device. The client need not be open."""

    def __init__(
        self,
        client: BacnetClient,
        points: Sequence[str] | None = None,
        *,
        lifetime_s: int = DEFAULT_LIFETIME_S,
        confirmed: bool = False,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        if lifetime_s < 1:
            raise ValueError("lifetime_s must be at least 1 s (0 would mean forever)")
        self.client = client
        by_name = {p.name: p for p in client.device.points}
        self._points = [by_name[n] for n in points] if points is not None else list(client.device.points)
        self.lifetime_s = lifetime_s
        self.confirmed = confirmed
        self._subscriptions: dict[str, _Subscription] = {}
        self._polled: dict[str, DeviceError | None] = {}
        self._queue: deque[PointResult] = deque(maxlen=queue_size)
        self._ready = asyncio.Event()
        self._renewer: asyncio.Task[None] | None = None
        self._failing = False
        self._notifications = self._dropped = self._renewals = self._renewal_failures = 0

    # --- what is on COV ---------------------------------------------------------------------------

    @property
    def cov_points(self) -> tuple[str, ...]:
        return tuple(self._subscriptions)

    @property
    def polled_points(self) -> tuple[str, ...]:
        return tuple(self._polled)

    @property
    def refusals(self) -> dict[str, DeviceError]:
        """Why each refused point is polled (points COV cannot report are polled without asking)."""
        return {name: error for name, error in self._polled.items() if error is not None}

    def statistics(self) -> CovStatistics:
        return CovStatistics(
            len(self._subscriptions),
            len(self._polled),
            self._notifications,
            len(self._queue),
            self._dropped,
            self._renewals,
            self._renewal_failures,
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Subscribe point by point (one request each, each bounded by the device's timeout_s). Raises
        DeviceUnreachable when the device does not answer; refusals only move points to polling."""
        unsupported: DeviceError | None = None
        for point in self._points:
            if point.name in self._subscriptions or point.name in self._polled:
                continue
            if point.property != COV_PROPERTY:
                self._polled[point.name] = None
                continue
            if unsupported is not None:  # the device said it has no SubscribeCOV at all
                self._polled[point.name] = unsupported
                continue
            subscription = self._register(point)
            try:
                await self._subscribe(subscription)
            except DeviceRejected as error:
                self._unregister(subscription)
                self._polled[point.name] = error
                if error.code == "reject unrecognizedService":
                    unsupported = error
                continue
            except BaseException:
                self._unregister(subscription)
                raise
            self._subscriptions[point.name] = subscription
        if self._subscriptions and self._renewer is None:
            self._renewer = asyncio.create_task(
                self._renew_forever(), name=f"cov-renew {self.client.device.name}"
            )
        log.info(
            "cov subscribed",
            device=self.client.device.name,
            cov=len(self._subscriptions),
            polled=len(self._polled),
        )

    async def close(self) -> None:
        """Stop renewing and cancel every subscription on the device (all at once, bounded by timeout_s
        together); whatever the device does not acknowledge in time it drops when the lifetime runs out."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.wait([renewer])
            if not renewer.cancelled() and renewer.exception() is not None:
                log.error(
                    "cov renewal crashed", device=self.client.device.name, error=repr(renewer.exception())
                )
        subscriptions = list(self._subscriptions.values())
        self._subscriptions.clear()
        try:
            if subscriptions and _running(self.client.stack):
                async with asyncio.timeout(self.client.device.timeout_s):
                    await asyncio.gather(*(self._cancel(s) for s in subscriptions))
        except TimeoutError:
            log.warning(
                "cov cancel unanswered", device=self.client.device.name, subscriptions=len(subscriptions)
            )
        finally:
            for subscription in subscriptions:
                self._unregister(subscription)

    # --- delivery ----------------------------------------------------------------------------------

    def get_nowait(self) -> PointResult:
        """The oldest undelivered notification; raises asyncio.QueueEmpty when there is none."""
        if not self._queue:
            raise asyncio.QueueEmpty
        result = self._queue.popleft()
        if not self._queue:
            self._ready.clear()
        return result

    async def get(self) -> PointResult:
        while not self._queue:
            await self._ready.wait()
        return self.get_nowait()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> PointResult:
        return await self.get()

    def _deliver(self, result: PointResult) -> None:
        if len(self._queue) == self._queue.maxlen:
            self._dropped += 1
        self._queue.append(result)
        self._ready.set()

    def _notified(self, subscription: _Subscription, property_value: Any) -> None:
        """Called by bacpypes3 (through _Subscription.put) for each property in a notification."""
        if property_value.propertyIdentifier != PropertyIdentifier("present-value"):
            return  # status-flags come along with every notification
        self._notifications += 1
        point = subscription.point
        try:
            value = _decode(subscription.monitored_object_identifier, property_value)
            result = PointResult(point.name, value)
            subscription.last, subscription.heard = value, True
        except (TypeError, ValueError) as exc:
            error = DeviceGarbage(self.client.device.name, f"{point.object} cov", str(exc))
            result = PointResult(point.name, None, error)
        self._deliver(result)

    # --- requests ----------------------------------------------------------------------------------

    def _register(self, point: BacnetPoint) -> _Subscription:
        """A context under a process id this application does not use yet with the device; registered
        before the request goes out so the device's first notification finds it."""
        app = self.client.stack.app
        contexts: dict[Any, Any] = app._cov_contexts
        while True:
            process_id = app._cov_next_id
            app._cov_next_id = (app._cov_next_id + 1) % (1 << 22)
            if (self.client.address, process_id) not in contexts:
                break
        subscription = _Subscription(self, point, process_id)
        contexts[(self.client.address, process_id)] = subscription
        return subscription

    def _unregister(self, subscription: _Subscription) -> None:
        with contextlib.suppress(RuntimeError):  # the stack is already closed
            contexts: dict[Any, Any] = self.client.stack.app._cov_contexts
            if contexts.get((self.client.address, subscription.process_id)) is subscription:
                del contexts[(self.client.address, subscription.process_id)]

    async def _request(self, request: Any, where: str) -> None:
        request.pduDestination = self.client.address
        try:
            async with asyncio.timeout(self.client.device.timeout_s):
                with self.client.translated(where):
                    await self.client.stack.app.request(request)
        except TimeoutError:
            raise DeviceUnreachable(
                self.client.device.name, f"{self.client.device.address} {where}", "no answer", "timeout"
            ) from None

    async def _subscribe(self, subscription: _Subscription) -> None:
        request = SubscribeCOVRequest(
            subscriberProcessIdentifier=subscription.process_id,
            monitoredObjectIdentifier=subscription.monitored_object_identifier,
            issueConfirmedNotifications=self.confirmed,
            lifetime=self.lifetime_s,
        )
        await self._request(request, f"{subscription.point.object} subscribe-cov")

    async def _cancel(self, subscription: _Subscription) -> None:
        request = SubscribeCOVRequest(  # neither confirmed nor lifetime: a cancellation
            subscriberProcessIdentifier=subscription.process_id,
            monitoredObjectIdentifier=subscription.monitored_object_identifier,
        )
        with contextlib.suppress(DeviceError):
            await self._request(request, f"{subscription.point.object} cancel-cov")

    async def _renew_forever(self) -> None:
        interval = renewal_interval_s(self.lifetime_s)
        delay = interval
        while True:
            await asyncio.sleep(delay)
            delay = interval if await self._renew_all() else min(RETRY_S, interval)

    async def _renew_all(self) -> bool:
        """Re-subscribe every point; a refused point goes to polling. False when the device did not answer
        (its points then get one error result each, until a renewal succeeds again)."""
        for name, subscription in list(self._subscriptions.items()):
            try:
                await self._subscribe(subscription)
            except DeviceUnreachable as error:
                self._renewal_failures += 1
                if not self._failing:
                    self._failing = True
                    log.warning("cov renewal failed", device=self.client.device.name, error=str(error))
                    for point in self._subscriptions:
                        self._deliver(PointResult(point, None, error))
                return False
            except DeviceRejected as error:
                self._unregister(subscription)
                del self._subscriptions[name]
                self._polled[name] = error
                log.warning(
                    "cov renewal refused", device=self.client.device.name, point=name, code=error.code
                )
        self._renewals += 1
        if self._failing:  # unsubscribed for a while: a change may have gone unseen, wait for the device
            self._failing = False
            log.info("cov renewed again", device=self.client.device.name)
        else:
            self._confirm()
        for subscription in self._subscriptions.values():
            subscription.heard = False
        return True

    def _confirm(self) -> None:
        """The subscriptions lived through a renewal: their silent points' values still hold."""
        for name, subscription in self._subscriptions.items():
            if not subscription.heard and subscription.last is not None:
                self._deliver(PointResult(name, subscription.last))


def _running(stack: BacnetApplication) -> bool:
    try:
        _ = stack.app
    except RuntimeError:
        return False  # closed already: the device drops the subscriptions when their lifetime ends
    return True


def _decode(object_id: Any, property_value: Any) -> float:
    """The notification's present value as a float, typed by the object's class."""
    object_class = get_vendor_info(0).get_object_class(object_id[0])
    if object_class is None:
        raise TypeError(f"no object class for {object_id}")
    return number(
        property_value.value.cast_out(object_class.get_property_type(property_value.propertyIdentifier))
    )
