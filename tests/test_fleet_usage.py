"""`edge-agent fleet`'s usage mistakes: each names its option and exits 2 before any connection."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--broker", "http://broker.example"], "--broker: Value error, expected mqtt://HOST[:PORT]"),
        (["--broker", "mqtt://broker.example:0"], "--broker: Value error, bad port"),
        (["--prefix", "edge/+"], "--prefix: String should match pattern"),
        (["--group", "city/north"], "--group: 'city/north' is a Sparkplug group id"),
        (["--password-file", "pass"], "--password-file needs --username"),
        (
            ["--username", "ops", "--password-file", "/nonexistent/pass"],
            "--password-file /nonexistent/pass: cannot read it",
        ),
        (
            ["--broker", "mqtts://broker.example", "--ca-file", "/nonexistent/ca.pem"],
            "--ca-file /nonexistent/ca.pem: cannot read it",
        ),
    ],
)
def test_a_usage_mistake_names_the_option_and_exits_2(options: list[str], message: str) -> None:
    result = runner.invoke(app, ["fleet", *options, "--once"])
    assert result.exit_code == 2
    assert message in result.output
