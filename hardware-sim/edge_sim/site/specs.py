"""The two buildings, zone by zone: geometry, envelope, gains, lighting and schedules.

Figures are typical of recent Korean public buildings: LED lighting at 6-8 W/m2, double glazing
(U 2.0, SHGC 0.4), walls U 0.5 and roofs U 0.3, reading rooms at about 4 m2 per seat, offices at about
10 m2 per person, a city operations control room with video walls and servers at 60 W/m2, around the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_sim.physics.zone import ZoneParameters
from edge_sim.site.schedules import AROUND_THE_CLOCK, LIBRARY, OFFICE, Schedule

SOUTH, EAST, WEST, NORTH = 180.0, 90.0, 270.0, 0.0


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    name: str
    description: str
    params: ZoneParameters
    facade_azimuth_deg: float
    schedule: Schedule
    m2_per_person: float  # at full occupancy
    lighting_w_m2: float
    plug_w_m2: float
    plug_standby_share: float  # plug load out of hours, share of the full load
    design_lux: float  # electric lighting at 100%
    daylight_factor: float  # share of outdoor horizontal illuminance reaching the work plane
    shgc: float = 0.4
    people_w: float = 75.0  # sensible heat per person, seated
    ventilation_l_s_person: float = 2.5  # ASHRAE 62.1 Rp
    ventilation_l_s_m2: float = 0.3  # ASHRAE 62.1 Ra

    @property
    def design_people(self) -> float:
        return self.params.floor_area_m2 / self.m2_per_person

    @property
    def ventilation_m3_s(self) -> float:
        return (
            self.ventilation_l_s_person * self.design_people
            + self.ventilation_l_s_m2 * self.params.floor_area_m2
        ) / 1000


@dataclass(frozen=True, slots=True)
class BuildingSpec:
    name: str
    description: str
    zones: tuple[ZoneSpec, ...]
    night_lighting_share: float = 0.05  # security and exit lighting when closed
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def floor_area_m2(self) -> float:
        return sum(z.params.floor_area_m2 for z in self.zones)


def _params(area: float, height: float, window: float, wall: float, roof: float = 0.0) -> ZoneParameters:
    # Roof at U 0.3 folded into the opaque conductance as an equivalent area at U 0.5.
    return ZoneParameters(
        floor_area_m2=area, height_m=height, window_area_m2=window, opaque_area_m2=wall + roof * 0.6
    )


LIBRARY_BUILDING = BuildingSpec(
    "library",
    "Central library: two reading rooms, closed stacks and a glazed west lobby; open daily 09-22",
    (
        ZoneSpec(
            "reading-1", "ground-floor reading room, south glazing", _params(900, 3.5, 180, 420),
            SOUTH, LIBRARY, 4.0, 8.0, 6.0, 0.15, 500, 0.030,
            ventilation_l_s_m2=0.6,
        ),
        ZoneSpec(
            "reading-2", "first-floor reading room under the roof, east glazing",
            _params(900, 3.5, 150, 420, 900),
            EAST, LIBRARY, 4.0, 8.0, 6.0, 0.15, 500, 0.025,
            ventilation_l_s_m2=0.6,
        ),
        ZoneSpec(
            "stacks", "book stacks, few windows", _params(1200, 3.5, 40, 600, 600),
            NORTH, LIBRARY, 20.0, 6.0, 2.0, 0.3, 300, 0.005,
            ventilation_l_s_m2=0.6,
        ),
        ZoneSpec(
            "lobby", "double-height lobby, west curtain wall", _params(400, 7.0, 220, 150, 400),
            WEST, LIBRARY, 10.0, 7.0, 3.0, 0.3, 200, 0.050,
        ),
    ),
)  # fmt: skip

INFO_CENTRE_BUILDING = BuildingSpec(
    "info-centre",
    "City information centre: offices open weekdays 09-18, and a city operations control room staffed 24/7",
    (
        ZoneSpec(
            "office-south", "open-plan offices, south glazing", _params(700, 3.3, 140, 330),
            SOUTH, OFFICE, 10.0, 8.0, 12.0, 0.2, 500, 0.020,
        ),
        ZoneSpec(
            "office-north", "open-plan offices under the roof, north glazing",
            _params(700, 3.3, 120, 330, 700),
            NORTH, OFFICE, 10.0, 8.0, 12.0, 0.2, 500, 0.015,
        ),
        ZoneSpec(
            "control-room", "city operations control room, video wall and servers, 24/7",
            _params(250, 3.3, 20, 110),
            EAST, AROUND_THE_CLOCK, 31.25, 8.0, 60.0, 1.0, 500, 0.005,
        ),
    ),
)  # fmt: skip

BUILDINGS = (LIBRARY_BUILDING, INFO_CENTRE_BUILDING)
