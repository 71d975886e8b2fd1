"""The uplink's format: compact unless a file asks otherwise; a file that asks for the deprecated json form
still gets it, and is warned once by `config check` and once in the agent's start log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app
from edge_agent.config import load_config
from tests.support import LOOPBACK, free_port, started_and_stopped

runner = CliRunner()

SITE = """\
[gateway]
id = "library-01"

[mqtt]
url = "mqtt://192.0.2.1:1883"
{format}
[[devices]]
name = "main-meter"
protocol = "modbus-tcp"
host = "192.0.2.10"
profile = "eastron-sdm630"
poll_interval_s = 1
"""


def site(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(format=f"{line}\n" if line else ""))
    return path


@pytest.mark.parametrize("line", ["", 'format = "compact"'])
def test_a_file_that_names_no_format_or_compact_gets_compact_without_a_warning(
    tmp_path: Path, line: str
) -> None:
    path = site(tmp_path, line)
    assert load_config(path).mqtt.format == "compact"
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_json_still_works_and_config_check_says_once_it_is_deprecated(tmp_path: Path) -> None:
    path = site(tmp_path, 'format = "json"')
    assert load_config(path).mqtt.format == "json"
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("  warning:")]
    assert warnings == [
        '  warning: mqtt.format: "json" is deprecated: this release is the last to offer it. The default, '
        '"compact", carries the same readings in about an eighth of the bytes (docs/mqtt.md, The compact '
        "format): remove the line once central reads it (line 6)"
    ]
    report = json.loads(runner.invoke(app, ["config", "check", str(path), "--json"]).stdout)
    assert [(w["where"], w["line"]) for w in report["warnings"]] == [("mqtt.format", 6)]


@pytest.mark.integration
def test_the_agent_started_on_json_says_so_once_in_its_log(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[buffer]\npath = "{tmp_path / "b.db"}"\n[gateway]\nsocket = "{tmp_path / "agent.sock"}"\n'
        f'[mqtt]\nurl = "mqtt://{LOOPBACK}:{free_port()}"\nformat = "json"\n[log]\nformat = "json"\n'
    )
    events = [json.loads(line) for line in started_and_stopped(config).splitlines() if line.startswith("{")]
    said = [e for e in events if "mqtt.format" in e.get("warning", "")]
    assert len(said) == 1, events
    assert (said[0]["event"], said[0]["level"]) == ("configuration", "warning")
    assert "deprecated" in said[0]["warning"]
