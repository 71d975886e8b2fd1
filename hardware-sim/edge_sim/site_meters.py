"""The site's meters: which model measures which circuit, and the readings they show.

Each building has a main meter and HVAC, lighting and plug sub-meters; the main meter's registers are the
sum of the three circuits, so the energy balance holds on the wire too. Meter energy registers start from
a plausible installed-years value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edge_sim.devices.meters.abb_b23 import AbbB23
from edge_sim.devices.meters.base import MeterModel, MeterReading
from edge_sim.devices.meters.demand import SlidingDemand
from edge_sim.devices.meters.iem3255 import Iem3255
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.site.building import Building
from edge_sim.site.specs import LIBRARY_BUILDING

CIRCUITS = ("hvac", "lighting", "plugs")
RS485 = "rs485"
LIBRARY_FLOOR_M2 = LIBRARY_BUILDING.floor_area_m2
INITIAL_KWH = {"hvac": 412_000.0, "lighting": 96_000.0, "plugs": 143_000.0}  # the library's; scaled by area


@dataclass(frozen=True, slots=True)
class MeterPlan:
    """Where a meter sits: building, circuit ('main' or a sub-circuit), model, and which Modbus host."""

    building: str
    circuit: str
    model: MeterModel
    host: str  # 'main-<building>', 'gateway' (TCP) or 'rs485' (RTU bus)

    @property
    def name(self) -> str:
        return f"{self.building}-{self.circuit}-meter"


METERS = (
    MeterPlan("library", "main", Iem3255(unit_id=1), "main-library"),
    MeterPlan("info-centre", "main", Sdm630(unit_id=1), "main-info-centre"),
    MeterPlan("library", "hvac", AbbB23(unit_id=1), "gateway"),
    MeterPlan("library", "lighting", Sdm630(unit_id=2), "gateway"),
    MeterPlan("library", "plugs", Sdm630(unit_id=3), "gateway"),
    MeterPlan("info-centre", "hvac", Sdm630(unit_id=1), "rs485"),
    MeterPlan("info-centre", "lighting", AbbB23(unit_id=2), "rs485"),
    MeterPlan("info-centre", "plugs", Iem3255(unit_id=3), "rs485"),
)


class MeteredCircuit:
    """A meter's view of its building: power, energy and sliding 15-minute demand."""

    def __init__(self, plan: MeterPlan, building: Building) -> None:
        self.plan = plan
        self.building = building
        self.demand = SlidingDemand()

    def power_w(self) -> float:
        power = self.building.power
        return {
            "main": power.total,
            "hvac": power.hvac,
            "lighting": power.lighting,
            "plugs": power.plugs,
        }[self.plan.circuit]

    def import_kwh(self) -> float:
        energy = self.building.energy_kwh
        age = self.building.spec.floor_area_m2 / LIBRARY_FLOOR_M2
        circuits = CIRCUITS if self.plan.circuit == "main" else (self.plan.circuit,)
        return sum(INITIAL_KWH[c] * age + energy[c] for c in circuits)

    def reading(self, now: datetime) -> MeterReading:
        energy = self.import_kwh()
        self.demand.add(now.timestamp(), energy)
        return MeterReading(
            power_w=self.power_w(),
            import_kwh=energy,
            export_kwh=0.0,
            demand_w=self.demand.demand_w,
            max_demand_w=self.demand.max_demand_w,
        )
