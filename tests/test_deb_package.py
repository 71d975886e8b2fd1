"""The Debian package: scripts/build_deb.sh builds edge-agent_<version>_<arch>.deb for amd64 and arm64, each
carrying the unit, the sysusers file, a configuration skeleton kept as a conffile, the docs, and a wheelhouse
from which postinst builds the virtual environment offline with the target's python3. The arm64 wheelhouse is
checked by resolving the agent from it for aarch64 (no emulation). One test installs the package on this
machine (root only): `edge-agent --version` runs, the unit verifies, nothing is enabled until the
configuration checks clean, and a purge leaves the buffer.

The builds fetch wheels from PyPI and take minutes: they are `slow` (`--run-slow`)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app
from edge_agent.config import check_file
from edge_agent.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SKELETON = REPO / "packaging/deb/agent.toml"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
SYSTEMD_ENV = {**os.environ, "SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""}
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
BUILD_TIMEOUT = 1800
STATE = Path("/var/lib/edge-agent")


def run(*args: str | Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_version_option_prints_the_projects_version() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"edge-agent {VERSION}"


def test_the_shipped_skeleton_fails_the_check_until_the_gateway_id_is_filled_in(tmp_path: Path) -> None:
    # postinst enables the service only once `config check` passes: as shipped, nothing starts.
    with pytest.raises(ConfigError) as refused:
        check_file(SKELETON)
    assert "gateway.id" in str(refused.value.details)

    filled = tmp_path / "agent.toml"
    filled.write_text(
        SKELETON.read_text(encoding="utf-8").replace('id = ""', 'id = "library-01"', 1), encoding="utf-8"
    )
    assert check_file(filled).config.gateway.id == "library-01"


# --- the built packages (slow: PyPI, minutes) ------------------------------------------------------------


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (Debian: dpkg)")
    out = tmp_path_factory.mktemp("debs")
    env = {**os.environ, "PYTHON": sys.executable}  # the dependencies' versions: those these tests run with
    run("bash", REPO / "scripts/build_deb.sh", "--out", out, "amd64", "arm64", env=env, timeout=BUILD_TIMEOUT)
    built = {arch: out / f"edge-agent_{VERSION}_{arch}.deb" for arch in MACHINE}
    for deb in built.values():
        assert deb.is_file(), sorted(p.name for p in out.iterdir())
    return built


def listing(deb: Path) -> dict[str, str]:
    """`dpkg-deb -c`: path -> the line (mode, owner, link target)."""
    lines = run("dpkg-deb", "-c", deb).splitlines()
    return {line.split()[5].split(" -> ")[0]: line for line in lines}


def control(deb: Path, name: str) -> str:
    return run("dpkg-deb", "--info", deb, name)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(BUILD_TIMEOUT)
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_package_carries_the_agent_unit_user_config_skeleton_and_docs(
    debs: dict[str, Path], arch: str, tmp_path: Path
) -> None:
    deb = debs[arch]
    fields = run("dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends")
    assert f"Package: edge-agent\nVersion: {VERSION}\nArchitecture: {arch}\n" in fields
    assert "python3 (>= 3.11), python3 (<< 3.12), python3-venv" in fields  # the wheels are CPython 3.11's

    files = listing(deb)
    assert files["./usr/bin/edge-agent"].split(" -> ")[1] == "/opt/edge-agent/current/bin/edge-agent"
    for path in (
        "./lib/systemd/system/edge-agent.service",
        "./usr/lib/sysusers.d/edge-agent.conf",
        "./usr/share/doc/edge-agent/copyright",
        "./usr/share/doc/edge-agent/docs/operations.md",
        "./usr/share/doc/edge-agent/examples/agent.toml",
        f"./opt/edge-agent/wheels/edge_agent-{VERSION}-py3-none-any.whl",
    ):
        assert path in files, path
    assert files["./etc/edge-agent/agent.toml"].startswith("-rw-r----- root/root")
    assert control(deb, "conffiles").split() == ["/etc/edge-agent/agent.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert control(deb, script).startswith("#!/bin/sh\n")

    wheels = [Path(p).name for p in files if p.startswith("./opt/edge-agent/wheels/") and p.endswith(".whl")]
    assert any(w.startswith("onnxruntime-") and w.endswith(f"_{MACHINE[arch]}.whl") for w in wheels)
    foreign = [w for w in wheels if not w.endswith(("-none-any.whl", f"_{MACHINE[arch]}.whl"))]
    assert foreign == []

    root = tmp_path / "root"
    run("dpkg-deb", "-x", deb, root)
    unit = (root / "lib/systemd/system/edge-agent.service").read_text(encoding="utf-8")
    assert "ExecStart=/usr/bin/edge-agent run --config /etc/edge-agent/agent.toml" in unit.splitlines()

    # The wheelhouse alone holds the agent and all it needs, for this architecture's CPython 3.11: what
    # postinst's offline `pip install` will find on the target.
    wheelhouse, target = root / "opt/edge-agent/wheels", tmp_path / "target"
    platforms = [f"--platform=manylinux_2_{glibc}_{MACHINE[arch]}" for glibc in range(17, 37)]
    platforms.append(f"--platform=manylinux2014_{MACHINE[arch]}")  # pip does not alias manylinux_2_17
    resolved = run(
        *[sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index"],
        *["--find-links", str(wheelhouse), "--only-binary=:all:", *platforms, "--python-version=3.11"],
        *["--implementation=cp", "--abi=cp311", "--target", str(target), f"edge-agent=={VERSION}"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
            "PIP_CONFIG_FILE": os.devnull,
        },
    )
    assert f"edge-agent-{VERSION}" in resolved, resolved
    assert "onnxruntime-" in resolved, resolved


# --- installed on this machine (slow, root only) ---------------------------------------------------------


@pytest.fixture
def host_arch() -> Iterator[str]:
    """This machine's Debian architecture, once it is known to be clean to install on; purged after."""
    arch = ""
    if shutil.which("dpkg") and shutil.which("apt-get"):
        arch = run("dpkg", "--print-architecture").strip()
    if os.geteuid() != 0 or arch not in MACHINE:
        pytest.skip("installs the package: root on a Debian amd64 or arm64 machine only")
    if subprocess.run(["dpkg", "-s", "edge-agent"], capture_output=True, check=False).returncode == 0:
        pytest.skip("edge-agent is installed on this machine already")
    if STATE.exists():
        pytest.skip(f"{STATE} exists: a buffer this test must not touch")
    try:
        yield arch
    finally:
        subprocess.run(
            ["apt-get", "purge", "-y", "edge-agent"], capture_output=True, env=APT_ENV, check=False
        )
        shutil.rmtree(STATE, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_apt_install_runs_the_agent_enables_nothing_unchecked_and_purge_keeps_the_buffer(
    host_arch: str, debs: dict[str, Path], tmp_path: Path
) -> None:
    installed = run("apt-get", "install", "-y", debs[host_arch], env=APT_ENV, timeout=BUILD_TIMEOUT)

    assert run("/usr/bin/edge-agent", "--version").strip() == f"edge-agent {VERSION}"
    assert "dialout" in [g.gr_name for g in grp.getgrall() if "edge-agent" in g.gr_mem]
    config = Path("/etc/edge-agent/agent.toml")
    assert (config.stat().st_mode & 0o777, grp.getgrgid(config.stat().st_gid).gr_name) == (
        0o640,
        "edge-agent",
    )
    verify = subprocess.run(
        ["systemd-analyze", "verify", "/lib/systemd/system/edge-agent.service"],
        capture_output=True,
        text=True,
        env=SYSTEMD_ENV,
        timeout=60,
        check=False,
    )
    assert (verify.returncode, (verify.stdout + verify.stderr).strip()) == (0, "")

    # The skeleton does not pass the check: postinst says why and enables nothing.
    assert "gateway.id" in installed
    assert "dpkg-reconfigure edge-agent" in installed
    enabled = ["systemctl", "is-enabled", "edge-agent.service"]
    assert subprocess.run(enabled, capture_output=True, check=False).returncode != 0
    config.write_text(config.read_text(encoding="utf-8").replace('id = ""', 'id = "library-01"', 1), "utf-8")
    run("dpkg-reconfigure", "edge-agent", env=APT_ENV)
    assert run(*enabled).strip() == "enabled"

    # The buffer the service would have written, then a purge.
    STATE.mkdir(mode=0o750)
    buffer = STATE / "edge-agent-buffer.db"
    buffer.write_bytes(b"readings not sent yet")
    os.chown(STATE, pwd.getpwnam("edge-agent").pw_uid, grp.getgrnam("edge-agent").gr_gid)
    purged = run("apt-get", "purge", "-y", "edge-agent", env=APT_ENV)

    assert "/var/lib/edge-agent" in purged
    for gone in (
        "/opt/edge-agent",
        "/etc/edge-agent",
        "/usr/bin/edge-agent",
        "/lib/systemd/system/edge-agent.service",
    ):
        assert not os.path.lexists(gone), gone
    assert subprocess.run(enabled, capture_output=True, check=False).returncode != 0
    assert buffer.read_bytes() == b"readings not sent yet"

    # Asked for, the purge takes the state too: postrm's purge step, run as dpkg runs it.
    run("dpkg-deb", "-e", debs[host_arch], tmp_path / "control")
    postrm = tmp_path / "control/postrm"
    run(postrm, "purge")
    assert buffer.exists()
    run(postrm, "purge", env={**os.environ, "EDGE_AGENT_PURGE_STATE": "yes"})
    assert not STATE.exists()
    STATE.mkdir()
    buffer.write_bytes(b"readings not sent yet")
    Path("/etc/edge-agent").mkdir()
    Path("/etc/edge-agent/purge-state").touch()
    run(postrm, "purge")
    assert not STATE.exists()
    assert not Path("/etc/edge-agent").exists()
