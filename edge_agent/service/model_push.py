"""The apply_model command: a control model pushed inline (base64) or fetched from the url the command names,
checked before anything changes, kept beside the buffer and handed to control to run in shadow, then to
decide (control/model_rollout.py).

Each check refuses the command and changes nothing: control runs here (configured, not the planner);
exactly one of `data` and `url`; the bytes (at most MAX_MODEL_BYTES, fetched within FETCH_TIMEOUT_S) have
the command's sha256; the command carries the model's signature and it verifies under a key of
`[control] model_keys` (a model from afar never runs unsigned, whatever `allow_unsigned_model` says); the
model loads and matches the agent's inputs and outputs, as `[control] model` is checked. Only then is it
moved into MODEL_STORE, and the reply says it runs in shadow and until when.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from pydantic import JsonValue

from edge_agent import __version__
from edge_agent.control.loop import ControlLoop
from edge_agent.control.model_trust import check, signature_path
from edge_agent.errors import CommandRefused, ModelError
from edge_agent.uplink.commands import ApplyModelArgs, CommandErrorCode

if TYPE_CHECKING:
    from typing import IO

log = structlog.get_logger("edge_agent.commands")

MODEL_STORE = "models"  # the directory of pushed models and their .sig files, beside the buffer file
INCOMING = ".incoming-"  # inside it, a directory for each model being checked
MAX_MODEL_BYTES = 16 * 1024 * 1024
FETCH_TIMEOUT_S = 60.0  # the whole download
READ_TIMEOUT_S = 15.0  # one connect or read


class ModelPush:
    """Runs apply_model for the agent: `controller` None when [control] is not configured."""

    def __init__(self, controller: ControlLoop | None, store: Path) -> None:
        self._controller = controller
        self.store = store

    async def apply(self, args: ApplyModelArgs) -> dict[str, JsonValue]:
        controller = self._controller
        if controller is None:
            raise CommandRefused(
                CommandErrorCode.INVALID,
                "control is not configured here ([control] demand and zones): no model runs",
                "command",
            )
        if controller.setup.planner:
            message = "the planner decides here ([control] planner = true): no model runs"
            raise CommandRefused(CommandErrorCode.INVALID, message, "command")
        data, source = await _model_bytes(args)
        digest = hashlib.sha256(data).hexdigest()
        if digest != args.sha256:
            message = (
                f"the model's bytes ({source}) have sha256 {digest}, the command names {args.sha256}: "
                "altered on the way, or another file"
            )
            raise CommandRefused(CommandErrorCode.INVALID, message, "args.sha256")
        if args.signature is None:
            message = (
                "unsigned: a pushed model must carry its signature (`edge-agent model sign`) by a key of "
                "[control] model_keys"
            )
            raise CommandRefused(CommandErrorCode.UNSIGNED, message, "args.signature")
        same = _same_as_running(controller, digest)
        if same is not None:
            return same
        path = await asyncio.to_thread(self._checked_into_store, controller, args, data, source)
        try:
            model = await asyncio.to_thread(controller.load_policy, path)
        except ModelError as error:  # checked in .incoming a moment ago: only if the disk changed it since
            raise CommandRefused(CommandErrorCode.INVALID, f"{args.file}: {error.reason}", source) from error
        run = controller.push_model(model)
        trust = model.info.trust
        log.info("model pushed: in shadow", model=str(path), sha256=digest, until=run.until.isoformat())
        return {
            "file": path.name,
            "sha256": digest,
            "stage": "shadow",
            "until": run.until.isoformat(),
            "version": model.info.version,
            "signer": None if trust is None else trust.signer,
        }

    def _checked_into_store(
        self, controller: ControlLoop, args: ApplyModelArgs, data: bytes, source: str
    ) -> Path:
        """The model and its signature, checked in INCOMING, then moved into the store (in a thread)."""
        name = f"{args.sha256[:12]}-{args.file}"
        cannot = f"the gateway cannot store the model in {self.store}"
        try:
            self.store.mkdir(parents=True, exist_ok=True)
            incoming = Path(tempfile.mkdtemp(prefix=INCOMING, dir=self.store))  # one per push
        except OSError as exc:
            raise CommandRefused(CommandErrorCode.INTERNAL, f"{cannot} ({exc})") from None
        try:
            staged, final = incoming / name, self.store / name
            staged.write_bytes(data)
            signature_path(staged).write_text((args.signature or "").strip() + "\n", encoding="utf-8")
            try:
                check(staged, data, controller.setup.model_trust)
            except ModelError as error:
                message = f"{args.file}: {error.reason}"
                raise CommandRefused(CommandErrorCode.BAD_SIGNATURE, message, "args.signature") from error
            try:
                controller.load_policy(staged)
            except ModelError as error:
                raise CommandRefused(
                    CommandErrorCode.INVALID, f"{args.file}: {error.reason}", source
                ) from error
            os.replace(signature_path(staged), signature_path(final))
            os.replace(staged, final)
        except OSError as exc:
            raise CommandRefused(CommandErrorCode.INTERNAL, f"{cannot} ({exc})") from None
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return final


def _same_as_running(controller: ControlLoop, digest: str) -> dict[str, JsonValue] | None:
    """The reply to a model already deciding or in shadow: nothing changes."""
    stage = controller.model_stage()
    deciding = controller.rollout.deciding
    if stage is not None and stage.sha256 == digest:
        return {"file": stage.file, "sha256": digest, "stage": stage.stage, "unchanged": True}
    if deciding is not None and deciding.sha256 == digest:
        return {"file": deciding.file, "sha256": digest, "stage": "active", "unchanged": True}
    return None


async def _model_bytes(args: ApplyModelArgs) -> tuple[bytes, str]:
    """The model's bytes and the field they came from."""
    if (args.data is None) == (args.url is None):
        message = "give the model either inline (args.data, base64) or by args.url, not both or neither"
        raise CommandRefused(CommandErrorCode.INVALID, message, "args.data")
    if args.data is not None:
        try:
            return base64.b64decode(args.data, validate=True), "args.data"
        except binascii.Error as exc:
            raise CommandRefused(
                CommandErrorCode.INVALID, f"args.data: not base64 ({exc})", "args.data"
            ) from None
    assert args.url is not None
    log.info("fetching a pushed model", url=args.url)
    return await asyncio.to_thread(fetch, args.url), "args.url"


class _HttpRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects to http and https only (urllib would follow one to ftp)."""

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not newurl.lower().startswith(("http://", "https://")):
            raise urllib.error.URLError(f"redirected to {newurl!r}, not http or https")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str) -> bytes:
    """The body at `url` (http or https), at most MAX_MODEL_BYTES within FETCH_TIMEOUT_S; CommandRefused
    (fetch-failed) saying why not. Blocking: run it in a thread."""
    deadline = time.monotonic() + FETCH_TIMEOUT_S
    opener = urllib.request.build_opener(_HttpRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": f"edge-agent/{__version__}"})
    try:
        with opener.open(request, timeout=READ_TIMEOUT_S) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_MODEL_BYTES:
                raise _failed(url, f"{declared} bytes, over {MAX_MODEL_BYTES}")
            body = bytearray()
            while chunk := response.read1(64 * 1024):  # one read at a time: a slow drip meets the deadline
                body += chunk
                if len(body) > MAX_MODEL_BYTES:
                    raise _failed(url, f"over {MAX_MODEL_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise _failed(url, f"not fetched within {FETCH_TIMEOUT_S:g} s")
            return bytes(body)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the answer's connection
        raise _failed(url, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _failed(url, str(exc.reason)) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, a malformed answer
        raise _failed(url, str(exc) or type(exc).__name__) from None


def _failed(url: str, reason: str) -> CommandRefused:
    return CommandRefused(CommandErrorCode.FETCH_FAILED, f"{url}: {reason}", "args.url")
