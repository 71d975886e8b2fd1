"""The small value types every module passes around: Quality and Reading."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple, Self, get_type_hints

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema


class Quality(StrEnum):
    """How far a reading's value can be trusted."""

    GOOD = "good"
    BAD = (
        "bad"  # not to be trusted: a device error (value None) or an implausible value (kept, for diagnosis)
    )
    STALE = "stale"  # the last good value, older than its poll interval allows
    UNAVAILABLE = "unavailable"  # the device answered, and said it has no value for this quantity
    UNCERTAIN_TIME = "uncertain-time"  # a good value, but the clock had stepped: its timestamp may be wrong


class _Fields(NamedTuple):
    device: str
    point: str
    value: float | None
    unit: str
    quality: Quality
    ts: datetime


_new = tuple.__new__  # Reading.__new__ only: every other module makes a Reading through the constructor


class Reading(_Fields):
    """One value of one point at one instant (UTC). A named tuple: one is made for every point of every
    poll, at half a frozen dataclass' cost; `_replace` makes a changed copy."""

    __slots__ = ()

    def __new__(  # noqa: PLR0917 - the named tuple's own positional signature
        cls, device: str, point: str, value: float | None, unit: str, quality: Quality, ts: datetime
    ) -> Self:
        if ts.tzinfo is None:
            raise ValueError(f"reading {device}/{point}: timestamp must be timezone-aware")
        return _new(cls, (device, point, value, unit, quality, ts))

    @property
    def key(self) -> str:
        """The point's gateway-wide name, 'device/point'."""
        return f"{self.device}/{self.point}"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        """In pydantic's JSON (command replies, status) a reading is an object with named fields, not the
        array pydantic makes of a named tuple."""
        fields = core_schema.typed_dict_schema(
            {
                name: core_schema.typed_dict_field(handler.generate_schema(kind))
                for name, kind in get_type_hints(_Fields).items()
            }
        )
        as_object = core_schema.plain_serializer_function_ser_schema(cls._asdict, return_schema=fields)
        return core_schema.no_info_after_validator_function(
            lambda data: cls(**data), fields, serialization=as_object
        )


def utc_now() -> datetime:
    return datetime.now(UTC)
