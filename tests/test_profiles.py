"""Device profiles (drivers/): validated by the device models, merged with a device's overrides, and true
to the simulated meters they describe."""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.config import AgentConfig, ModbusTcpDevice, parse_config, profiles
from edge_agent.errors import ConfigError
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.protocols.modbus.planner import PlanLimits, plan_reads
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.simulator import Simulator

METER_PROFILES = {  # profile -> (simulator host, unit id) of a meter of that model
    "eastron-sdm630": ("main-info-centre", 1),
    "schneider-iem3255": ("main-library", 1),
    "abb-b23": ("gateway", 1),
}


def device_for(profile: str, **extra: Any) -> dict[str, Any]:
    protocol = "bacnet-ip" if profiles.load(profile).profile.protocol == "bacnet" else "modbus-tcp"
    address = {"host": "10.0.0.9", "instance": 7} if protocol == "bacnet-ip" else {"host": "10.0.0.9"}
    return {"name": "d", "protocol": protocol, "profile": profile, **address, **extra}


@pytest.mark.parametrize("name", sorted(profiles.available()))
def test_every_shipped_profile_validates_as_a_device(name: str) -> None:
    config = AgentConfig.model_validate({"devices": [device_for(name)]})
    assert len(config.devices[0].points) == len(profiles.load(name).points)


def test_overrides_subsets_and_additions() -> None:
    config = AgentConfig.model_validate(
        {
            "devices": [
                device_for(
                    "eastron-sdm630",
                    only_points=["total_power", "import_energy"],
                    points=[
                        {"name": "total_power", "scale": 0.001, "unit": "kW"},
                        {"name": "demand_period", "table": "holding", "address": 2, "unit": "min"},
                    ],
                    max_registers=40,
                )
            ]
        }
    )
    device = config.devices[0]
    assert isinstance(device, ModbusTcpDevice)
    by_name = {p.name: p for p in device.points}
    assert sorted(by_name) == ["demand_period", "import_energy", "total_power"]
    assert (by_name["total_power"].scale, by_name["total_power"].unit, by_name["total_power"].address) == (
        0.001,
        "kW",
        0x34,
    )
    assert device.max_registers == 40  # the device's word over the profile's 80
    assert device.max_gap == 40  # the profile's


def test_unknown_profile_names_the_field_and_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            '[[devices]]\nname = "m"\nprotocol = "modbus-tcp"\nhost = "h"\nprofile = "sdm-630"\n', "t"
        )
    assert caught.value.problems[0].startswith("device 'm', profile: no profile named 'sdm-630'")
    assert caught.value.problems[0].endswith("did you mean 'eastron-sdm630'? (line 5)")


def test_a_bacnet_profile_on_a_modbus_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="is a bacnet profile, not modbus-tcp"):
        parse_config(
            '[[devices]]\nname = "m"\nprotocol = "modbus-tcp"\nhost = "h"\nprofile = "edge-sim-vav"\n', "t"
        )


@pytest.mark.parametrize("name", sorted(METER_PROFILES))
def test_a_meter_profile_needs_a_tenth_of_a_request_per_point(name: str) -> None:
    device = AgentConfig.model_validate({"devices": [device_for(name)]}).devices[0]
    assert isinstance(device, ModbusTcpDevice)
    blocks = plan_reads(
        device.points, PlanLimits(device.max_registers, device.max_gap, tuple(device.forbidden))
    )
    assert len(blocks) * 10 <= len(device.points), [b.describe() for b in blocks]


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(METER_PROFILES))
async def test_a_meter_profile_reads_its_simulated_meter(sim: Simulator, name: str) -> None:
    host, unit_id = METER_PROFILES[name]
    server = sim.hosts[host]
    assert isinstance(server, ModbusTcpMeterServer)
    entry = device_for(name, host="127.0.0.1", port=server.port, unit_id=unit_id)
    device = AgentConfig.model_validate({"devices": [entry]}).devices[0]
    assert isinstance(device, ModbusTcpDevice)
    async with ModbusClient(device) as client:
        results = await client.read([p.name for p in device.points])
    bad = [(r.point, str(r.error)) for r in results if r.error is not None]
    assert bad == []
    values = {r.point: r for r in results}
    assert values["total_power"].value
    assert values["frequency"].value == pytest.approx(60.0)
    if name == "abb-b23":  # quantities the B23 does not measure say so
        assert values["total_reactive_power"].unavailable
