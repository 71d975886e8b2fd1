"""The configuration: one pydantic model read from TOML (agent.py), its device and control sections,
device profiles from drivers/ and device groups, the register codec the device entries are checked with, and
the reading of a file (load.py) that reports every mistake by device and line (diagnose.py)."""

from edge_agent.config.agent import (
    BUILTIN_CONFIG,
    AgentConfig,
    BacnetConfig,
    BufferConfig,
    CommandsConfig,
    GatewayConfig,
    LogConfig,
    MqttConfig,
    PollerConfig,
    builtin_config_text,
)
from edge_agent.config.control import ControlConfig, ZoneControl
from edge_agent.config.devices import (
    BacnetDevice,
    BacnetPoint,
    Device,
    ModbusDevice,
    ModbusPoint,
    ModbusRtuDevice,
    ModbusRtuTcpDevice,
    ModbusTcpDevice,
    RegisterRange,
)
from edge_agent.config.load import check_file, check_text, load_config, parse_config
from edge_agent.errors import ConfigError

__all__ = [
    "BUILTIN_CONFIG",
    "AgentConfig",
    "BacnetConfig",
    "BacnetDevice",
    "BacnetPoint",
    "BufferConfig",
    "CommandsConfig",
    "ConfigError",
    "ControlConfig",
    "Device",
    "GatewayConfig",
    "LogConfig",
    "ModbusDevice",
    "ModbusPoint",
    "ModbusRtuDevice",
    "ModbusRtuTcpDevice",
    "ModbusTcpDevice",
    "MqttConfig",
    "PollerConfig",
    "RegisterRange",
    "ZoneControl",
    "builtin_config_text",
    "check_file",
    "check_text",
    "load_config",
    "parse_config",
]
