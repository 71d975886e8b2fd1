"""Eastron SDM630 (Modbus RTU, default 9600 8N1, unit 1).

Source: Eastron SDM630 Modbus protocol v2.0, as summarised in shared/DOMAIN.md.
Function 04 input registers, every parameter float32 (IEEE 754), high word first, high byte first.
The datasheet numbers input registers 30001.. and holding registers 40001..; this code uses wire
addresses: wire = number - 30001 (input) or number - 40001 (holding).

| datasheet | wire   | quantity                                   | unit |
|-----------|--------|--------------------------------------------|------|
| 30001/3/5 | 0x0000 | phase 1/2/3 to neutral voltage             | V    |
| 30007/9/11| 0x0006 | phase 1/2/3 current                        | A    |
| 30013/5/7 | 0x000C | phase 1/2/3 active power                   | W    |
| 30053     | 0x0034 | total system power                         | W    |
| 30063     | 0x003E | total power factor                         | -    |
| 30071     | 0x0046 | frequency                                  | Hz   |
| 30073     | 0x0048 | import active energy                       | kWh  |
| 30075     | 0x004A | export active energy                       | kWh  |
| 30085     | 0x0054 | total system power demand                  | W    |
| 30087     | 0x0056 | maximum total system power demand          | W    |
| 30343     | 0x0156 | total active energy (import + export)      | kWh  |
| 40003     | 0x0002 | demand period (holding), minutes, float32  | min  |

The whole parameter area 0x0000-0x0157 answers, as on the real meter, so block reads work (the meter
takes at most 40 parameters, 80 registers, per request); parameters not simulated read 0.0. Holding
0x0000-0x000F answers; only the demand period (15, Korean billing) is meaningful.
Doubts: the datasheet sign of the power factor (capacitive/inductive) is not modelled: it reads the
reading's power factor as given.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymodbus.simulator import SimDevice

from edge_sim.devices.meters.base import MeterReading, RegisterWrite
from edge_sim.devices.meters.registers import HOLDING, IDLE, INPUT, RegisterBlock, float32, sim_device

PARAMETER_AREA = 0x0158  # 30001 .. 30344
HOLDING_AREA = 0x0010  # 40001 .. 40016
DEMAND_PERIOD = 0x0002  # 40003


class Reg:
    """Wire addresses of the input registers the simulator fills in."""

    VOLTAGE_L1 = 0x0000
    VOLTAGE_L2 = 0x0002
    VOLTAGE_L3 = 0x0004
    CURRENT_L1 = 0x0006
    CURRENT_L2 = 0x0008
    CURRENT_L3 = 0x000A
    POWER_L1 = 0x000C
    POWER_L2 = 0x000E
    POWER_L3 = 0x0010
    TOTAL_POWER = 0x0034
    POWER_FACTOR = 0x003E
    FREQUENCY = 0x0046
    IMPORT_ENERGY = 0x0048
    EXPORT_ENERGY = 0x004A
    DEMAND = 0x0054
    MAX_DEMAND = 0x0056
    TOTAL_ENERGY = 0x0156


@dataclass(frozen=True, slots=True)
class Sdm630:
    unit_id: int = 1
    demand_period_min: float = 15.0

    def sim_device(self) -> SimDevice:
        holding = RegisterBlock.zeros(HOLDING, 0, HOLDING_AREA)
        holding.put(DEMAND_PERIOD, float32(self.demand_period_min))
        return sim_device(self.unit_id, [*self.register_writes(IDLE), holding.write()])

    def register_writes(self, reading: MeterReading) -> list[RegisterWrite]:
        """The whole parameter area as one block, so an update is one atomic write."""
        block = RegisterBlock.zeros(INPUT, 0, PARAMETER_AREA)
        current = abs(reading.current_a)
        for voltage, amps, power in (
            (Reg.VOLTAGE_L1, Reg.CURRENT_L1, Reg.POWER_L1),
            (Reg.VOLTAGE_L2, Reg.CURRENT_L2, Reg.POWER_L2),
            (Reg.VOLTAGE_L3, Reg.CURRENT_L3, Reg.POWER_L3),
        ):
            block.put(voltage, float32(reading.voltage_v))
            block.put(amps, float32(current))
            block.put(power, float32(reading.power_w / 3))
        block.put(Reg.TOTAL_POWER, float32(reading.power_w))
        block.put(Reg.POWER_FACTOR, float32(reading.power_factor))
        block.put(Reg.FREQUENCY, float32(reading.frequency_hz))
        block.put(Reg.IMPORT_ENERGY, float32(reading.import_kwh))
        block.put(Reg.EXPORT_ENERGY, float32(reading.export_kwh))
        block.put(Reg.DEMAND, float32(reading.demand_w))
        block.put(Reg.MAX_DEMAND, float32(reading.max_demand_w))
        block.put(Reg.TOTAL_ENERGY, float32(reading.import_kwh + reading.export_kwh))
        return [block.write()]
