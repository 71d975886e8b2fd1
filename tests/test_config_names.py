"""Names of any script that are safe in an MQTT topic: a Hangul gateway, device and point go from the
configuration through polling, the SQLite buffer and the broker to central; '/', '+', '#', spaces and
control characters are refused, naming the field."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from edge_agent.config import (
    AgentConfig,
    BufferConfig,
    ModbusPoint,
    ModbusTcpDevice,
    MqttConfig,
    parse_config,
)
from edge_agent.config.base import NAME_PATTERN
from edge_agent.errors import ConfigError
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, Broker, async_wait_until, birth_devices, central_subscriber, running_agent
from tests.test_modbus import sdm630_port

DEVICE = '[[devices]]\nname = "{name}"\nprotocol = "modbus-tcp"\nhost = "192.0.2.10"\n'
DEVICE += 'points = [{{ name = "{point}", table = "input", address = 0x34 }}]\npoll_interval_s = 1\n'


@pytest.mark.parametrize(
    ("name", "point"),
    [("본관-전력계", "유효전력"), ("1층_열람실.온도", "온도"), ("Zähler-Süd", "Leistung"), ("मीटर", "शक्ति")],
)
def test_names_of_any_script_are_accepted(name: str, point: str) -> None:
    config = parse_config(DEVICE.format(name=name, point=point), "site.toml")
    assert (config.devices[0].name, config.devices[0].points[0].name) == (name, point)


def test_a_name_is_kept_in_one_spelling() -> None:
    decomposed = unicodedata.normalize("NFD", "본관")
    assert decomposed != "본관"
    config = parse_config(DEVICE.format(name=decomposed, point="p"), "site.toml")
    assert config.devices[0].name == "본관"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("본관/전력계", "'/'"),
        ("meter+1", "'+'"),
        ("meter#", "'#'"),
        ("1층 열람실", "U+0020"),
        ("meter\\t1", "U+0009"),
        ("meter\\u0085", "U+0085"),
        ("meter\\u2028", "U+2028"),
        ("$SYS", "'$'"),
    ],
)
def test_names_that_would_break_a_topic_are_refused_naming_the_character(name: str, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(DEVICE.format(name=name, point="p"), "site.toml")
    [problem] = caught.value.problems
    assert problem.startswith("device ")
    assert f"holds {shown}: a name has letters, digits, '_', '.' and '-' only" in problem
    assert problem.endswith("(line 2)")


def test_a_name_has_at_most_64_characters() -> None:
    with pytest.raises(ConfigError, match="a name has 1 to 64 characters, not 65"):
        parse_config(DEVICE.format(name="가" * 65, point="p"), "site.toml")


def test_the_json_schema_pattern_refuses_what_topics_cannot_carry() -> None:
    assert re.fullmatch(NAME_PATTERN, "본관-전력계")
    for bad in ("a/b", "a+b", "a#b", "a b", "a\x00b", ""):
        assert not re.fullmatch(NAME_PATTERN, bad)


@pytest.mark.integration
async def test_hangul_names_reach_central_through_the_buffer_and_broker(
    sim: Simulator, broker: Broker, tmp_path: Path
) -> None:
    gateway = "도서관-01"
    config = AgentConfig.model_validate(
        {
            "gateway": {"id": gateway},
            "buffer": BufferConfig(path=tmp_path / "buffer.db"),
            "mqtt": MqttConfig(url=broker.url),
            "devices": [
                ModbusTcpDevice(
                    name="본관-전력계",
                    protocol="modbus-tcp",
                    host=LOOPBACK,
                    port=sdm630_port(sim),
                    points=[ModbusPoint(name="유효전력", table="input", address=0x34, unit="W")],
                )
            ],  # no poller names it: the default one polls it
        }
    )
    async with central_subscriber(broker.port, gateway) as central, running_agent(config):
        await async_wait_until(lambda: bool(central.arrivals and central.status), 20, "readings and a birth")
    readings = central.arrivals[0].batch.readings
    assert {(r.device, r.point) for r in readings} == {("본관-전력계", "유효전력")}
    assert central.arrivals[0].batch.gateway == gateway
    birth = next(s for s in central.status if s.get("devices"))
    listed = [(d.name, [p.name for p in d.points]) for d in birth_devices(birth)]
    assert listed == [("본관-전력계", ["유효전력"])]
