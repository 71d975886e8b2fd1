"""`config check` finds every mistake of a file in one run, by device or poller name and file line, with a
"did you mean" for misspelled keys and names; `--json` prints the same. Every example of
docs/configuration.md checks clean after `config default`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from edge_agent.cli.app import app
from edge_agent.config import builtin_config_text, parse_config
from edge_agent.errors import ConfigError

runner = CliRunner()

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

FIVE_MISTAKES = """\
[gateway]
id = "library-01"

[[devices]]
name = "main-meter"
protocol = "modbus-tpc"
host = "192.0.2.10"
profile = "eastron-sdm630"

[[devices]]
name = "hvac-meter"
protocol = "modbus-tcp"
host = "192.0.2.10"
unit_idd = 2
profile = "eastron-sdm630"

[[devices]]
name = "lighting-meter"
protocol = "modbus-tcp"
host = "192.0.2.10"
unit_id = 3
port = 70000
profile = "eastron-sdm603"

[[pollers]]
device = "main-meterr"
interval_s = 1
"""


def test_five_mistakes_are_reported_in_one_run_by_name_line_and_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(FIVE_MISTAKES)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{path}: configuration is not valid (5 problems)",
        "  device 'main-meter', protocol: 'modbus-tpc' is not one of modbus-tcp, modbus-rtu-tcp, modbus-rtu, "
        "bacnet-ip; did you mean 'modbus-tcp'? (line 6)",
        "  device 'hvac-meter', unit_idd: unknown key; did you mean 'unit_id'? (line 14)",
        "  device 'lighting-meter', port: Input should be less than or equal to 65535 (line 22)",
        "  device 'lighting-meter', profile: no profile named 'eastron-sdm603' (available: abb-b23, "
        "eastron-sdm630, edge-sim-ahu, edge-sim-plant, edge-sim-vav, schneider-iem3255); did you mean "
        "'eastron-sdm630'? (line 23)",
        "  poller for 'main-meterr', device: no device named 'main-meterr'; did you mean 'main-meter'? "
        "(line 26)",
    ]
    assert "discriminator" not in result.output


def test_json_prints_the_same_problems_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(FIVE_MISTAKES)
    result = runner.invoke(app, ["config", "check", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert (report["file"], report["ok"]) == (str(path), False)
    found = {(p["device"], p["line"], p["suggestion"]) for p in report["problems"]}
    assert found == {
        ("main-meter", 6, "modbus-tcp"),
        ("hvac-meter", 14, "unit_id"),
        ("lighting-meter", 22, None),
        ("lighting-meter", 23, "eastron-sdm630"),
        (None, 26, "main-meter"),
    }
    assert all(p["where"] and p["message"] for p in report["problems"])


def test_a_file_that_is_not_toml_is_reported_as_json_too(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[gateway]\nid = "x"\n[[devices]\n')
    result = runner.invoke(app, ["config", "check", str(path), "--json"])
    assert result.exit_code == 2
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["message"].startswith("not valid TOML")
    assert problem["line"] == 3


def test_a_mistake_in_one_section_does_not_hide_the_others(tmp_path: Path) -> None:
    text = (
        builtin_config_text()
        .replace('level = "info"', 'level = "loud"')
        .replace('format = "console"', 'format = "console"\ncolour = true')
    )
    text += '\n[control]\nmode = "shadw"\ndemand = "library-main-meter/total_powr"\n'
    problems = _problems(text)
    assert any(p.startswith("log.level: Input should be") and "(line 23)" in p for p in problems), problems
    assert any(p.startswith("log.colour: unknown key") for p in problems), problems
    assert any(p.startswith("control.mode:") and "did you mean 'shadow'?" in p for p in problems), problems
    demand = next(p for p in problems if p.startswith("control.demand:"))
    assert "did you mean 'library-main-meter/total_power'?" in demand


def test_misspelled_point_names_get_suggestions(tmp_path: Path) -> None:
    text = builtin_config_text() + '\n[[pollers]]\ndevice = "library-main-meter"\npoints = ["total_powr"]\n'
    [problem] = _problems(text)
    assert problem.startswith(
        "poller for 'library-main-meter', points[0]: device 'library-main-meter' has no"
    )
    assert "did you mean 'total_power'?" in problem


def test_a_point_of_a_profile_is_named_and_found_at_its_override() -> None:
    text = """
[[devices]]
name = "main-meter"
protocol = "modbus-tcp"
host = "192.0.2.10"
profile = "eastron-sdm630"
points = [
  { name = "total_power", unit = "W" },
  { name = "demand", plausible = [10, 1] },
]
"""
    [problem] = _problems(text)
    assert problem == "device 'main-meter', point 'demand', plausible: low 10.0 is above high 1.0 (line 9)"


def _problems(text: str) -> list[str]:
    try:
        parse_config(text, "site.toml")
    except ConfigError as error:
        return error.problems
    return []


def toml_examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)


def test_every_example_in_the_configuration_reference_checks_after_config_default(tmp_path: Path) -> None:
    examples = toml_examples()
    assert len(examples) >= 6
    default = runner.invoke(app, ["config", "default"]).output
    for i, example in enumerate(examples):
        path = tmp_path / f"example-{i}.toml"
        path.write_text(default + "\n" + example)
        result = runner.invoke(app, ["config", "check", str(path)])
        assert result.exit_code == 0, f"example {i}:\n{example}\n{result.output}"
        assert "warning" not in result.output, f"example {i}:\n{example}\n{result.output}"
