"""What a command from the broker must pass before it runs: its signature, its expiry, and once-only.

A signed command travels in an envelope, `{"signed": "<the command's JSON text>", "signature": "<base64>"}`,
so that nobody re-serialises JSON: the signature is ed25519 over

    b"edge-agent command v1\\n" + <command topic, UTF-8> + b"\\n" + <the `signed` text, UTF-8>

The topic (`{prefix}/{gateway}/command`) binds it to one gateway. docs/mqtt.md has a worked example.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from edge_agent.config import CommandsConfig
from edge_agent.errors import CommandRefused
from edge_agent.readings import utc_now
from edge_agent.signing import load_public_key, verify
from edge_agent.uplink.command_log import CommandLog
from edge_agent.uplink.commands import (
    MAX_CONFIG_COMMAND_BYTES,
    CommandErrorCode,
    CommandReply,
    Delivery,
    Request,
    parse_object,
)

log = structlog.get_logger("edge_agent.commands")

SIGNING_CONTEXT = b"edge-agent command v1\n"
ENVELOPE_FIELDS = {"signed", "signature"}


def signed_bytes(topic: str, command: str) -> bytes:
    """The bytes a command's signature covers: the context line, the command topic, the command's text."""
    return SIGNING_CONTEXT + topic.encode() + b"\n" + command.encode()


class CommandAdmission:
    """The Admission (commands.py) of commands over MQTT, per [commands] of the configuration."""

    def __init__(self, config: CommandsConfig, log_path: Path, now: Callable[[], datetime] = utc_now) -> None:
        self._keys = [load_public_key(text) for text in config.trusted_keys]
        self._max_ahead = timedelta(seconds=config.max_expiry_s)
        self._skew = timedelta(seconds=config.clock_skew_s)
        self._log = CommandLog(log_path)
        self._now = now

    def opened(self, delivery: Delivery) -> bytes:
        data = parse_object(delivery.payload, MAX_CONFIG_COMMAND_BYTES)  # the router limits the others
        if "signed" not in data and "signature" not in data:
            if self._keys:
                raise CommandRefused(CommandErrorCode.UNSIGNED, "this gateway takes signed commands only")
            return delivery.payload
        if set(data) != ENVELOPE_FIELDS:
            extra = ", ".join(sorted(set(data) ^ ENVELOPE_FIELDS))
            raise CommandRefused(
                CommandErrorCode.INVALID, f"a signed command has exactly 'signed' and 'signature' ({extra})"
            )
        command, signature = data["signed"], data["signature"]
        if not isinstance(command, str):
            raise CommandRefused(
                CommandErrorCode.INVALID, "signed: the command's JSON text, a string", "signed"
            )
        try:
            body = command.encode()
        except UnicodeEncodeError:  # a lone surrogate escaped in the JSON string
            raise CommandRefused(CommandErrorCode.MALFORMED, "signed: not UTF-8 text", "signed") from None
        if self._keys and not (
            isinstance(signature, str)
            and verify(self._keys, signed_bytes(delivery.topic, command), signature)
        ):
            message = (
                f"not signed by a trusted key for {delivery.topic} (altered, or meant for another gateway)"
            )
            raise CommandRefused(CommandErrorCode.BAD_SIGNATURE, message, "signature")
        return body

    async def admit(self, request: Request, body: bytes) -> CommandReply | None:
        expiry = request.expiry()
        if expiry is None:
            message = "expires: required over MQTT (RFC 3339 UTC, e.g. 2026-12-07T17:00:00Z)"
            raise CommandRefused(CommandErrorCode.INVALID, message, "expires")
        now = self._now()
        if expiry < now - self._skew:
            message = f"expired at {request.expires} (the gateway's clock: {_iso(now)})"
            raise CommandRefused(CommandErrorCode.EXPIRED, message, "expires")
        if expiry > now + self._max_ahead + self._skew:
            message = (
                f"{request.expires} is more than max_expiry_s = {self._max_ahead.total_seconds():g} s ahead "
                f"(the gateway's clock: {_iso(now)})"
            )
            raise CommandRefused(CommandErrorCode.EXPIRED, message, "expires")
        digest = hashlib.sha256(body).digest()
        forget_after = (expiry + self._skew).timestamp()
        try:
            taken = await asyncio.to_thread(self._log.take, request.id, digest, forget_after, now.timestamp())
        except sqlite3.Error as exc:
            log.error("command id not recorded", id=request.id, log=str(self._log.path), error=str(exc))  # noqa: TRY400
            message = f"the gateway cannot record the command's id ({exc}): not run, rather than maybe twice"
            raise CommandRefused(CommandErrorCode.NOT_RECORDED, message) from None
        if taken is None:
            return None
        if taken.digest != digest:
            raise CommandRefused(
                CommandErrorCode.DUPLICATE, f"id {request.id!r} was used by another command", "id"
            )
        if taken.reply is None:
            message = (
                f"{request.id!r} was received before and its outcome is unknown (running, or interrupted)"
            )
            raise CommandRefused(CommandErrorCode.DUPLICATE, message, "id")
        return CommandReply.model_validate_json(taken.reply)

    async def settle(self, request: Request, reply: CommandReply) -> None:
        try:
            await asyncio.to_thread(self._log.settle, request.id, reply.to_json())
        except sqlite3.Error as exc:
            log.warning("command reply not recorded", id=request.id, error=str(exc))

    def close(self) -> None:
        self._log.close()


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="seconds").replace("+00:00", "Z")
