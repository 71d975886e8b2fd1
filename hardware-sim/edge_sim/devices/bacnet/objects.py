"""BACnet objects as the simulated controllers use them: read-only sensors and commandable setpoints that
show the controller's own sequence as their relinquish default."""

from __future__ import annotations

from typing import Any

from bacpypes3.errors import PropertyError
from bacpypes3.local.analog import AnalogInputObject, AnalogOutputObject, AnalogValueObjectCmd
from bacpypes3.local.binary import BinaryInputObject


def _property_name(obj: Any, attr: Any) -> str:
    return attr if isinstance(attr, str) else str(obj._property_identifier_class(attr).attr)


class _ReadOnlyPresentValue:
    """An input: the network may read it, and write its present value only when out of service."""

    outOfService: bool  # noqa: N815 (a BACnet property name)

    async def write_property(
        self, attr: Any, value: Any, index: int | None = None, priority: int | None = None
    ) -> None:
        if _property_name(self, attr) == "presentValue" and not self.outOfService:
            raise PropertyError("writeAccessDenied")
        await super().write_property(attr, value, index, priority)  # type: ignore[misc]


class SensorInput(_ReadOnlyPresentValue, AnalogInputObject):  # type: ignore[misc]
    """An analog sensor."""


class StatusInput(_ReadOnlyPresentValue, BinaryInputObject):  # type: ignore[misc]
    """A binary status."""


def _analog(
    kind: str, instance: int, name: str, units: str, value: float, *, description: str
) -> dict[str, Any]:
    """The properties every simulated analog object has."""
    return {
        "objectIdentifier": (kind, instance),
        "objectName": name,
        "description": description,
        "presentValue": value,
        "units": units,
        "statusFlags": [0, 0, 0, 0],
        "eventState": "normal",
        "outOfService": False,
        "covIncrement": 0.1,
    }


def sensor(instance: int, name: str, units: str, value: float, description: str = "") -> SensorInput:
    return SensorInput(**_analog("analog-input", instance, name, units, value, description=description))


def status(instance: int, name: str, active: bool, description: str = "") -> StatusInput:
    return StatusInput(
        objectIdentifier=("binary-input", instance),
        objectName=name,
        description=description,
        presentValue="active" if active else "inactive",
        polarity="normal",
        statusFlags=[0, 0, 0, 0],
        eventState="normal",
        outOfService=False,
    )


class Commanded:
    """A commandable analog value or output: the network writes at a priority; with every priority
    relinquished the object shows, and the controller follows, its own sequence's value."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    @property
    def name(self) -> str:
        return str(self.obj.objectName)

    def sync(self, own_value: float) -> float | None:
        """Show `own_value` as the relinquish default; return the commanded value if a priority is active."""
        self.obj.relinquishDefault = own_value
        self.obj.recalculating()
        if getattr(self.obj.currentCommandPriority, "unsigned", None) is None:
            return None
        return float(self.obj.presentValue)

    def active_priority(self) -> int | None:
        priority = getattr(self.obj.currentCommandPriority, "unsigned", None)
        return None if priority is None else int(priority)


def setpoint(
    instance: int, name: str, units: str, default: float, *, description: str = "", kind: str = "analog-value"
) -> Commanded:
    """A commandable analog value (or analog output) with a priority array."""
    cls = AnalogValueObjectCmd if kind == "analog-value" else AnalogOutputObject
    return Commanded(
        cls(
            relinquishDefault=default,
            **_analog(kind, instance, name, units, default, description=description),
        )
    )
