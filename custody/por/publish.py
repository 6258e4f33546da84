"""Publishing a snapshot: the store and the output directory, both or neither.

The files are written first into a private staging directory next to the
output (``proofs.build.write_outputs``: ``snapshot.json`` and one proof per
customer, ``docs/por-format.md`` section 6). The store then inserts the snapshot
in one transaction, and the staging directory is renamed into place *inside*
that transaction: if the rename fails the insert rolls back, and if the commit
fails the renamed directory is removed. Either way nothing is half-published.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from custody.por.store import SnapshotStore
from proofs.build import BuiltSnapshot, write_outputs
from proofs.errors import PorInputError, ReasonCode


def check_output_dir(out_dir: Path) -> None:
    """Refuse early (before signing anything) an output that exists or has no parent."""
    if out_dir.exists():
        raise PorInputError(ReasonCode.IO, f"{out_dir} exists; refusing to overwrite")
    if not out_dir.parent.is_dir():
        raise PorInputError(ReasonCode.IO, f"{out_dir.parent} is not a directory")


def publish(built: BuiltSnapshot, store: SnapshotStore, out_dir: Path | str) -> Path:
    """Store ``built`` and write its files to ``out_dir`` (which must not exist)."""
    out = Path(out_dir)
    check_output_dir(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.publish-", dir=out.parent))
    except OSError as exc:
        raise PorInputError(ReasonCode.IO, f"cannot write in {out.parent}: {exc}") from None
    moved = False
    try:
        write_outputs(built, staging / "out")
        with store.publishing(built):
            (staging / "out").rename(out)
            moved = True
    except BaseException:
        if moved:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
