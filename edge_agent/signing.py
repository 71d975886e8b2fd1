"""Ed25519 signatures: how the agent knows a command or a model comes from someone it trusts.

Keys in the configuration are public keys written as text, `ed25519:<base64 of the 32 raw bytes>`; the
private key stays with the signer (central, or whoever releases models) as a PEM file (PKCS#8, unencrypted).
A signature travels as base64 of its 64 raw bytes. Nothing here reads the configuration or files.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_PREFIX = "ed25519:"
SIGNATURE_BYTES = 64


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """A private key from its PEM text; ValueError says what is wrong with it."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"an {type(key).__name__}, not an Ed25519 key")  # noqa: TRY004 - one error type for callers
    return key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """`ed25519:<base64>`: the form the configuration takes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key from `ed25519:<base64>`; ValueError says what is wrong with it."""
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError(f"a public key starts with {PUBLIC_KEY_PREFIX!r} (made by `edge-agent keys new`)")
    try:
        raw = base64.b64decode(text.removeprefix(PUBLIC_KEY_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("the public key is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """The signature of `data`, as base64 text."""
    return base64.b64encode(key.sign(data)).decode()


def verify(keys: Iterable[Ed25519PublicKey], data: bytes, signature: str) -> bool:
    """True when `signature` (base64) over `data` is valid under one of `keys`."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != SIGNATURE_BYTES:
        return False
    for key in keys:
        try:
            key.verify(raw, data)
        except InvalidSignature:
            continue
        return True
    return False
