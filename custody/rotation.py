"""``custody hsm rotate``: re-seal all of a node's material under a new token key.

Every sealed value a node keeps lives in a database column whose name starts
with ``sealed_`` (key shares, pool nonces, presignatures, whatever the node
adds later) or in its identity file. A sealed blob names its key version and
carries its :class:`~hsm.sealer.SealContext` in its authenticated header, so
re-sealing needs no knowledge of the table: unseal under the header's
context (which authenticates it), seal again under the new key, and swap with
a compare-and-swap on the old value.

The node keeps serving while this runs, and so do all other nodes:

1. create key version ``v+1`` in the node's token;
2. re-seal every value not yet under ``v+1`` (a value the node consumes or
   rewrites meanwhile fails its compare-and-swap and is looked at again);
3. wait ``settle`` seconds: a running node re-lists its keys every
   :data:`~signer_nodes.node.sealing.KEY_REFRESH_SECONDS`, so afterwards it
   seals new values under ``v+1`` only; then re-seal what it sealed under
   ``v`` in between, until a pass finds nothing;
4. destroy the old versions no value uses any more.

A value that fails authentication is left as it is and keeps its key alive;
the rotation then ends with ``ROTATION_INCOMPLETE`` naming how many.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, Table, and_, select, update
from sqlalchemy.engine import Engine

from custody.config import ClusterConfig
from custody.sealed_files import identity_path, replace_file
from hsm.errors import Code, HsmError
from hsm.sealer import MAGIC, SealedBlob, Sealer
from signer_nodes.db import make_engine
from signer_nodes.node.sealing import KEY_REFRESH_SECONDS

SEALED_PREFIX = "sealed_"
#: Default wait between the first pass and retiring old keys: longer than a
#: running node needs to notice the new key.
DEFAULT_SETTLE = 3 * KEY_REFRESH_SECONDS
MAX_PASSES = 5


@dataclass(frozen=True, slots=True)
class SealedCell:
    """One sealed value: a database cell (``table``, ``column``, primary key) or
    the identity file (``table`` is ``None``)."""

    table: Table | None
    column: str
    key: tuple[tuple[str, Any], ...]
    blob: bytes


@dataclass(frozen=True, slots=True)
class RotationReport:
    node_id: int
    active_version: int
    resealed: int
    retired: tuple[int, ...]


class NodeMaterial:
    """Every sealed value of node ``node_id``: database cells and the identity file."""

    def __init__(self, config: ClusterConfig, node_id: int) -> None:
        config.node(node_id)
        self.node_id = node_id
        self._identity = identity_path(config.data_dir, node_id)
        self._engine: Engine = make_engine(config.node_database_url(node_id))
        metadata = MetaData()
        metadata.reflect(self._engine)
        self._tables = [
            (t, [c.name for c in t.columns if c.name.startswith(SEALED_PREFIX)])
            for t in metadata.sorted_tables
            if t.primary_key.columns
        ]

    def close(self) -> None:
        self._engine.dispose()

    def cells(self) -> list[SealedCell]:
        out: list[SealedCell] = []
        with self._engine.connect() as conn:
            for table, columns in self._tables:
                pk = list(table.primary_key.columns)
                for name in columns:
                    col = table.c[name]
                    for row in conn.execute(select(*pk, col).where(col.is_not(None))):
                        key = tuple((c.name, row[i]) for i, c in enumerate(pk))
                        out.append(SealedCell(table, name, key, bytes(row[-1])))
        if self._identity.exists():
            out.append(SealedCell(None, "identity", (), self._identity.read_bytes()))
        return out

    def swap(self, cell: SealedCell, new: bytes) -> bool:
        """Compare-and-swap ``cell`` to ``new``; ``False`` if it changed meanwhile."""
        if cell.table is None:
            return replace_file(self._identity, cell.blob, new)
        table = cell.table
        where = and_(*(table.c[n] == v for n, v in cell.key), table.c[cell.column] == cell.blob)
        with self._engine.begin() as conn:
            result = conn.execute(update(table).where(where).values({cell.column: new}))
            return bool(result.rowcount == 1)

    def usage(self) -> Counter[str]:
        """How many sealed values each key label holds (``"?"``: not a sealed blob)."""
        labels: Counter[str] = Counter()
        for cell in self.cells():
            labels[_label(cell.blob)] += 1
        return labels


def _label(blob: bytes) -> str:
    if not blob.startswith(MAGIC):
        return "?"
    try:
        return SealedBlob.parse(blob).key_label
    except HsmError:
        return "?"


def _pass(sealer: Sealer, material: NodeMaterial) -> tuple[int, int]:
    """Re-seal what is not under the active key; returns (resealed, unopenable)."""
    active = sealer.active_version
    resealed = failed = 0
    for cell in material.cells():
        try:
            version = sealer.key_version_of(cell.blob)
            if version == active:
                continue
            context = SealedBlob.parse(cell.blob).context
            if context.node_id != material.node_id:
                raise HsmError(Code.HSM_CONTEXT_MISMATCH, "sealed for another node")
            new = sealer.reseal(cell.blob, context)
        except HsmError as exc:
            if exc.code not in (
                Code.HSM_SEALED_BLOB_INVALID,
                Code.HSM_CONTEXT_MISMATCH,
                Code.HSM_KEY_NOT_FOUND,
            ):
                raise
            failed += 1
            continue
        if material.swap(cell, new):
            resealed += 1
    return resealed, failed


def rotate_node(
    config: ClusterConfig, sealer: Sealer, node_id: int, *, settle: float = DEFAULT_SETTLE
) -> RotationReport:
    """Rotate node ``node_id``'s sealing key (``sealer`` is logged in to its token)."""
    old = set(sealer.key_versions())
    if not old:
        raise HsmError(Code.HSM_KEY_NOT_FOUND, f"token {sealer.token_label!r} has no sealing key")
    material = NodeMaterial(config, node_id)
    try:
        active = sealer.rotate()
        resealed, failed = _pass(sealer, material)
        time.sleep(settle)
        for _ in range(MAX_PASSES):
            more, failed = _pass(sealer, material)
            resealed += more
            if more == 0:
                break
        in_use = {sealer.key_version_of(c.blob) for c in material.cells() if _label(c.blob) != "?"}
    finally:
        material.close()
    if failed:
        raise HsmError(
            Code.ROTATION_INCOMPLETE,
            f"node {node_id}: {failed} sealed values fail authentication and keep their old "
            f"key; now under v{active}: {resealed} re-sealed; old keys kept",
        )
    stale = sorted(v for v in old if v in in_use)
    if stale:
        raise HsmError(
            Code.ROTATION_INCOMPLETE,
            f"node {node_id}: values still appear under key versions {stale}; run it again",
        )
    for version in sorted(old):
        sealer.destroy_key(version)
    return RotationReport(node_id, active, resealed, tuple(sorted(old)))
