"""What every simulated meter model shows, and the interface the Modbus servers use to serve it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pymodbus.simulator import SimDevice


@dataclass(frozen=True, slots=True)
class MeterReading:
    """A three-phase meter's view of its circuit at one instant."""

    power_w: float  # total active power, import positive
    import_kwh: float
    export_kwh: float
    demand_w: float  # sliding-window demand (15 minutes for Korean billing)
    max_demand_w: float
    voltage_v: float = 220.0  # phase to neutral; Korea: 220/380 V, 60 Hz
    frequency_hz: float = 60.0
    power_factor: float = 0.95

    @property
    def current_a(self) -> float:
        """Per phase, balanced load."""
        return self.power_w / 3 / (self.voltage_v * self.power_factor)


@dataclass(frozen=True, slots=True)
class RegisterWrite:
    """Registers to set in a served device: function code 3 (holding) or 4 (input), wire address."""

    function_code: int
    address: int
    registers: list[int]


class MeterModel(Protocol):
    @property
    def unit_id(self) -> int: ...

    def sim_device(self) -> SimDevice:
        """The pymodbus datastore for this meter, every register of its map readable."""
        ...

    def register_writes(self, reading: MeterReading) -> list[RegisterWrite]:
        """What to write into the datastore so that it shows `reading`."""
        ...
