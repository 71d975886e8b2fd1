"""Schneider Electric Acti9 iEM3255 (Modbus RTU, default 19200 8E1).

Sources: Schneider DOCA0005EN (iEM3100/iEM3200/iEM3300 user manual) as summarised in shared/DOMAIN.md;
the block layout matches the PM3200 family register list (3000 block, int64 energies at 3204/3208).
Function 03 holding registers only. The datasheet numbers registers 1-based; this code uses wire
addresses: wire = number - 1. Float32 and Int64 are big-endian, high word first.

| datasheet | wire | quantity                         | type, unit   |
|-----------|------|----------------------------------|--------------|
| 3000/2/4  | 2999 | current I1/I2/I3                 | float32, A   |
| 3010      | 3009 | current average                  | float32, A   |
| 3020/2/4  | 3019 | voltage L1-L2 / L2-L3 / L3-L1    | float32, V   |
| 3026      | 3025 | voltage L-L average              | float32, V   |
| 3028/30/32| 3027 | voltage L1-N / L2-N / L3-N       | float32, V   |
| 3054/6/8  | 3053 | active power phase 1/2/3         | float32, kW  |
| 3060      | 3059 | total active power               | float32, kW  |
| 3084      | 3083 | total power factor               | float32      |
| 3110      | 3109 | frequency                        | float32, Hz  |
| 3204      | 3203 | total active energy import       | int64, Wh    |
| 3208      | 3207 | total active energy export       | int64, Wh    |

Power is in kW, not W. Wire addresses 2999-3210 answer as one block so block reads work; registers in
it that the simulator does not model (reactive and apparent power, unbalance...) read 0.
Power factor: the meter encodes it over four quadrants (range -2..2); in quadrant 1 (import, lagging),
the only case simulated, the register holds the plain power factor.
No demand registers: the iEM3100/3200/3300 register list (DOCA0005EN; also a third-party map of the
series) has the 3000 block, the int64 energies at 3204.. and float32 energies at 45100.., but no power
demand block; that is the PM3200 family (3766/3770). So reading 3766 answers exception 2, as on the real
meter, and a gateway computes demand from the energy registers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pymodbus.simulator import SimDevice

from edge_sim.devices.meters.base import MeterReading, RegisterWrite
from edge_sim.devices.meters.registers import HOLDING, IDLE, RegisterBlock, counts, float32, int64, sim_device

BLOCK_START = 2999  # register 3000
BLOCK_END = 3210  # last register of the export energy at 3208 (4 registers)


class Reg:
    """Wire addresses (datasheet number - 1)."""

    CURRENT_L1 = 2999
    CURRENT_L2 = 3001
    CURRENT_L3 = 3003
    CURRENT_AVG = 3009
    VOLTAGE_L1_L2 = 3019
    VOLTAGE_L2_L3 = 3021
    VOLTAGE_L3_L1 = 3023
    VOLTAGE_LL_AVG = 3025
    VOLTAGE_L1_N = 3027
    VOLTAGE_L2_N = 3029
    VOLTAGE_L3_N = 3031
    POWER_L1 = 3053
    POWER_L2 = 3055
    POWER_L3 = 3057
    TOTAL_POWER = 3059
    POWER_FACTOR = 3083
    FREQUENCY = 3109
    IMPORT_ENERGY = 3203
    EXPORT_ENERGY = 3207


@dataclass(frozen=True, slots=True)
class Iem3255:
    unit_id: int = 1

    def sim_device(self) -> SimDevice:
        return sim_device(self.unit_id, self.register_writes(IDLE))

    def register_writes(self, reading: MeterReading) -> list[RegisterWrite]:
        block = RegisterBlock.zeros(HOLDING, BLOCK_START, BLOCK_END - BLOCK_START + 1)
        current = abs(reading.current_a)
        line_voltage = reading.voltage_v * math.sqrt(3)
        phase_kw = reading.power_w / 3 / 1000
        for address in (Reg.CURRENT_L1, Reg.CURRENT_L2, Reg.CURRENT_L3, Reg.CURRENT_AVG):
            block.put(address, float32(current))
        for address in (Reg.VOLTAGE_L1_L2, Reg.VOLTAGE_L2_L3, Reg.VOLTAGE_L3_L1, Reg.VOLTAGE_LL_AVG):
            block.put(address, float32(line_voltage))
        for address in (Reg.VOLTAGE_L1_N, Reg.VOLTAGE_L2_N, Reg.VOLTAGE_L3_N):
            block.put(address, float32(reading.voltage_v))
        for address in (Reg.POWER_L1, Reg.POWER_L2, Reg.POWER_L3):
            block.put(address, float32(phase_kw))
        block.put(Reg.TOTAL_POWER, float32(reading.power_w / 1000))
        block.put(Reg.POWER_FACTOR, float32(reading.power_factor))
        block.put(Reg.FREQUENCY, float32(reading.frequency_hz))
        block.put(Reg.IMPORT_ENERGY, int64(counts(reading.import_kwh, 0.001)))
        block.put(Reg.EXPORT_ENERGY, int64(counts(reading.export_kwh, 0.001)))
        return [block.write()]
