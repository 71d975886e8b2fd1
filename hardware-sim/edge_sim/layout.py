"""Where the simulated devices live: ports counted from a base port on loopback."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 15020
METER_UNIT_ID = 1  # main meter (Modbus TCP) on base port
ROOM_CONTROLLER_INSTANCE = 1001  # room controller (BACnet/IP, UDP) on base port + 1
