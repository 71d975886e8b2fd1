"""The distributions the zoo draws its buildings from, each with its source or assumption (ZOO.md has the
table and the reasoning). Figures are rounded; where a source gives a range the draw is uniform over it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class City:
    name: str
    january_c: float  # daily mean, KMA 1991-2020 normals (rounded)
    august_c: float


# Seoul's normals drive the weather generator; other cities shift them by their difference to Seoul.
CITIES = (
    City("Seoul", -2.0, 26.1),
    City("Incheon", -1.5, 25.6),
    City("Daejeon", -1.0, 25.9),
    City("Cheongju", -1.5, 26.0),
    City("Daegu", 0.6, 26.6),
    City("Gwangju", 0.8, 26.6),
    City("Busan", 3.2, 26.3),
    City("Gangneung", 0.4, 25.0),
    City("Jeju", 6.1, 27.4),
)
SEOUL = CITIES[0]


@dataclass(frozen=True, slots=True)
class Vintage:
    """Envelope by the Korean energy-saving design standard in force when built (central region)."""

    name: str
    u_wall: float  # W/(m2 K)
    u_window: float
    infiltration_ach: tuple[float, float]


VINTAGES = (
    Vintage("before 2001", 0.58, 3.4, (0.5, 0.8)),
    Vintage("2001-2012", 0.47, 2.4, (0.4, 0.6)),
    Vintage("2013-2017", 0.27, 1.5, (0.3, 0.5)),
    Vintage("2018 on", 0.24, 1.3, (0.2, 0.4)),
)
U_SPREAD = 0.15  # each zone's U values within +/-15% of its vintage's (workmanship, thermal bridges)

# ISO 13790 Table 12 effective heat capacity per m2 of floor, J/(m2 K), and how often each occurs among
# Korean public buildings (mostly reinforced concrete: an assumption).
MASS_CLASSES = (("light", 80e3, 0.1), ("medium", 165e3, 0.4), ("heavy", 260e3, 0.5))


@dataclass(frozen=True, slots=True)
class Use:
    """A zone's use: people density, plug load and lighting target."""

    name: str
    m2_per_person: tuple[float, float]
    plug_w_m2: tuple[float, float]
    design_lux: float
    plug_standby_share: float


READING = Use("reading room", (3.0, 6.0), (4.0, 8.0), 500, 0.15)
STACKS = Use("stacks", (15.0, 25.0), (1.0, 3.0), 300, 0.3)
OFFICE = Use("office", (8.0, 14.0), (10.0, 16.0), 500, 0.2)
HALL = Use("multipurpose hall", (2.0, 5.0), (2.0, 5.0), 300, 0.1)
LOBBY = Use("lobby", (8.0, 15.0), (2.0, 4.0), 200, 0.3)
CLASSROOM = Use("classroom", (2.5, 4.0), (4.0, 8.0), 500, 0.1)
GALLERY = Use("gallery", (6.0, 12.0), (3.0, 6.0), 300, 0.2)


@dataclass(frozen=True, slots=True)
class BuildingType:
    name: str
    weight: float  # share of the zoo
    uses: tuple[Use, ...]
    weekdays_only: bool
    open_hour: tuple[int, int]  # drawn between, inclusive
    close_hour: tuple[int, int]
    area_m2: tuple[float, float]  # median and sigma of log(area) for the lognormal draw


BUILDING_TYPES = (
    BuildingType("public library", 0.3, (READING, READING, STACKS, LOBBY, OFFICE), False, (8, 10), (18, 22),
                 (3000.0, 0.5)),
    BuildingType("district office", 0.3, (OFFICE, OFFICE, OFFICE, LOBBY, HALL), True, (8, 9), (18, 19),
                 (5000.0, 0.6)),
    BuildingType("community centre", 0.25, (HALL, CLASSROOM, OFFICE, LOBBY), False, (9, 10), (18, 21),
                 (1500.0, 0.5)),
    BuildingType("museum", 0.15, (GALLERY, GALLERY, LOBBY, OFFICE), False, (9, 10), (17, 19),
                 (4000.0, 0.5)),
)  # fmt: skip
AREA_LIMITS_M2 = (600.0, 15_000.0)
ZONE_COUNT = (2, 12)  # uniform
ZONE_AREA_WEIGHT = (0.5, 1.5)  # each zone's share of the floor: weights drawn uniformly, normalised
HEIGHT_M = (3.0, 4.5)
EXTERIOR_WALL_PER_M2 = (0.25, 0.6)  # m2 of external wall per m2 of floor (perimeter against core zones)
WINDOW_WALL_RATIO = (0.2, 0.5)
ROOF_PROBABILITY = 0.4  # a zone under the roof
SHGC = (0.3, 0.55)
LIGHTING_W_M2 = (5.0, 10.0)  # LED retrofits to late fluorescent
DAYLIGHT_FACTOR = (0.005, 0.04)
FACADES = (0.0, 90.0, 180.0, 270.0)

BASE_LOAD_SHARE = (0.3, 0.7)  # non-HVAC share of the design hour's demand (the range)
PLUG_FLOOR_W_M2 = 1.0
OTHER_CLOSED_SHARE = 0.6  # unconditioned base load (lifts, pumps, servers, outdoor lights) when closed

# HVAC systems of Korean public buildings (an assumption from the mix the KEA's public-building audits
# describe: multi-split EHP/VRF most common in small and mid-size buildings, central VAV in larger ones).
HVAC_TYPES = (("vav-chiller", 0.3), ("vav-heat-pump", 0.3), ("vrf", 0.4))
LIMITED_KNOBS_SHARE = 0.35  # only zone temperatures, cooling setpoints, a plant limit and a main meter
