"""`keys new` and `model sign`: the Ed25519 keys that models (and central's commands) are signed with.

`keys new NAME` writes NAME.pem, the private key (mode 0600, never overwritten), and NAME.pub, the public
key line the configuration trusts; it prints that line on stdout. `model sign --key NAME.pem MODEL` writes
MODEL.sig beside the model (control/model_trust.py says what it holds and how the agent checks it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from edge_agent import signing
from edge_agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, JsonOption, echo_json
from edge_agent.cli.data import model_app
from edge_agent.errors import ModelError

keys_app = typer.Typer(help="Make Ed25519 keys for signing models and commands.", no_args_is_help=True)


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add `keys` to the edge-agent app, and `sign` to its `model` group."""
    app.add_typer(keys_app, name="keys")
    model_app.command("sign")(model_sign)


def _fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    typer.echo(f"edge-agent: {message}", err=True)
    return typer.Exit(code)


@keys_app.command("new")
def keys_new(
    name: Annotated[Path, typer.Argument(help="Writes NAME.pem (private, 0600) and NAME.pub (public).")],
    as_json: JsonOption = False,
) -> None:
    """Make a key pair: print the public key line (`ed25519:...`) for the configuration's trusted keys;
    the private key stays with whoever signs. Never overwrites a key."""
    private, public = Path(f"{name}.pem"), Path(f"{name}.pub")
    for existing in (private, public):
        if existing.exists():
            raise _fail(f"{existing} exists: keys are never overwritten (remove it, or choose another name)")
    key = signing.new_private_key()
    line = signing.public_key_text(key)
    try:
        _write_new(private, signing.private_key_pem(key), 0o600)
        _write_new(public, f"{line}\n".encode(), 0o644)
    except FileExistsError as exc:
        raise _fail(f"{exc.filename} exists: keys are never overwritten") from None
    except OSError as exc:
        raise _fail(f"cannot write {exc.filename} ({exc.strerror or exc})", EXIT_FAILURE) from None
    if as_json:
        echo_json({"public_key": line, "private_key_file": str(private), "public_key_file": str(public)})
        return
    typer.echo(f"private key {private} (mode 0600: keep it with the signer); public key {public}", err=True)
    typer.echo('trust it in the configuration, e.g. [control] model_keys = ["<the line below>"]', err=True)
    typer.echo(line)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (no moment with wider permissions); FileExistsError if any."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def model_sign(
    model: Annotated[Path, typer.Argument(help="The ONNX model file to sign.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="Private key (NAME.pem from `keys new`).")],
    as_json: JsonOption = False,
) -> None:
    """Sign the model file's exact bytes: writes MODEL.sig beside it, which the agent checks against
    [control] model_keys before it uses the model."""
    from edge_agent.cli.model_card import describe
    from edge_agent.control.model_trust import signature_line, signature_path

    try:
        private = signing.load_private_key(key.read_bytes())
    except OSError as exc:
        raise _fail(f"--key {key}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise _fail(f"--key {key}: {exc}") from None
    try:
        card = describe(model)  # refuses what is not an ONNX model: signing it would vouch for nothing
        data = model.read_bytes()
    except ModelError as error:
        raise _fail(str(error)) from None
    except OSError as exc:
        raise _fail(f"model {model}: cannot be read ({exc.strerror or exc})") from None
    signer = signing.public_key_text(private)
    target = signature_path(model)
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.write_text(signature_line(signer, signing.sign(private, data)), encoding="ascii")
        temporary.replace(target)
    except OSError as exc:
        raise _fail(f"cannot write {target} ({exc.strerror or exc})", EXIT_FAILURE) from None
    if as_json:
        echo_json(
            {"model": str(model), "version": card.version, "sha256": card.sha256, "signed_by": signer,
             "signature_file": str(target)}
        )  # fmt: skip
        return
    typer.echo(f"signed {model} (version {card.version or '?'}, sha256 {card.sha256}) by {signer}")
    typer.echo(f"wrote {target}")
