"""ABB B23 (EQ meters B23/B24, Modbus RTU).

Sources: shared/DOMAIN.md (ABB B23/B24 manual 2CMC485003M0201); the registers DOMAIN.md does not list
(net energies, reactive energies, line voltages, neutral current, per-phase and reactive/apparent
powers, phase angles, per-phase power factors) follow the common ABB EQ meter mapping from memory and
are a doubt. Function 03 holding registers; the manual prints hex wire addresses, used here unchanged.
Integers are big-endian, high word first, scaled by the resolution below.

| wire          | quantity                            | type, resolution     | simulated |
|---------------|-------------------------------------|----------------------|-----------|
| 0x5000        | active energy import                | uint64, 0.01 kWh     | yes       |
| 0x5004        | active energy export                | uint64, 0.01 kWh     | yes       |
| 0x5008        | active energy net                   | int64, 0.01 kWh      | yes       |
| 0x500C/0x5010 | reactive energy import/export       | uint64, 0.01 kvarh   | n/a       |
| 0x5014        | reactive energy net                 | int64, 0.01 kvarh    | n/a       |
| 0x5B00/02/04  | voltage L1-N/L2-N/L3-N              | uint32, 0.1 V        | yes       |
| 0x5B06/08/0A  | voltage L1-L2/L3-L2/L1-L3           | uint32, 0.1 V        | yes       |
| 0x5B0C/0E/10  | current L1/L2/L3                    | uint32, 0.01 A       | yes       |
| 0x5B12        | current N                           | uint32, 0.01 A       | n/a       |
| 0x5B14        | total active power                  | int32, 0.01 W        | yes       |
| 0x5B16/18/1A  | active power L1/L2/L3               | int32, 0.01 W        | yes       |
| 0x5B1C..0x5B22| reactive power total, L1..L3        | int32, 0.01 var      | n/a       |
| 0x5B24..0x5B2A| apparent power total, L1..L3        | int32, 0.01 VA       | n/a       |
| 0x5B2C        | frequency                           | uint16, 0.01 Hz      | yes       |
| 0x5B2D..0x5B39| phase angles                        | int16, 0.1 degree    | n/a       |
| 0x5B3A        | total power factor                  | int16, 0.001         | yes       |
| 0x5B3B/3C/3D  | power factor L1/L2/L3               | int16, 0.001         | yes       |

"n/a" registers read "not available": all 0xFFFF for unsigned types, 0x7FFF FFFF... for signed ones.
Blocks 0x5000-0x5017 and 0x5B00-0x5B3D answer, so block reads work (the real meter answers
0x1000-0x8EFF).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pymodbus.simulator import SimDevice

from edge_sim.devices.meters.base import MeterReading, RegisterWrite
from edge_sim.devices.meters.registers import (
    HOLDING,
    IDLE,
    RegisterBlock,
    counts,
    int16,
    int32,
    int64,
    signed_not_available,
    sim_device,
    uint16,
    uint32,
    uint64,
    unsigned_not_available,
)

ENERGY_START, ENERGY_COUNT = 0x5000, 0x18
INSTANT_START, INSTANT_COUNT = 0x5B00, 0x3E


class Reg:
    """Wire addresses, as printed in the manual."""

    IMPORT_ENERGY = 0x5000
    EXPORT_ENERGY = 0x5004
    NET_ENERGY = 0x5008
    REACTIVE_IMPORT_ENERGY = 0x500C
    REACTIVE_EXPORT_ENERGY = 0x5010
    REACTIVE_NET_ENERGY = 0x5014
    VOLTAGE_L1_N = 0x5B00
    VOLTAGE_L1_L2 = 0x5B06
    CURRENT_L1 = 0x5B0C
    CURRENT_N = 0x5B12
    TOTAL_POWER = 0x5B14
    POWER_L1 = 0x5B16
    REACTIVE_POWER = 0x5B1C
    APPARENT_POWER = 0x5B24
    FREQUENCY = 0x5B2C
    PHASE_ANGLES = 0x5B2D
    POWER_FACTOR = 0x5B3A
    POWER_FACTOR_L1 = 0x5B3B


@dataclass(frozen=True, slots=True)
class AbbB23:
    unit_id: int = 1

    def sim_device(self) -> SimDevice:
        return sim_device(self.unit_id, self.register_writes(IDLE))

    def register_writes(self, reading: MeterReading) -> list[RegisterWrite]:
        return [_energies(reading).write(), _instantaneous(reading).write()]


def _energies(reading: MeterReading) -> RegisterBlock:
    block = RegisterBlock.zeros(HOLDING, ENERGY_START, ENERGY_COUNT)
    block.put(Reg.IMPORT_ENERGY, uint64(counts(reading.import_kwh, 0.01)))
    block.put(Reg.EXPORT_ENERGY, uint64(counts(reading.export_kwh, 0.01)))
    block.put(Reg.NET_ENERGY, int64(counts(reading.import_kwh - reading.export_kwh, 0.01)))
    block.put(Reg.REACTIVE_IMPORT_ENERGY, unsigned_not_available(4))
    block.put(Reg.REACTIVE_EXPORT_ENERGY, unsigned_not_available(4))
    block.put(Reg.REACTIVE_NET_ENERGY, signed_not_available(4))
    return block


def _instantaneous(reading: MeterReading) -> RegisterBlock:
    block = RegisterBlock.zeros(HOLDING, INSTANT_START, INSTANT_COUNT)
    phase_voltage = uint32(counts(reading.voltage_v, 0.1))
    line_voltage = uint32(counts(reading.voltage_v * math.sqrt(3), 0.1))
    current = uint32(counts(abs(reading.current_a), 0.01))
    phase_power = int32(counts(reading.power_w / 3, 0.01))
    power_factor = int16(counts(reading.power_factor, 0.001))
    for phase in range(3):
        block.put(Reg.VOLTAGE_L1_N + 2 * phase, phase_voltage)
        block.put(Reg.VOLTAGE_L1_L2 + 2 * phase, line_voltage)
        block.put(Reg.CURRENT_L1 + 2 * phase, current)
        block.put(Reg.POWER_L1 + 2 * phase, phase_power)
        block.put(Reg.POWER_FACTOR_L1 + phase, power_factor)
    block.put(Reg.CURRENT_N, unsigned_not_available(2))
    block.put(Reg.TOTAL_POWER, int32(counts(reading.power_w, 0.01)))
    for address in range(Reg.REACTIVE_POWER, Reg.FREQUENCY, 2):  # reactive and apparent, total and phases
        block.put(address, signed_not_available(2))
    block.put(Reg.FREQUENCY, uint16(counts(reading.frequency_hz, 0.01)))
    for address in range(Reg.PHASE_ANGLES, Reg.POWER_FACTOR):
        block.put(address, signed_not_available(1))
    block.put(Reg.POWER_FACTOR, power_factor)
    return block
