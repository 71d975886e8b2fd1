"""One zoo building per seed, drawn from the distributions of distributions.py: the same seed gives the same
building on any machine (random.Random seeded with a string, no global state).

`generate(seed, purpose)` checks the seed against its purpose (seeds.py): tuning code cannot get a held-out
building, and the evaluation cannot get a tuning one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import TypeVar

from edge_sim.physics.zone import CM_PER_M2, ZoneParameters
from edge_sim.site.schedules import Schedule
from edge_sim.site.specs import BuildingSpec, ZoneSpec
from edge_sim.zoo import distributions as d
from edge_sim.zoo.buildings import ChillerBuilding, ZooBuilding
from edge_sim.zoo.seeds import Purpose, check_purpose
from edge_sim.zoo.vrf import VrfBuilding

BASE_LOAD_ITERATIONS = 6
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MassZoneParameters(ZoneParameters):
    """ZoneParameters with the thermal mass of its construction class (ISO 13790 Table 12)."""

    cm_per_m2: float = CM_PER_M2

    @property
    def c_mass(self) -> float:
        return self.cm_per_m2 * self.floor_area_m2


@dataclass(frozen=True, slots=True)
class ZooSpec:
    """A generated building: what was drawn, and the spec the simulator builds."""

    seed: int
    kind: str  # building type
    city: d.City
    hvac: str  # 'vav-chiller', 'vav-heat-pump' or 'vrf'
    limited: bool  # only zone temperatures, cooling setpoints, a plant limit and a main meter
    vintage: str
    mass: str
    base_share: float  # drawn non-HVAC share of the design hour's demand
    other_w: float  # unconditioned base load while open
    spec: BuildingSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def zone_count(self) -> int:
        return len(self.spec.zones)

    def describe(self) -> str:
        schedule = self.spec.zones[0].schedule
        days = "weekdays" if schedule.weekdays_only else "daily"
        knobs = "limited knobs" if self.limited else "all knobs"
        return (
            f"seed {self.seed}: {self.kind} in {self.city.name}, {self.spec.floor_area_m2:.0f} m2, "
            f"{self.zone_count} zones, {self.hvac}, {self.vintage} {self.mass}, "
            f"base share {self.base_share:.2f}, "
            f"open {schedule.open_hour}-{schedule.close_hour} {days}, {knobs}"
        )


def _weighted(rng: random.Random, items: tuple[tuple[T, float], ...]) -> T:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def _schedule(rng: random.Random, kind: d.BuildingType) -> Schedule:
    open_hour = rng.randint(*kind.open_hour)
    close_hour = rng.randint(*kind.close_hour)
    span = close_hour - open_hour
    profile = {}
    for hour in range(open_hour, close_hour):
        if kind.weekdays_only:  # offices: full from the first hour, a lunch dip
            profile[hour] = 0.5 if hour == 12 else 0.9
        else:  # visitors: building up to the afternoon
            profile[hour] = round(0.3 + 0.7 * math.sin(math.pi * (hour - open_hour + 0.5) / span), 2)
    return Schedule(kind.name, open_hour, close_hour, kind.weekdays_only, profile, weekend_factor=1.2)


def _zone(rng: random.Random, index: int, use: d.Use, *, area: float, vintage: d.Vintage, cm: float,
          schedule: Schedule, lighting: float) -> ZoneSpec:  # fmt: skip
    height = rng.uniform(*d.HEIGHT_M)
    wall = area * rng.uniform(*d.EXTERIOR_WALL_PER_M2)
    window = wall * rng.uniform(*d.WINDOW_WALL_RATIO)
    roof = area if rng.random() < d.ROOF_PROBABILITY else 0.0
    u_wall = vintage.u_wall * rng.uniform(1 - d.U_SPREAD, 1 + d.U_SPREAD)
    params = MassZoneParameters(
        floor_area_m2=area,
        height_m=height,
        window_area_m2=window,
        u_window=vintage.u_window * rng.uniform(1 - d.U_SPREAD, 1 + d.U_SPREAD),
        opaque_area_m2=wall - window + roof * 0.6,  # roof at about 60% of the wall's U (as specs.py)
        u_opaque=u_wall,
        infiltration_ach=rng.uniform(*vintage.infiltration_ach),
        cm_per_m2=cm,
    )
    return ZoneSpec(
        f"z{index + 1}-{use.name.replace(' ', '-')}",
        use.name,
        params,
        rng.choice(d.FACADES),
        schedule,
        rng.uniform(*use.m2_per_person),
        lighting,
        rng.uniform(*use.plug_w_m2),
        use.plug_standby_share,
        use.design_lux,
        rng.uniform(*d.DAYLIGHT_FACTOR),
        shgc=rng.uniform(*d.SHGC),
    )


def generate(seed: int, purpose: Purpose, *, zones: int | None = None) -> ZooSpec:
    """The building of `seed`; `zones` forces the zone count (the 12-zone latency building)."""
    check_purpose(seed, purpose)
    rng = random.Random(f"edge-sim zoo {seed}")
    kind = rng.choices(d.BUILDING_TYPES, weights=[t.weight for t in d.BUILDING_TYPES])[0]
    city = rng.choice(d.CITIES)
    hvac = _weighted(rng, d.HVAC_TYPES)
    limited = rng.random() < d.LIMITED_KNOBS_SHARE
    vintage = rng.choice(d.VINTAGES)
    mass_name, cm = _weighted(rng, tuple(((n, c), w) for n, c, w in d.MASS_CLASSES))
    median, sigma = kind.area_m2
    area = min(d.AREA_LIMITS_M2[1], max(d.AREA_LIMITS_M2[0], rng.lognormvariate(math.log(median), sigma)))
    count = rng.randint(*d.ZONE_COUNT) if zones is None else zones
    if not d.ZONE_COUNT[0] <= count <= d.ZONE_COUNT[1]:
        raise ValueError(f"zones: {count} is outside {d.ZONE_COUNT[0]}-{d.ZONE_COUNT[1]}")
    weights = [rng.uniform(*d.ZONE_AREA_WEIGHT) for _ in range(count)]
    schedule = _schedule(rng, kind)
    lighting = rng.uniform(*d.LIGHTING_W_M2)
    zone_specs = tuple(
        _zone(
            rng,
            i,
            kind.uses[i % len(kind.uses)],
            area=area * w / sum(weights),
            vintage=vintage,
            cm=cm,
            schedule=schedule,
            lighting=lighting,
        )
        for i, w in enumerate(weights)
    )
    base_share = rng.uniform(*d.BASE_LOAD_SHARE)
    name = f"zoo-{seed}"
    spec = BuildingSpec(name, f"{kind.name} in {city.name}", zone_specs)
    spec, other_w = _base_load(spec, hvac, base_share)
    return ZooSpec(seed, kind.name, city, hvac, limited, vintage.name, mass_name, base_share, other_w, spec)


def _base_load(spec: BuildingSpec, hvac: str, share: float) -> tuple[BuildingSpec, float]:
    """Plug loads (scaled down if they alone exceed the share) and the unconditioned base load that make
    the design hour's non-HVAC share `share`; plugs warm the zones, so HVAC is re-sized each round."""
    drawn = {z.name: z.plug_w_m2 for z in spec.zones}
    scale, other_w = 1.0, 0.0
    for _ in range(BASE_LOAD_ITERATIONS):
        zones = tuple(replace(z, plug_w_m2=max(d.PLUG_FLOOR_W_M2, drawn[z.name] * scale)) for z in spec.zones)
        spec = replace(spec, zones=zones)
        building = make_building_of(spec, hvac, 24.0)
        needed = share / (1 - share) * building.design_hvac_w()
        in_zones = building.design_base_w()
        lights = sum(z.lighting_w_m2 * z.params.floor_area_m2 for z in spec.zones)
        plugs = in_zones - lights
        if in_zones > needed and plugs > 0:
            scale *= max(0.0, needed - lights) / plugs
            other_w = 0.0
        else:
            other_w = needed - in_zones
    return spec, other_w


def make_building_of(spec: BuildingSpec, hvac: str, start_temp_c: float, other_w: float = 0.0) -> ZooBuilding:
    if hvac == "vrf":
        return VrfBuilding(spec, start_temp_c, other_w)
    if hvac == "vav-chiller":
        return ChillerBuilding(spec, start_temp_c, other_w)
    if hvac == "vav-heat-pump":
        return ZooBuilding(spec, start_temp_c, other_w)
    raise ValueError(f"hvac: unknown type {hvac!r} (vav-chiller, vav-heat-pump or vrf)")


def make_building(zoo: ZooSpec, start_temp_c: float) -> ZooBuilding:
    return make_building_of(zoo.spec, zoo.hvac, start_temp_c, zoo.other_w)


def design_base_share(zoo: ZooSpec) -> float:
    """The non-HVAC share of the built building's design-hour demand."""
    building = make_building(zoo, 24.0)
    base = building.design_base_w()
    return base / (base + building.design_hvac_w())
