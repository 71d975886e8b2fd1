"""What every configuration model shares: strictness, names and network addresses."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, WithJsonSchema

NAME_MAX = 64
NAME_PATTERN = r"^[^\s/+#\x00-\x1f\x7f]{1,64}$"
"""What a consumer may rely on (JSON Schemas): no '/', '+', '#', spaces or control characters."""


def valid_name(value: str) -> str:
    """Letters and digits of any script (Hangul too), their combining marks, '_', '.' and '-': safe in an MQTT
    topic level, a payload, a SQLite row and a shell. Normalised to NFC, so one name has one spelling."""
    value = unicodedata.normalize("NFC", value)
    if not 1 <= len(value) <= NAME_MAX:
        raise ValueError(f"a name has 1 to {NAME_MAX} characters, not {len(value)}")
    for char in value:
        if char not in "_.-" and unicodedata.category(char)[0] not in "LMN":
            shown = repr(char) if char.isprintable() and not char.isspace() else f"U+{ord(char):04X}"
            raise ValueError(
                f"{value!r} holds {shown}: a name has letters, digits, '_', '.' and '-' only "
                "(no '/', '+', '#', spaces or control characters: it goes into MQTT topics)"
            )
    return value


Name = Annotated[str, AfterValidator(valid_name), WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]
"""Device, point, zone and gateway names end up in MQTT topics and payloads: letters and digits of any
script, '_', '.' and '-'."""


def _point_ref(value: str) -> str:
    device, slash, point = value.partition("/")
    if not slash:
        raise ValueError(f"{value!r} is not 'device/point'")
    return f"{valid_name(device)}/{valid_name(point)}"


PointRef = Annotated[str, AfterValidator(_point_ref)]
"""'device/point'."""


class Strict(BaseModel):
    # NaN and infinities are never a setting: `inf` as an interval or `nan` as a setpoint would pass
    # every range check (comparisons with NaN are false) and misbehave at run time.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_IPV4 = r"(?P<ip>\d{1,3}(?:\.\d{1,3}){3})"


def _ipv4_address(value: str, *, prefix: bool, port_zero: bool) -> str:
    shape = _IPV4 + (r"(?:/(?P<prefix>\d{1,2}))?" if prefix else "") + r"(?::(?P<port>\d{1,5}))?"
    match = re.fullmatch(shape, value)
    if match is None:
        raise ValueError(f"{value!r} is not IP{'[/prefix]' if prefix else ''}[:port]")
    if any(int(octet) > 255 for octet in match["ip"].split(".")):
        raise ValueError(f"{match['ip']!r} is not an IPv4 address (each number is 0-255)")
    if prefix and match["prefix"] is not None and int(match["prefix"]) > 32:
        raise ValueError(f"/{match['prefix']} is not an IPv4 prefix length (0-32)")
    low = 0 if port_zero else 1
    if match["port"] is not None and not low <= int(match["port"]) <= 65535:
        raise ValueError(f"port {match['port']} is outside {low}-65535")
    return value


HostPort = Annotated[str, AfterValidator(lambda v: _ipv4_address(v, prefix=False, port_zero=False))]
"""An IPv4 address, optionally with a port (1-65535): BACnet/IP addresses are numeric."""

LocalAddress = Annotated[str, AfterValidator(lambda v: _ipv4_address(v, prefix=True, port_zero=True))]
"""Where a BACnet/IP stack binds: IP[/prefix][:port], port 0 for any free port."""


def _host(value: str) -> str:
    if re.fullmatch(r"[0-9.]+", value):
        return _ipv4_address(value, prefix=False, port_zero=False)
    if not re.fullmatch(r"[A-Za-z0-9_.:%-]{1,253}", value):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return value


Host = Annotated[str, AfterValidator(_host)]
"""A host name, an IPv4 address or an IPv6 address, without a port."""
