"""Line numbers for config check: every key and array element of a TOML text, found however it is written."""

from __future__ import annotations

import tomllib

from edge_agent.config.lines import key_lines, line_of

TEXT = '''\
# [[devices]] in a comment is no table
[gateway]
site = """a site
[[devices]]
name = "not a device"
"""
id = 'gw' # [x] = 1

[[devices]]
name = "a"
"quoted key" = 1
mqtt.url = "x"
points = [
  { name = "p", address = 1, range = [1,
    2] },  # a comment ] }
  { name = "q", 'unit' = "W" },
]

[[devices]]
name = "b"

[devices.extra]
z = 'lit\' # "" no string
zones = [{ name = "z" }, { name = "y" }]
'''


def test_every_key_and_element_has_its_line() -> None:
    tomllib.loads(TEXT)  # valid TOML: what the scanner is given
    lines = key_lines(TEXT)
    assert lines[("gateway", "site")] == 3
    assert lines[("gateway", "id")] == 7
    assert ("devices", 0, "name") not in {k for k, v in lines.items() if v == 5}
    assert lines[("devices", 0)] == 9
    assert lines[("devices", 0, "name")] == 10
    assert lines[("devices", 0, "quoted key")] == 11
    assert lines[("devices", 0, "mqtt", "url")] == 12
    assert lines[("devices", 0, "points", 0, "address")] == 14
    assert lines[("devices", 0, "points", 0, "range", 1)] == 15
    assert lines[("devices", 0, "points", 1, "unit")] == 16
    assert lines[("devices", 1, "name")] == 20
    assert lines[("devices", 1, "extra", "z")] == 23
    assert lines[("devices", 1, "extra", "zones", 1, "name")] == 24


def test_a_path_without_a_line_takes_its_nearest_enclosing_key() -> None:
    lines = key_lines(TEXT)
    assert line_of(lines, ("devices", 0, "points", 1, "address")) == 16
    assert line_of(lines, ("devices", 7, "name")) == 9  # the [[devices]] array's first line
    assert line_of(lines, ("log", "level")) is None
