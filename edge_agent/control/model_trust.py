"""Whether a model file may be used at all: a valid signature by a key the configuration trusts, or an
explicit permission to run unsigned models.

The signature is detached, `<model>.sig` beside the model: one line, `ed25519:<signer's public key>
<base64 signature over the model file's exact bytes>` (`edge-agent model sign` writes it). The signer's key
in the file is only a hint for the error message: trust comes from verifying against the configured keys.
The model's version and fingerprint are metadata inside the file, so the signature covers them too.

With `allow_unsigned`, a model with no `.sig` file is used (status says so); a `.sig` file that does not
verify is refused all the same: it proves the file changed after it was signed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent import signing
from edge_agent.errors import ModelError

SIGNATURE_SUFFIX = ".sig"
MAX_SIGNATURE_FILE = 1024  # bytes


@dataclass(frozen=True, slots=True)
class ModelTrust:
    """What the configuration trusts: public keys (`ed25519:<base64>`) and whether unsigned models run."""

    keys: tuple[str, ...] = ()
    allow_unsigned: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a model file may be used: `signer`, the trusted key whose signature verified; None when the file
    has no signature and unsigned models are allowed."""

    sha256: str  # of the file's exact bytes: two files with the same version but other weights differ here
    signer: str | None

    def describe(self) -> str:
        if self.signer is None:
            return "UNSIGNED, allowed by [control] allow_unsigned_model"
        return f"signed by {self.signer}"


def signature_path(model: Path) -> Path:
    return model.with_name(model.name + SIGNATURE_SUFFIX)


def signature_line(signer: str, signature: str) -> str:
    """The `.sig` file's content."""
    return f"{signer} {signature}\n"


def check(model: Path, data: bytes, trust: ModelTrust) -> Verdict:
    """The verdict on `data`, the bytes read from `model`; ModelError saying why it may not be used."""
    path, digest = str(model), hashlib.sha256(data).hexdigest()
    sig_file = signature_path(model)
    try:
        with sig_file.open("rb") as sig:
            raw = sig.read(MAX_SIGNATURE_FILE + 1)  # a signature line is ~150 bytes: never read a big file
        text = raw.decode("ascii") if len(raw) <= MAX_SIGNATURE_FILE else ""
    except FileNotFoundError:
        if trust.allow_unsigned:
            return Verdict(digest, None)
        raise ModelError(
            path,
            f"unsigned: no signature file {sig_file.name} (sign it with `edge-agent model sign`, or set"
            " [control] allow_unsigned_model = true)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(path, f"signature file {sig_file.name} cannot be read ({exc})") from exc
    signer, signature = _parse(text, sig_file.name, path)
    if not trust.keys:
        by = signer or "an unnamed key"
        raise ModelError(path, f"signed by {by}, but [control] model_keys trusts no key")
    for key_text in trust.keys:
        if signing.verify([_public_key(key_text, path)], data, signature):
            return Verdict(digest, key_text)
    raise ModelError(path, _why_not(signer, data, signature, trust, digest))


def _parse(text: str, name: str, path: str) -> tuple[str | None, str]:
    """(signer hint, signature) from `ed25519:<key> <signature>`, or a bare signature."""
    words = text.split()
    if len(words) == 1:
        return None, words[0]
    if len(words) == 2 and words[0].startswith(signing.PUBLIC_KEY_PREFIX):
        return words[0], words[1]
    raise ModelError(path, f"signature file {name} is not one line 'ed25519:<key> <signature>'")


def _public_key(text: str, path: str) -> Ed25519PublicKey:
    try:
        return signing.load_public_key(text)
    except ValueError as exc:
        raise ModelError(path, f"[control] model_keys {text!r}: {exc}") from None


def _why_not(signer: str | None, data: bytes, signature: str, trust: ModelTrust, digest: str) -> str:
    """No trusted key verifies: the file changed after signing, or the signer is not trusted."""
    changed = f"changed after it was signed (sha256 now {digest})"
    untrusted = "a key [control] model_keys does not trust"
    if signer is None:
        return f"the file does not match its signature: {changed}, or signed by {untrusted}"
    if signer in trust.keys:
        return f"the file does not match its signature by {signer}: {changed}"
    try:
        signed_this = signing.verify([signing.load_public_key(signer)], data, signature)
    except ValueError:
        signed_this = False
    if signed_this:
        return f"signed by {signer}, {untrusted}"
    return f"the file does not match its signature by {signer}, {untrusted} either: {changed}"
