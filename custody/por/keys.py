"""The service's Ed25519 snapshot-signing key (``docs/por-format.md`` section 5).

It is a single-holder key by design: it only attests "the service published this
snapshot"; what the snapshot claims is checked by the threshold signatures of the
custody keys and by the tree. Its public key is what auditors pin
(``custody-por audit --service-key``), so it must stay the same across
snapshots: :func:`ensure_snapshot_key` creates it once and then only loads it.

The file holds the 32-byte seed as 64 hex characters (the format of
``custody-por keygen``), mode 0600; a file readable by others is refused.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from custody.por.errors import SnapshotCode, SnapshotError
from proofs.build import ServiceSigner
from proofs.errors import PorError

KEY_FILE = "por-snapshot.key"


def default_key_path(coordinator_dir: Path) -> Path:
    return coordinator_dir / KEY_FILE


def ensure_snapshot_key(path: Path | str) -> ServiceSigner:
    """Load the snapshot key at ``path``, creating it first if there is none.

    Creation is atomic and race-free: the seed is written to a private temporary
    file which is then hard-linked into place, so a concurrent creator or a crash
    can never leave a partial key, and the first key linked wins.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_bytes(32).hex() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another creator won: use theirs
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SnapshotError(
            SnapshotCode.SERVICE_KEY_INVALID, f"{path} is accessible by others; chmod 600 it"
        )
    try:
        return ServiceSigner.from_file(path)
    except PorError as exc:
        raise SnapshotError(SnapshotCode.SERVICE_KEY_INVALID, exc.detail) from None
