"""How fast the simulator runs.

In-process stepper: simulated seconds per wall-clock second for a scenario week with KPIs (goal: a
simulated week in under 30 s on 2 cores), against a reference measured in the same run: the bare 3R2C zone
integration of the same number of zone-steps, the floor any building model has to pay.
Run: .venv/bin/python -m bench.simulator
"""

from __future__ import annotations

import time

from edge_sim.physics.zone import ThermalZone, ZoneLoads, ZoneParameters
from edge_sim.site.site import CONTROL_STEP_S
from edge_sim.study import WARM_UP, run_scenario

WEEK_S = 7 * 86400


def reference_zone_steps_per_s(steps: int) -> float:
    zone = ThermalZone(ZoneParameters(floor_area_m2=500, window_area_m2=50, opaque_area_m2=300), 24.0, 24.0)
    loads = ZoneLoads(convective=5000.0, radiant=5000.0, supply_m3_s=2.0, supply_temp_c=14.0)
    start = time.perf_counter()
    for _ in range(steps):
        zone.advance(CONTROL_STEP_S, 30.0, loads)
    return steps / (time.perf_counter() - start)


def main() -> None:
    start = time.perf_counter()
    result = run_scenario("summer", seed=0)
    wall = time.perf_counter() - start
    simulated = WEEK_S + WARM_UP.total_seconds()
    zones = len(result.kpis["site"].discomfort_kh)
    zone_steps = int(simulated / CONTROL_STEP_S) * zones
    ref_rate = reference_zone_steps_per_s(zone_steps)
    site_rate = zone_steps / wall
    print(f"scenario week + {WARM_UP.days}-day warm-up, {zones} zones, {CONTROL_STEP_S:.0f} s steps")
    print(
        f"in-process stepper: {wall:.2f} s wall for {simulated / 86400:.0f} simulated days"
        " (goal: a week in under 30 s)"
    )
    print(f"  {simulated / wall:,.0f} simulated s per wall s")
    print(f"reference: bare 3R2C zone integration, {ref_rate:,.0f} zone-steps/s")
    print(f"ratio site zone-steps/s to bare zone-steps/s: {site_rate / ref_rate:.3f}")


if __name__ == "__main__":
    main()
