"""Sizing ReadPropertyMultiple requests for what a BACnet device accepts.

Encoded sizes are conservative estimates (ASHRAE 135 clause 20); a device that still refuses a batch gets it
halved by the client (bacnet.py), which remembers the smaller size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FALLBACK_MAX_APDU = 480  # when the device object's max-apdu-length-accepted cannot be read
LARGEST_MAX_APDU = 1476  # BACnet/IP: the largest APDU a UDP frame carries
MAX_RESPONSE_SEGMENTS = 8  # at most this many segments per response, even when both sides could do more

# Encoded sizes in bytes: headers, then per object and per property.
REQUEST_HEADER = 4  # PDU type, max segments/APDU, invoke id, service choice
RESPONSE_HEADER = 5  # PDU type, invoke id, service choice (+2 when segmented)
OBJECT_BYTES = 7  # object identifier (tag + 4) and the list's opening and closing tags
PROPERTY_REQUEST_BYTES = 5  # property identifier (tag + up to 4 octets for proprietary ones)
PROPERTY_RESPONSE_BYTES = 7  # property identifier and the result's opening and closing tags
VALUE_BYTES = 10  # an encoded Real, Double, Unsigned, Enumerated, Boolean, or an error pair
LARGE_VALUE_BYTES = {"priority-array": 16 * VALUE_BYTES + 2, "object-name": 66, "description": 130}

Key = tuple[str, str]  # (object, property)


@dataclass(frozen=True, slots=True)
class DeviceLimits:
    """What one request to the device may carry, from its device object and the local stack's."""

    max_apdu: int = FALLBACK_MAX_APDU
    """The device's max-apdu-length-accepted (or the configured override, or the fallback)."""
    segmentation: str = "noSegmentation"
    local_max_apdu: int = FALLBACK_MAX_APDU
    local_segmentation: str = "noSegmentation"
    local_max_segments: int = 1

    @property
    def request_bytes(self) -> int:
        """Requests are never segmented: one APDU that both sides accept."""
        return min(self.max_apdu, self.local_max_apdu)

    @property
    def response_bytes(self) -> int:
        segmented = self.segmentation in (
            "segmentedBoth",
            "segmentedTransmit",
        ) and self.local_segmentation in (
            "segmentedBoth",
            "segmentedReceive",
        )
        segments = min(self.local_max_segments, MAX_RESPONSE_SEGMENTS) if segmented else 1
        return self.request_bytes * max(segments, 1)


def plan_batches(keys: Sequence[Key], limits: DeviceLimits, max_points: int | None) -> list[list[Key]]:
    """Split the (object, property) pairs into ReadPropertyMultiple batches whose estimated request and
    response fit `limits`, each with at most `max_points` properties; one property always makes a batch."""
    batches: list[list[Key]] = []
    batch: list[Key] = []
    objects: set[str] = set()
    request, response = REQUEST_HEADER, RESPONSE_HEADER
    for key in keys:
        obj, prop = key
        if batch:
            more_request, more_response = _cost(obj, prop, objects)
            if (
                (max_points is not None and len(batch) >= max_points)
                or request + more_request > limits.request_bytes
                or response + more_response > limits.response_bytes
            ):
                batches.append(batch)
                batch, objects, request, response = [], set(), REQUEST_HEADER, RESPONSE_HEADER
        more_request, more_response = _cost(obj, prop, objects)
        batch.append(key)
        objects.add(obj)
        request += more_request
        response += more_response
    if batch:
        batches.append(batch)
    return batches


def _cost(obj: str, prop: str, objects: set[str]) -> tuple[int, int]:
    """Bytes one more property adds to a request and to its response."""
    new_object = 0 if obj in objects else OBJECT_BYTES
    value = LARGE_VALUE_BYTES.get(prop, VALUE_BYTES)
    return PROPERTY_REQUEST_BYTES + new_object, PROPERTY_RESPONSE_BYTES + value + new_object


def grouped(batch: Sequence[Key]) -> list[tuple[str, list[str]]]:
    """One read-access specification per object, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for obj, prop in batch:
        groups.setdefault(obj, []).append(prop)
    return list(groups.items())
