"""apply_model's checks, each a refusal that names the field at fault and changes nothing (no model stored,
no event, the model in use goes on): unsigned (even where unsigned local models are allowed), signed by a
key the gateway does not trust, changed after signing, another sha256 than the command names, not a model
the agent can run, not base64, both or neither of data and url, a url that cannot be fetched (missing,
too large, refused, dripping past the deadline); no control here. A model already running is answered as
it is."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path
from typing import Any

import pytest

from edge_agent import signing
from edge_agent.errors import CommandRefused
from edge_agent.service import model_push
from edge_agent.service.model_push import ModelPush
from edge_agent.uplink.commands import ApplyModelArgs
from tests.onnx_models import signed, small_model
from tests.support import LOOPBACK, async_wait_until
from tests.test_model_push_mqtt import PUSHED, file_server, model_args
from tests.test_model_rollout import Site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def offered(tmp_path: Path, name: str = "offered.onnx", **options: Any) -> Path:
    folder = tmp_path / "offered"
    folder.mkdir(exist_ok=True)
    return small_model(folder / name, **({"outputs": PUSHED} | options))


async def refusal(site: Site, args: dict[str, Any]) -> CommandRefused:
    """The refusal of `args`, after checking that nothing changed."""
    before = sorted(site.store.iterdir())
    with pytest.raises(CommandRefused) as refused:
        await ModelPush(site.loop, site.store).apply(ApplyModelArgs.model_validate(args))
    assert sorted(site.store.iterdir()) == before  # nothing stored, nothing left behind
    assert site.model_events() == []
    assert site.loop.status().shadow is None
    assert site.loop.status().model == str(site.configured)
    return refused.value


async def test_a_good_model_is_stored_and_runs_in_shadow(site: Site, tmp_path: Path) -> None:
    model = signed(offered(tmp_path))
    result = await ModelPush(site.loop, site.store).apply(ApplyModelArgs.model_validate(model_args(model)))
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert result["stage"] == "shadow"
    assert result["file"] == f"{sha[:12]}-offered.onnx"
    assert (site.store / f"{sha[:12]}-offered.onnx").read_bytes() == model.read_bytes()
    assert (site.store / f"{sha[:12]}-offered.onnx.sig").exists()
    assert [e["stage"] for e in site.model_events()] == ["shadow"]
    again = await ModelPush(site.loop, site.store).apply(ApplyModelArgs.model_validate(model_args(model)))
    assert (again["stage"], again["unchanged"]) == ("shadow", True)
    assert len(site.model_events()) == 1


async def test_an_unsigned_model_is_refused_even_where_unsigned_local_models_run(
    site: Site, tmp_path: Path
) -> None:
    site.start(allow_unsigned_model=True)
    refused = await refusal(site, model_args(offered(tmp_path), signature=False))
    assert (refused.code, refused.field) == ("unsigned", "args.signature")


async def test_a_model_signed_by_an_untrusted_key_is_refused(site: Site, tmp_path: Path) -> None:
    stranger = signing.new_private_key()
    refused = await refusal(site, model_args(signed(offered(tmp_path), key=stranger)))
    assert (refused.code, refused.field) == ("bad-signature", "args.signature")
    assert "model_keys does not trust" in refused.message


async def test_a_model_changed_after_signing_is_refused(site: Site, tmp_path: Path) -> None:
    model = signed(offered(tmp_path))
    data = bytearray(model.read_bytes())
    data[-30] ^= 0x01
    model.write_bytes(bytes(data))
    refused = await refusal(site, model_args(model))
    assert (refused.code, refused.field) == ("bad-signature", "args.signature")
    assert "changed after it was signed" in refused.message


async def test_bytes_that_are_not_the_ones_named_are_refused(site: Site, tmp_path: Path) -> None:
    args = model_args(signed(offered(tmp_path)))
    refused = await refusal(site, {**args, "sha256": "0" * 64})
    assert (refused.code, refused.field) == ("invalid", "args.sha256")
    assert "altered on the way, or another file" in refused.message


async def test_a_model_the_agent_cannot_run_is_refused(site: Site, tmp_path: Path) -> None:
    refused = await refusal(site, model_args(signed(offered(tmp_path, width=19))))
    assert (refused.code, refused.field) == ("invalid", "args.data")
    assert "shape" in refused.message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": "not base64!"}, "not base64"),
        ({"url": "http://127.0.0.1:9/model.onnx"}, "either inline"),
        ({"data": None}, "either inline"),
    ],
    ids=["not-base64", "both", "neither"],
)
async def test_data_and_url_are_checked(
    site: Site, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    args = {**model_args(signed(offered(tmp_path))), **change}
    refused = await refusal(site, args)
    assert (refused.code, refused.field) == ("invalid", "args.data")
    assert message in refused.message


async def test_without_control_no_model_is_taken(tmp_path: Path) -> None:
    args = ApplyModelArgs.model_validate(model_args(signed(offered(tmp_path))))
    with pytest.raises(CommandRefused, match="control is not configured"):
        await ModelPush(None, tmp_path / "models").apply(args)


async def test_the_model_that_decides_is_answered_unchanged(site: Site) -> None:
    result = await ModelPush(site.loop, site.store).apply(
        ApplyModelArgs.model_validate(model_args(site.configured))
    )
    assert (result["stage"], result["unchanged"]) == ("active", True)
    assert site.model_events() == []


def by_url(model: Path, url: str) -> dict[str, Any]:
    args = model_args(model)
    del args["data"]
    return {**args, "url": url}


@pytest.mark.integration
async def test_a_model_is_fetched_from_its_url(site: Site, tmp_path: Path) -> None:
    model = signed(offered(tmp_path))
    with file_server(model.parent) as url:
        args = ApplyModelArgs.model_validate(by_url(model, f"{url}/{model.name}"))
        result = await ModelPush(site.loop, site.store).apply(args)
    assert result["stage"] == "shadow"


@pytest.mark.integration
async def test_a_url_that_cannot_be_fetched_is_refused(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = signed(offered(tmp_path))
    with file_server(model.parent) as url:
        refused = await refusal(site, by_url(model, f"{url}/missing.onnx"))
        assert (refused.code, refused.field) == ("fetch-failed", "args.url")
        assert "HTTP 404" in refused.message
        monkeypatch.setattr(model_push, "MAX_MODEL_BYTES", 100)
        refused = await refusal(site, by_url(model, f"{url}/{model.name}"))
        assert refused.code == "fetch-failed"
        assert "over 100" in refused.message
    refused = await refusal(site, by_url(model, f"{url}/{model.name}"))  # the server is gone
    assert refused.code == "fetch-failed"


@pytest.mark.integration
async def test_a_url_that_drips_is_given_up_at_the_deadline(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drips = 600  # a byte at a time, each well within the read timeout: 30 s in all
    sent: list[int] = []

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        count = 0
        with contextlib.suppress(ConnectionError):
            for count in range(1, drips + 1):  # noqa: B007 - counted for after the loop
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)
        writer.close()
        sent.append(count)

    monkeypatch.setattr(model_push, "FETCH_TIMEOUT_S", 0.5)
    server = await asyncio.start_server(drip, LOOPBACK, 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        refused = await refusal(site, by_url(signed(offered(tmp_path)), f"http://{LOOPBACK}:{port}/m.onnx"))
        assert (refused.code, refused.field) == ("fetch-failed", "args.url")
        assert "not fetched within 0.5 s" in refused.message
        await async_wait_until(lambda: bool(sent), 40, "the drip to end")
    assert sent[0] < drips  # the gateway hung up at its deadline, not when the server was done
