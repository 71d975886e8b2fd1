"""Every command the bench sends is built here: the one place to follow the command format (docs/mqtt.md).

The format grows an `expires` time (RFC 3339, UTC) and an optional ed25519 `signature` (issue 17). Whether
the agent under test takes `expires` is asked once, with a `status` command carrying one (`probe_expires`);
with a signing key set, each command is signed with edge_agent.signing over its JSON without `signature`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import signing

LIFETIME = timedelta(minutes=5)


class Signing:
    """The key commands are signed with (`--signing-key`); None: unsigned."""

    key: Ed25519PrivateKey | None = None


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class CommandFormat:
    with_expires: bool = False  # set by the probe: the agent knows the field
    key: Ed25519PrivateKey | None = field(default_factory=lambda: Signing.key)  # sign when set
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        return f"fb-{next(self._ids)}"

    def body(
        self, command: str, args: dict[str, Any] | None = None, *, id: str | None = None,
        expires: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The command as a JSON object; `expires` defaults to LIFETIME from now (when the format has it)."""
        body: dict[str, Any] = {"id": id or self.new_id(), "command": command}
        if args is not None:
            body["args"] = args
        if self.with_expires or expires is not None:
            body["expires"] = rfc3339(expires or datetime.now(UTC) + LIFETIME)
        if self.key is not None:
            body["signature"] = signing.sign(self.key, canonical(body))
        return body

    def payload(self, command: str, args: dict[str, Any] | None = None, **extra: Any) -> bytes:
        return json.dumps(self.body(command, args, **extra)).encode()

    def expired(self, command: str, args: dict[str, Any] | None = None) -> bytes:
        return self.payload(command, args, expires=datetime.now(UTC) - timedelta(minutes=1))


def canonical(body: dict[str, Any]) -> bytes:
    """What a signature covers: the command without its signature, keys sorted, no spaces."""
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
