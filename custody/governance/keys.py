"""Ed25519 key files for officers, initiators, approvers and the coordinator's audit key.

A private key file is PKCS#8 PEM, written with mode 0600 (through
:func:`custody.pki.write_private`, like every private key ``custody init`` writes); next to
it, ``<name>.pub`` holds the raw public key as 64 lower-case hex characters, the form policy
documents use (``docs/policy-format.md`` §1). The private key never appears in a repr, log
or error message.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from custody.pki import write_private
from policy._codec import public_bytes


class KeyFileError(Exception):
    """A key file is missing or is not an Ed25519 key; ``code`` is ``KEY_FILE_INVALID``."""

    code = "KEY_FILE_INVALID"


def public_path(path: Path) -> Path:
    return path.with_suffix(".pub")


def write_key(path: Path, key: Ed25519PrivateKey) -> Path:
    """Write ``key`` (0600) and its ``.pub`` file; returns the private key path."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    public_path(path).write_text(public_bytes(key).hex() + "\n")
    return path


def new_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    write_key(path, key)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A ``.pub`` file (64 hex characters)."""
    try:
        raw = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such public key file") from None
    except ValueError:
        raise KeyFileError(f"{path}: not hex") from None
    if len(raw) != 32:
        raise KeyFileError(f"{path}: an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def ensure_audit_key(path: Path) -> Ed25519PrivateKey:
    """The coordinator's audit-checkpoint key: load ``path`` or create it (0600) with its
    ``.pub`` next to it. Auditors verify checkpoints with the published ``.pub`` alone."""
    if path.exists():
        key = load_private_key(path)
        if not public_path(path).exists():
            public_path(path).write_text(public_bytes(key).hex() + "\n")
        return key
    return new_key(path)
