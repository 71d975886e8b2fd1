"""edge-sim: a simulated building behind real Modbus and BACnet servers, for tests, benchmarks and demos."""
