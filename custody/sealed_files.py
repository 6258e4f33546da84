"""A node's sealed files: ``<data-dir>/node-<i>/identity.sealed``.

Small and dependency-light, because ``custody init``'s HSM child process and
the node's start-up both need it. Files are written whole or not at all
(temp file, fsync, then link or rename) with mode 0600.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from signer_nodes.node.sealing import Sealer, identity_context
from signer_nodes.wire.identity import NodeIdentity

IDENTITY_FILE = "identity.sealed"
IDENTITY_KEY_ID = identity_context(1).key_id


def identity_path(data_dir: Path, node_id: int) -> Path:
    return data_dir / f"node-{node_id}" / IDENTITY_FILE


def write_new_file(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (temp file, fsync, link), mode 0600;
    ``FileExistsError`` if it exists."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_file(path: Path, old: bytes, new: bytes) -> bool:
    """Replace ``path``'s content ``old`` by ``new`` atomically; ``False`` if it
    no longer holds ``old``. Only maintenance commands write these files, one
    at a time, so the check and the rename need no lock between them."""
    try:
        if path.read_bytes() != old:
            return False
    except FileNotFoundError:
        return False
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def load_identity(sealer: Sealer, data_dir: Path, node_id: int) -> NodeIdentity:
    """Unseal node ``node_id``'s identity key (``SealingError`` if it does not open)."""
    blob = identity_path(data_dir, node_id).read_bytes()
    return NodeIdentity.from_bytes(sealer.unseal(blob, identity_context(node_id)))
