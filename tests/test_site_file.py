"""Adding a scan's devices to a site file (cli/site_file.py) without a network: what is refused leaves the
file as it was, and what is written replaces it whole, keeping its mode and its symlink."""

from __future__ import annotations

import os
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.cli.site_file import add_to_site_file
from edge_agent.config import parse_config
from edge_agent.errors import Refused

SITE = """\
# the site
[gateway]
id = "library-01"

[[devices]]
name = "main"  # basement
protocol = "modbus-tcp"
host = "10.0.0.5"
unit_id = 1
profile = "schneider-iem3255"
"""

FOUND = """\
[[devices]]
name = "unit-2-eastron-sdm630"
profile = "eastron-sdm630"
protocol = "modbus-tcp"
host = "10.0.0.5"
port = 502
unit_id = 2

[[pollers]]
device = "unit-2-eastron-sdm630"
interval_s = 5
"""

NOW = datetime(2026, 12, 7, 19, 15, tzinfo=UTC)


def test_a_merge_keeps_the_mode_and_the_symlink_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    real = tmp_path / "etc" / "agent.toml"
    real.parent.mkdir()
    real.write_text(SITE)
    real.chmod(0o640)
    link = tmp_path / "site.toml"
    link.symlink_to(real)

    result = add_to_site_file(link, FOUND, NOW)
    assert result.added == ["unit-2-eastron-sdm630"]
    assert link.is_symlink()
    assert real.stat().st_mode & 0o777 == 0o640
    assert result.backup == real.with_name("agent.toml.20261207T191500Z.bak")
    assert result.backup.read_text() == SITE
    assert sorted(p.name for p in real.parent.iterdir()) == ["agent.toml", "agent.toml.20261207T191500Z.bak"]
    config = parse_config(real.read_text(), "merged")
    assert [d.name for d in config.devices] == ["main", "unit-2-eastron-sdm630"]
    assert [p["device"] for p in tomllib.loads(real.read_text())["pollers"]] == ["unit-2-eastron-sdm630"]
    assert real.read_text().startswith(SITE)


def test_a_second_merge_in_the_same_second_keeps_both_backups(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(SITE)
    first = add_to_site_file(site, FOUND, NOW)
    second = add_to_site_file(site, FOUND.replace("unit-2", "unit-3").replace("= 2", "= 3"), NOW)
    assert first.backup is not None
    assert second.backup is not None
    assert first.backup != second.backup
    assert first.backup.read_text() == SITE
    assert "unit-2-eastron-sdm630" in second.backup.read_text()


@pytest.mark.parametrize(
    ("site", "message"),
    [
        ('[[devices]\nname = "x"\n', "not valid TOML"),
        (SITE + "unit_idd = 3\n", "does not pass `config check` (fix the file first"),
        (SITE.replace('id = "library-01"', 'id = "library-01"\ndevices = "oops"'), "does not pass"),
    ],
)
def test_a_site_file_that_does_not_check_is_refused_and_left_alone(
    tmp_path: Path, site: str, message: str
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(site)
    with pytest.raises(Refused, match=re.escape(message)):
        add_to_site_file(path, FOUND, NOW)
    assert path.read_text() == site
    assert os.listdir(tmp_path) == ["site.toml"]


def test_a_new_device_at_an_address_the_file_has_is_not_added(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    result = add_to_site_file(path, FOUND.replace("unit_id = 2", "unit_id = 1"), NOW)
    assert result.added == []
    assert [(p.found, p.existing) for p in result.present] == [("unit-2-eastron-sdm630", "main")]
    assert result.backup is None
    assert path.read_text() == SITE


def test_devices_split_by_other_tables_stay_where_they_are(tmp_path: Path) -> None:
    """tomlkit would regroup [[devices]] tables that a [log] table splits, moving the file's own lines: the
    new entries then go at the end of the file, below the text as it was."""
    split = SITE + '\n[log]\nlevel = "info"  # quiet\n\n[[devices]]\nname = "b"\nprotocol = "bacnet-ip"\n'
    split += 'host = "10.0.0.9"\ninstance = 9\npoints = [{ name = "t", object = "analog-input,1" }]\n'
    path = tmp_path / "site.toml"
    path.write_text(split)
    result = add_to_site_file(path, FOUND, NOW)
    assert result.added == ["unit-2-eastron-sdm630"]
    merged = path.read_text()
    assert merged.startswith(split)
    config = parse_config(merged, "merged")
    assert [d.name for d in config.devices] == ["main", "b", "unit-2-eastron-sdm630"]
    assert [p["device"] for p in tomllib.loads(merged)["pollers"]] == ["unit-2-eastron-sdm630"]


def test_a_new_pollers_list_is_set_apart_by_a_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE + '\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n')
    add_to_site_file(path, FOUND, NOW)
    assert 'url = "mqtt://127.0.0.1:1883"\n\n[[pollers]]' in path.read_text()
