"""What every configuration model shares: strictness and names."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
"""Device and point names end up in MQTT topics and payloads: no '/', '+', '#' or spaces."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


HostPort = Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?$")]
"""An IPv4 address, optionally with a port: BACnet/IP addresses are numeric."""
