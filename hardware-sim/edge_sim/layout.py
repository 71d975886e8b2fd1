"""Where the simulated devices live: every port counted from one base port, on 127.0.0.1.

base + 0    Modbus TCP   library main meter (Schneider iEM3255, unit 1)
base + 1    Modbus TCP   information centre main meter (Eastron SDM630, unit 1)
base + 2    Modbus TCP   library sub-meter gateway: unit 1 HVAC (ABB B23), 2 lighting, 3 plugs (SDM630)
RS-485      Modbus RTU   information centre sub-meters on a virtual serial pair (socat):
                         unit 1 HVAC (SDM630), 2 lighting (ABB B23), 3 plugs (iEM3255)
base + 10.. BACnet/IP    one UDP port per controller, in the order of `bacnet_devices`
"""

from __future__ import annotations

import tempfile
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_START = "2026-08-05T14:00+09:00"  # a summer weekday afternoon in Seoul: the cooling peak
DEFAULT_BASE_PORT = 15020
BACNET_OFFSET = 10
PORTS_USED = 40  # base .. base + 39 are reserved for the site
CONTROL_OFFSET = PORTS_USED - 1


def bacnet_instance(building_index: int, kind: str, number: int = 1) -> int:
    """Device instance: building 1 -> 1xxx, 2 -> 2xxx; plant x100, AHU x200, rooms x301.., lighting x400."""
    offsets = {"plant": 100, "ahu": 200, "room": 300, "lighting": 400}
    return building_index * 1000 + offsets[kind] + (number if kind == "room" else 0)


def rs485_link(base_port: int) -> str:
    """Where a client opens the simulated RS-485 bus: a pty symlink at a path a configuration can name."""
    return str(Path(tempfile.gettempdir()) / f"edge-sim-{base_port}-rs485")
