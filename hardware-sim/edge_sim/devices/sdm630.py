"""An Eastron SDM630 energy meter: function 04 input registers, float32, high word first.

Register map from the Eastron SDM630 Modbus protocol v2.0 (shared/DOMAIN.md). The whole parameter area
0x0000-0x0157 answers (unused parameters read 0.0), as on the real meter, so block reads work.
Korea's grid runs at 60 Hz; the simulated supply is 220 V phase-to-neutral, power factor 0.95.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pymodbus.simulator import DataType, SimData, SimDevice

from edge_sim.physics.building import MeterState

INPUT_REGISTERS = 0x0158  # 30001 .. 30344
HOLDING_REGISTERS = 0x0010  # 40001 .. 40016
PHASE_VOLTAGE_V = 220.0
POWER_FACTOR = 0.95
FREQUENCY_HZ = 60.0


class Reg:
    """Wire addresses (register number - 30001) of the parameters the simulator fills in."""

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
    TOTAL_POWER_FACTOR = 0x003E
    FREQUENCY = 0x0046
    IMPORT_ENERGY = 0x0048
    EXPORT_ENERGY = 0x004A
    TOTAL_ENERGY = 0x0156


DEMAND_PERIOD_HOLDING = 0x0002  # 40003, minutes, float32


def float32_registers(value: float) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


@dataclass(frozen=True, slots=True)
class Sdm630:
    unit_id: int

    def sim_device(self) -> SimDevice:
        """The pymodbus datastore: (coils, discrete inputs, holding, input) blocks."""
        holding = [0] * HOLDING_REGISTERS
        holding[DEMAND_PERIOD_HOLDING : DEMAND_PERIOD_HOLDING + 2] = float32_registers(15.0)
        return SimDevice(
            id=self.unit_id,
            simdata=(
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=holding, datatype=DataType.REGISTERS)],
                [SimData(0, count=INPUT_REGISTERS, values=0, datatype=DataType.REGISTERS)],
            ),
        )

    @staticmethod
    def input_values(meter: MeterState) -> dict[int, float]:
        """Parameter values for the meter's current state, by wire address."""
        phase_power = meter.power_w / 3
        phase_current = phase_power / (PHASE_VOLTAGE_V * POWER_FACTOR)
        return {
            Reg.VOLTAGE_L1: PHASE_VOLTAGE_V,
            Reg.VOLTAGE_L2: PHASE_VOLTAGE_V,
            Reg.VOLTAGE_L3: PHASE_VOLTAGE_V,
            Reg.CURRENT_L1: phase_current,
            Reg.CURRENT_L2: phase_current,
            Reg.CURRENT_L3: phase_current,
            Reg.POWER_L1: phase_power,
            Reg.POWER_L2: phase_power,
            Reg.POWER_L3: phase_power,
            Reg.TOTAL_POWER: meter.power_w,
            Reg.TOTAL_POWER_FACTOR: POWER_FACTOR,
            Reg.FREQUENCY: FREQUENCY_HZ,
            Reg.IMPORT_ENERGY: meter.import_energy_kwh,
            Reg.EXPORT_ENERGY: 0.0,
            Reg.TOTAL_ENERGY: meter.import_energy_kwh,
        }

    @staticmethod
    def input_registers(meter: MeterState) -> list[int]:
        """The whole input register area as one block, so an update is one atomic write."""
        registers = [0] * INPUT_REGISTERS
        for address, value in Sdm630.input_values(meter).items():
            registers[address : address + 2] = float32_registers(value)
        return registers
