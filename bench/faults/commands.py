"""Every command the bench sends is built here, from docs/mqtt.md's "Commands" (and docs/schemas/command.json,
signed_command.json), not from the agent's code: the one place to follow the command format.

A command is a JSON object with `id`, `expires` (RFC 3339, UTC; required over MQTT), `command` and `args`.
Signed, it travels as the envelope {"signed": <the command's JSON text>, "signature": <base64 ed25519>}, the
signature over b"edge-agent command v1\\n" + the command topic + b"\\n" + the text (UTF-8). Only the raw
ed25519 comes from edge_agent.signing.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import signing

LIFETIME = timedelta(minutes=1)  # docs/mqtt.md: "Choose a short lifetime (a minute)"
SIGNED_PREFIX = b"edge-agent command v1\n"


class Signing:
    """The key every command of the bench is signed with (`--signed`, `--signing-key`); None: unsigned.
    When set, the agent's configuration trusts its public key (parts.agent_config)."""

    key: Ed25519PrivateKey | None = None


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signed_bytes(topic: str, text: str) -> bytes:
    """What a signature covers (docs/mqtt.md, "Signed commands")."""
    return SIGNED_PREFIX + topic.encode() + b"\n" + text.encode()


def envelope(key: Ed25519PrivateKey, topic: str, text: str) -> bytes:
    """The signed command as published: the exact text signed, and its signature."""
    return json.dumps({"signed": text, "signature": signing.sign(key, signed_bytes(topic, text))}).encode()


@dataclass
class CommandFormat:
    topic: str  # the command topic the signature binds the command to
    key: Ed25519PrivateKey | None = field(default_factory=lambda: Signing.key)  # sign when set
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        return f"fb-{next(self._ids)}"

    def body(
        self, command: str, args: dict[str, Any] | None = None, *, id: str | None = None,
        expires: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The command as a JSON object; `expires` defaults to LIFETIME from now."""
        body: dict[str, Any] = {
            "id": id or self.new_id(), "expires": rfc3339(expires or datetime.now(UTC) + LIFETIME),
            "command": command,
        }  # fmt: skip
        if args is not None:
            body["args"] = args
        return body

    def encode(self, body: dict[str, Any], key: Ed25519PrivateKey | bool | None = True) -> bytes:
        """`body` as published: in a signed envelope with the format's key (`key` True), another key, or
        bare (`key` None or no key set)."""
        text = json.dumps(body, separators=(",", ":"))
        chosen = self.key if key is True else key
        if isinstance(chosen, Ed25519PrivateKey):
            return envelope(chosen, self.topic, text)
        return text.encode()

    def payload(self, command: str, args: dict[str, Any] | None = None, **extra: Any) -> bytes:
        return self.encode(self.body(command, args, **extra))

    def expired(self, command: str, args: dict[str, Any] | None = None, **extra: Any) -> bytes:
        return self.payload(command, args, expires=datetime.now(UTC) - timedelta(minutes=2), **extra)
