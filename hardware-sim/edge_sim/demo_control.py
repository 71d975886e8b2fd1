"""The demo's control: the built-in configuration's library under load shaving, so there is something to see.

`with_control` adds a `[control]` section for the library (its main meter, outdoor temperature, plant
demand limit and four zones; active on the simulator, a demand target below its summer afternoon demand,
its opening hours) and the library's baseline for the savings report. The baseline ships with the
simulator (demo_baseline.json): fitted like a real building's (`edge-agent baseline fit`) on the library's
uncontrolled summer week under weather seed 1, which the demo's own weather (seed 0) is not; fitting takes
seconds the demo should not wait, and `python -m edge_sim.demo_control` writes it again.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.config import AgentConfig, ControlConfig, GatewayConfig
from edge_agent.control.calendar import OpeningHours
from edge_agent.control.savings.baseline import TowtBaseline, fit_towt

BUILDING = "library"
BASELINE_FILE = Path(__file__).with_name("demo_baseline.json")
DEMAND = "library-main-meter/total_power"
ZONES = ("library-reading-1-vav", "library-reading-2-vav", "library-stacks-vav", "library-lobby-vav")
TARGET_KW = 30.0  # below the library's summer afternoon demand (about 35-110 kW): the limiter has work
STEP_S = 30.0  # building seconds between decisions: at the demo's 60x, two a second
SOCKET = "edge-agent.sock"


def library_hours() -> OpeningHours:
    from edge_sim.control_study import opening_hours
    from edge_sim.physics.climate import SCENARIOS
    from edge_sim.site.site import Site

    return opening_hours(Site(SCENARIOS["summer"].start).building(BUILDING))


def with_control(config: AgentConfig, state: Path) -> AgentConfig:
    """`config` (the built-in site) with the library under active control, its baseline, and the local
    socket in `state` (what the demo asks the agent's status on)."""
    hours = library_hours()
    control = ControlConfig.model_validate(
        {
            "mode": "active",
            "step_s": STEP_S,
            "demand_target_kw": TARGET_KW,
            "baseline": BASELINE_FILE,
            "demand": DEMAND,
            "outdoor_temperature": "library-ahu/outdoor_air_temperature",
            "plant_limit": "library-plant/demand_limit",
            "zones": [
                {
                    "name": zone.removeprefix("library-").removesuffix("-vav"),
                    "temperature": f"{zone}/zone_temperature",
                    "cooling_setpoint": f"{zone}/cooling_setpoint",
                    "co2": f"{zone}/zone_co2",
                }
                for zone in ZONES
            ],
            "open_hour": hours.open_hour,
            "close_hour": hours.close_hour,
            "open_days": sorted(hours.days),
        }
    )
    gateway = GatewayConfig.model_validate({**config.gateway.model_dump(), "socket": state / SOCKET})
    return config.model_copy(update={"control": control, "gateway": gateway})


def fit_library_baseline() -> TowtBaseline:
    """The library's baseline as demo_baseline.json holds it (about ten seconds: a simulated week)."""
    from edge_sim.baseline_study import hourly_samples, record

    return fit_towt(hourly_samples(record("summer", BUILDING, seed=1)), library_hours())


if __name__ == "__main__":
    BASELINE_FILE.write_text(fit_library_baseline().to_json() + "\n")
    print(f"wrote {BASELINE_FILE}")
