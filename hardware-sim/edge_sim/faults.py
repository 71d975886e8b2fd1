"""Faults the simulator can inject at run time, each seen by a client as it would be in a building.

| fault       | Modbus device                                   | BACnet device                 |
|-------------|-------------------------------------------------|-------------------------------|
| offline     | no answer at all                                | no answer at all              |
| slow        | answers after `delay_s`                         | -                             |
| exception   | exception response with `code` (e.g. 4, 6)      | -                             |
| corrupt     | a malformed answer: fewer registers than asked  | -                             |
| swap-words  | 32/64-bit values with their 16-bit words swapped| -                             |
| stuck       | values stop changing                            | values stop changing          |

`clock-jump` moves the building's clock forward (an NTP step, a Pi without a real-time clock booting).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    OFFLINE = "offline"
    SLOW = "slow"
    EXCEPTION = "exception"
    CORRUPT = "corrupt"
    SWAP_WORDS = "swap-words"
    STUCK = "stuck"


MODBUS_ONLY = {FaultKind.SLOW, FaultKind.EXCEPTION, FaultKind.CORRUPT, FaultKind.SWAP_WORDS}


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    delay_s: float = 0.0
    code: int = 4  # Modbus exception code: 4 = device failure

    def __post_init__(self) -> None:
        if self.kind is FaultKind.SLOW and not 0 < self.delay_s <= 600:
            raise ValueError("a slow fault needs a delay between 0 and 600 s")
        if self.kind is FaultKind.EXCEPTION and not 1 <= self.code <= 255:
            raise ValueError("a Modbus exception code is 1-255")


def swap_words(registers: list[int]) -> list[int]:
    """Swap each pair of registers: what a device with the other word order sends."""
    swapped = list(registers)
    for i in range(0, len(swapped) - 1, 2):
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    return swapped
