"""Plant sections the stock heat pump does not cover: a water-cooled chiller and a gas boiler.

Chiller: full-load COP 6.0 - 0.06 dT with dT = outdoor - chilled-water supply, condenser pumps and cooling
tower fans included (about 4.4 at 33 C; screw and centrifugal chillers with their towers, an assumption from
typical rated COPs of 5-6 less 15-20% auxiliaries). Boiler: gas; only its burner fan and pumps are on the
electric meter, about 1.5% of the heat delivered at full load. Part load, cycling and the demand limit are
the stock PlantSection's.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_sim.physics.plant import MIN_COP, PlantSection

BOILER_AUXILIARY_SHARE = 0.015


@dataclass
class ChillerSection(PlantSection):
    def cop_full_load(self, t_out: float) -> float:
        return max(MIN_COP, 6.0 - 0.06 * (t_out - self.supply_temp_c))


@dataclass
class BoilerSection(PlantSection):
    def cop_full_load(self, t_out: float) -> float:
        return 1.0 / BOILER_AUXILIARY_SHARE
