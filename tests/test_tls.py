"""The uplink over TLS with a CA made by the test, and with a username and a password file: it connects to
a broker it can verify and refuses one it cannot (issue 5's acceptance, on a real mosquitto)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.config import MqttConfig
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.session import Uplink, UplinkState
from tests.support import LOOPBACK, async_wait_until, free_port, run_mosquitto
from tests.test_buffer import readings

pytestmark = pytest.mark.integration


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> Path:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=directory)  # fmt: skip
    return directory / f"{name}.crt"


def make_server_cert(directory: Path, ca: str) -> tuple[Path, Path]:
    (directory / "san.cnf").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr", cwd=directory)  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.cnf", "-out", "server.crt", cwd=directory)  # fmt: skip
    return directory / "server.crt", directory / "server.key"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    trusted = make_ca(tmp_path, "site-ca")
    stranger = make_ca(tmp_path, "other-ca")
    cert, key = make_server_cert(tmp_path, "site-ca")
    passwords = tmp_path / "passwords"
    subprocess.run(
        [
            shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
            "-b",
            "-c",
            str(passwords),
            "gw",
            "s3cret",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    subprocess.run(
        [
            shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
            "-b",
            str(passwords),
            "central",
            "c",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    (tmp_path / "gw.password").write_text("s3cret\n")
    (tmp_path / "wrong.password").write_text("guess\n")
    return {"ca": trusted, "other": stranger, "cert": cert, "key": key, "passwords": passwords}


@contextlib.asynccontextmanager
async def uplink_to(config: MqttConfig, buffer: Buffer) -> AsyncIterator[Uplink]:
    uplink = Uplink(config, "gw-tls", buffer)
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# aiomqtt 2.5 / paho 2.2 leave the TLS socket of a connection the broker refused (CONNACK 135) for the
# garbage collector: a library leak per refused attempt, not ours to close. Seen only in this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_tls_with_a_password_connects_and_refuses_what_it_cannot_verify(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    port = free_port()
    broker_config = (
        f"cafile {pki['ca']}\ncertfile {pki['cert']}\nkeyfile {pki['key']}\n"
        f"allow_anonymous false\npassword_file {pki['passwords']}\n"
    )
    url = f"mqtts://{LOOPBACK}:{port}"
    (tmp_path / "broker").mkdir()
    with run_mosquitto(tmp_path / "broker", port, broker_config):
        async with Buffer(tmp_path / "b.db") as buffer:
            await buffer.append(readings(5))
            password = tmp_path / "gw.password"
            trusted = MqttConfig(url=url, ca_file=pki["ca"], username="gw", password_file=password)
            async with uplink_to(trusted, buffer) as uplink:
                await async_wait_until(lambda: buffer.statistics().depth == 0, 20, "published over TLS")
                assert uplink.statistics().state is UplinkState.CONNECTED

            await buffer.append(readings(5, start=5))
            stranger = MqttConfig(url=url, ca_file=pki["other"], username="gw", password_file=password)
            wrong = MqttConfig(
                url=url, ca_file=pki["ca"], username="gw", password_file=tmp_path / "wrong.password"
            )
            for config, expected in [(stranger, "certificate verify failed"), (wrong, "Not authorized")]:
                async with uplink_to(config, buffer) as refused:

                    def failed(uplink: Uplink = refused) -> bool:
                        return uplink.statistics().last_error is not None

                    await async_wait_until(failed, 20, "the refusal")
                    await asyncio.sleep(0.5)
                    error = refused.statistics().last_error or ""
                    assert refused.statistics().state is not UplinkState.CONNECTED
                    assert expected in error, error
                    assert buffer.statistics().depth == 5  # nothing left the buffer


def test_tls_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="need an mqtts:// url"):
        MqttConfig(url="mqtt://h", ca_file=Path("ca.crt"))
    with pytest.raises(ValueError, match="go together"):
        MqttConfig(url="mqtts://h", cert_file=Path("c.crt"))
    assert MqttConfig(url="mqtts://broker.example").port == 8883


async def _topics_seen(tmp_path: Path, pki: dict[str, Path], gateway_rights: str) -> list[str]:
    """Run the uplink against a broker whose ACL gives the gateway `gateway_rights`; every topic a central
    subscriber allowed to read everything sees."""
    work = tmp_path / gateway_rights.replace("/", "_").replace("#", "all")
    work.mkdir()
    acl = work / "acl"
    acl.write_text(f"user gw\ntopic write {gateway_rights}\n\nuser central\ntopic read #\n")
    port = free_port()
    extra = f"allow_anonymous false\npassword_file {pki['passwords']}\nacl_file {acl}\n"
    topics: list[str] = []
    with run_mosquitto(work, port, extra):
        async with aiomqtt.Client(
            LOOPBACK, port, identifier="central", username="central", password="c"
        ) as client:
            await client.subscribe("#", qos=1)

            async def collect() -> None:
                async for message in client.messages:
                    topics.append(str(message.topic))

            collector = asyncio.create_task(collect())
            async with Buffer(work / "b.db") as buffer:
                await buffer.append(readings(20))
                config = MqttConfig(
                    url=f"mqtt://{LOOPBACK}:{port}", username="gw", password_file=tmp_path / "gw.password"
                )
                async with uplink_to(config, buffer):
                    await async_wait_until(lambda: buffer.statistics().depth == 0, 20, "published")
                    await async_wait_until(lambda: "edge/gw-tls/readings" in topics, 10, "readings arrived")
            await async_wait_until(lambda: topics.count("edge/gw-tls/status") >= 2, 10, "online and offline")
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
    return topics


async def test_the_agent_publishes_only_under_its_own_topic_prefix(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    # Allowed to write anywhere, it still writes only below edge/<gateway>/ ...
    assert set(await _topics_seen(tmp_path, pki, "#")) == {"edge/gw-tls/readings", "edge/gw-tls/status"}
    # ... so an ACL that allows nothing else costs it nothing: everything still arrives.
    restricted = await _topics_seen(tmp_path, pki, "edge/gw-tls/#")
    assert set(restricted) == {"edge/gw-tls/readings", "edge/gw-tls/status"}
