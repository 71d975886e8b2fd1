"""The optional `[openadr]` section: demand response from a utility's OpenADR 2.0b VTN
(edge_agent/demand_response/). Left out, the agent does not talk OpenADR at all."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge_agent.config.base import Strict

Fraction = Annotated[float, Field(gt=0, le=1)]
Kilowatts = Annotated[float, Field(gt=0)]


class OpenAdrConfig(Strict):
    vtn_url: str
    """The VTN's base URL, e.g. https://vtn.utility.example/OpenADR2/Simple/2.0b (the utility gives it)."""
    ven_name: Annotated[str, Field(min_length=1, max_length=256)]
    """The name the utility enrolled this gateway under."""
    ven_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The VEN id the utility assigned, when it assigns one in advance; None: the VTN assigns it."""
    cert_file: Path | None = None
    """The gateway's client certificate (PEM) for TLS and message signing, with key_file."""
    key_file: Path | None = None
    ca_file: Path | None = None
    """The CA that signed the VTN's certificate (with cert_file: openleadr checks the VTN against it)."""
    vtn_fingerprint: str | None = None
    """The VTN certificate's fingerprint: messages not signed by it are ignored."""
    poll_interval_s: Annotated[float, Field(ge=1, le=86400)] | None = None
    """How often to poll the VTN; None: as the VTN asks at registration."""
    level_fractions: Annotated[list[Fraction], Field(min_length=1, max_length=3)] | None = None
    """SIMPLE signal levels 1, 2, 3 -> demand target as a fraction of this month's peak so far."""
    level_kw: Annotated[list[Kilowatts], Field(min_length=1, max_length=3)] | None = None
    """SIMPLE signal levels 1, 2, 3 -> explicit demand targets in kW (instead of level_fractions)."""
    baseline_minutes: Annotated[int, Field(ge=15, le=240, multiple_of=15)] = 60
    """The pre-event baseline: the mean 15-minute demand over this long before the event starts."""

    @field_validator("vtn_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected https://HOST[:PORT]/PATH (or http:// on a test bench)")
        return url

    @model_validator(mode="after")
    def _pieces(self) -> OpenAdrConfig:
        if not (self.cert_file is None) == (self.key_file is None) == (self.ca_file is None):
            raise ValueError("cert_file, key_file and ca_file go together")
        if self.cert_file is not None and urlsplit(self.vtn_url).scheme != "https":
            raise ValueError("cert_file and key_file need an https:// vtn_url")
        if self.level_fractions is not None and self.level_kw is not None:
            raise ValueError("level_fractions and level_kw: set one of them")
        for name, levels in (("level_fractions", self.level_fractions), ("level_kw", self.level_kw)):
            if levels is not None and any(b > a for a, b in pairwise(levels)):
                raise ValueError(f"{name}: a higher level must not ask for a higher target")
        return self

    def levels(self) -> tuple[str, tuple[float, ...]]:
        """('fraction' or 'kW', the targets of levels 1, 2, 3...); fractions 0.9/0.8/0.7 by default."""
        if self.level_kw is not None:
            return "kW", tuple(self.level_kw)
        return "fraction", tuple(self.level_fractions or (0.9, 0.8, 0.7))
