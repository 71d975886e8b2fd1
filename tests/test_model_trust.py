"""model_trust.check, the forms of `.sig` file besides `edge-agent model sign`'s: a bare signature (made by
another tool over the same bytes), and files that are not signatures at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent import signing
from edge_agent.control.model_trust import ModelTrust, check, signature_path
from edge_agent.errors import ModelError
from tests.onnx_models import SIGNER, TRUSTED

TRUST = ModelTrust(keys=(TRUSTED,))


def test_a_bare_signature_over_the_exact_bytes_is_accepted_and_names_the_trusted_key(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"any bytes: the signature covers the file, not its meaning")
    signature_path(model).write_text(signing.sign(SIGNER, model.read_bytes()) + "\n")
    assert check(model, model.read_bytes(), TRUST).signer == TRUSTED
    with pytest.raises(ModelError, match=r"does not match its signature: changed after it was signed .* or"):
        check(model, model.read_bytes() + b"\0", TRUST)  # one byte more


@pytest.mark.parametrize(
    "text",
    ["", "two words", "ed25519:AAAA sig extra", "A" * 5000],
    ids=["empty", "no-key-prefix", "three-words", "too-long"],
)
def test_a_signature_file_that_is_not_one_is_refused_naming_it(tmp_path: Path, text: str) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    signature_path(model).write_text(text)
    with pytest.raises(ModelError) as refused:
        check(model, b"model", ModelTrust(keys=(TRUSTED,), allow_unsigned=True))
    assert refused.value.reason == "signature file m.onnx.sig is not one line 'ed25519:<key> <signature>'"
