"""The files in systemd/: `systemd-analyze verify` has nothing to say about the unit (it exits 0 even on an
unknown key, so any line it prints fails the test), its security exposure stays at 2.0 or lower, and the
sysusers file creates the service's user in the dialout group."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD_DIR / "edge-agent.service"
SYSUSERS = SYSTEMD_DIR / "edge-agent.sysusers"
EXEC_START = "ExecStart=/usr/local/bin/edge-agent run --config /etc/edge-agent/agent.toml"
MAX_EXPOSURE = 2.0

ANALYZE = shutil.which("systemd-analyze")
SYSUSERS_TOOL = shutil.which("systemd-sysusers")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian: systemd)"
)
# Warnings must not hide behind a log level inherited from the caller's environment.
SYSTEMD_ENV = {**os.environ, "SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""}


def settings(unit_text: str) -> dict[str, list[str]]:
    """Key=value lines of a unit file; a key may repeat."""
    found: dict[str, list[str]] = {}
    for line in unit_text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_unit_runs_the_agent_as_its_own_user_with_notify_and_watchdog() -> None:
    text = UNIT.read_text(encoding="utf-8")
    unit = settings(text)
    assert EXEC_START in text.splitlines()
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["WatchdogSec"] == ["30"]
    assert unit["User"] == unit["Group"] == ["edge-agent"]
    assert unit["SupplementaryGroups"] == ["dialout"]
    assert set(unit["LoadCredential"]) == {"mqtt-password", "mqtt-client.key"}
    assert "time-sync.target" in unit["After"][0].split()


@needs_analyze
def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists: check a copy that runs this environment's edge-agent.
    binary = Path(sysconfig.get_path("scripts")) / "edge-agent"
    assert os.access(binary, os.X_OK), f"{binary} missing: install the project first"
    copy = tmp_path / UNIT.name
    text = UNIT.read_text(encoding="utf-8")
    copy.write_text(
        text.replace("ExecStart=/usr/local/bin/edge-agent", f"ExecStart={binary}"), encoding="utf-8"
    )
    assert copy.read_text(encoding="utf-8") != text

    result = subprocess.run(
        [str(ANALYZE), "verify", str(copy)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=SYSTEMD_ENV,
        timeout=60,
        check=False,
    )

    printed = (result.stdout + result.stderr).strip()
    assert printed == "", f"systemd-analyze verify:\n{printed}"
    assert result.returncode == 0


@needs_analyze
def test_security_exposure_is_at_most_2() -> None:
    result = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        env=SYSTEMD_ENV,
        timeout=60,
        check=False,
    )

    match = re.search(r"Overall exposure level for edge-agent\.service: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout


@pytest.mark.skipif(SYSUSERS_TOOL is None, reason="systemd-sysusers is not installed (Debian: systemd)")
def test_sysusers_creates_the_service_user_in_dialout(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n", encoding="utf-8")
    (tmp_path / "etc/group").write_text("root:x:0:\ndialout:x:20:\n", encoding="utf-8")

    result = subprocess.run(  # --dry-run: reads the files under --root, writes nothing, needs no root
        [str(SYSUSERS_TOOL), "--dry-run", f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        env=SYSTEMD_ENV,
        timeout=60,
        check=False,
    )

    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, lines
    assert [line for line in lines if not line.startswith(("Creating ", "Would write "))] == []
    assert any(line.startswith("Creating user 'edge-agent'") for line in lines), lines
    assert "m edge-agent dialout" in SYSUSERS.read_text(encoding="utf-8").splitlines()
