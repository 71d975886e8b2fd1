"""A BACnet/IP room controller: zone temperature (analog-input 1) and a commandable cooling setpoint
(analog-value 1, priority array, relinquish default 26.0 C: the Korean public-building minimum)."""

from __future__ import annotations

from typing import Any

from bacpypes3.errors import PropertyError
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObjectCmd
from bacpypes3.local.device import DeviceObject

from edge_agent.protocols.bacnet_app import BacnetApplication

COOLING_SETPOINT_DEFAULT_C = 26.0


class SensorInput(AnalogInputObject):  # type: ignore[misc]
    """A sensor: the network may read it, but may write its present value only when out of service."""

    async def write_property(
        self, attr: Any, value: Any, index: int | None = None, priority: int | None = None
    ) -> None:
        name = attr if isinstance(attr, str) else self._property_identifier_class(attr).attr
        if name == "presentValue" and not self.outOfService:
            raise PropertyError("writeAccessDenied")
        await super().write_property(attr, value, index, priority)


class RoomController:
    def __init__(self, name: str, address: str, instance: int, zone_temperature: float) -> None:
        self.name = name
        self.address = address
        self.instance = instance
        self.zone_temperature = SensorInput(
            objectIdentifier=("analog-input", 1),
            objectName="Zone Temperature",
            description="Reading room air temperature",
            presentValue=zone_temperature,
            units="degreesCelsius",
            statusFlags=[0, 0, 0, 0],
            eventState="normal",
            outOfService=False,
            covIncrement=0.1,
        )
        self.cooling_setpoint = AnalogValueObjectCmd(
            objectIdentifier=("analog-value", 1),
            objectName="Cooling Setpoint",
            description="Occupied cooling setpoint",
            presentValue=COOLING_SETPOINT_DEFAULT_C,
            relinquishDefault=COOLING_SETPOINT_DEFAULT_C,
            units="degreesCelsius",
            statusFlags=[0, 0, 0, 0],
            eventState="normal",
            outOfService=False,
            covIncrement=0.1,
        )
        device = DeviceObject(
            objectIdentifier=("device", instance),
            objectName=name,
            vendorIdentifier=999,
            vendorName="edge-sim",
            modelName="edge-sim room controller",
        )
        self.stack = BacnetApplication(address, [device, self.zone_temperature, self.cooling_setpoint])

    def show(self, zone_temperature: float) -> None:
        self.zone_temperature.presentValue = zone_temperature

    def setpoint(self) -> float:
        """The effective cooling setpoint: the highest active priority, or the relinquish default."""
        return float(self.cooling_setpoint.presentValue)
