"""The only shape in which node secrets reach storage: sealed records.

What a store holds is a :class:`SealedRecord` whose ``blob`` came from
:meth:`hsm.sealer.Sealer.seal` (:func:`put_secret` / :func:`get_secret` seal and
unseal on the way). Backup, restore and rotation work on any
:class:`SealedStore`: the small interface a
node's persistence implements (the signer node's is
``custody.node_records.NodeShareStore``); :class:`SqliteSealedStore` is a
complete implementation (stdlib ``sqlite3``) used by the library's tests.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from hsm.errors import Code, HsmError
from hsm.sealer import RecordKind, SealContext, Sealer


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """One stored secret, sealed; safe to log (the blob is ciphertext).

    ``public`` is non-secret data that belongs with the secret (for a key
    share: its scheme and public key package). Stores keep it beside the
    blob; backups carry it in their authenticated manifest so a restore can
    rebuild the whole record.
    """

    kind: RecordKind
    key_id: str
    epoch: int
    blob: bytes
    format_version: int = 1
    public: bytes = b""

    def context(self, node_id: int) -> SealContext:
        return SealContext(node_id, self.key_id, self.epoch, self.kind, self.format_version)

    def __repr__(self) -> str:
        return (
            f"SealedRecord({self.kind.value}, {self.key_id!r}, epoch={self.epoch}, "
            f"{len(self.blob)} sealed bytes)"
        )


class SealedStore(Protocol):
    """Storage for one node's sealed records, keyed by (kind, key_id, epoch)."""

    @property
    def node_id(self) -> int: ...

    def get(self, kind: RecordKind, key_id: str, epoch: int) -> SealedRecord | None: ...

    def records(self, kinds: Collection[RecordKind] | None = None) -> list[SealedRecord]: ...

    def insert_all(self, records: Iterable[SealedRecord]) -> None:
        """Insert all or none; ``STORE_RECORD_EXISTS`` if any key is taken."""
        ...

    def replace(self, old: SealedRecord, new: SealedRecord) -> None:
        """Compare-and-swap on the blob; ``STORE_CONFLICT`` if it changed meanwhile."""
        ...

    def delete(self, record: SealedRecord) -> None: ...


class SqliteSealedStore:
    """:class:`SealedStore` in one SQLite file (WAL, one transaction per call)."""

    def __init__(self, path: Path, node_id: int) -> None:
        self._path = path
        self._node_id = node_id
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sealed_records (kind TEXT NOT NULL, "
            "key_id TEXT NOT NULL, epoch INTEGER NOT NULL, format_version INTEGER NOT NULL, "
            "blob BLOB NOT NULL, public BLOB NOT NULL DEFAULT x'', PRIMARY KEY (kind, key_id, epoch))"
        )

    def __repr__(self) -> str:
        return f"SqliteSealedStore({self._path}, node_id={self._node_id})"

    @property
    def node_id(self) -> int:
        return self._node_id

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _row(row: tuple[str, str, int, int, bytes, bytes]) -> SealedRecord:
        return SealedRecord(
            RecordKind(row[0]), row[1], row[2], bytes(row[4]), row[3], bytes(row[5])
        )

    def get(self, kind: RecordKind, key_id: str, epoch: int) -> SealedRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT kind, key_id, epoch, format_version, blob, public FROM sealed_records "
                "WHERE kind = ? AND key_id = ? AND epoch = ?",
                (kind.value, key_id, epoch),
            ).fetchone()
        return self._row(row) if row else None

    def records(self, kinds: Collection[RecordKind] | None = None) -> list[SealedRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, key_id, epoch, format_version, blob, public FROM sealed_records "
                "ORDER BY kind, key_id, epoch"
            ).fetchall()
        out = [self._row(r) for r in rows]
        return out if kinds is None else [r for r in out if r.kind in kinds]

    def insert_all(self, records: Iterable[SealedRecord]) -> None:
        with self._tx() as db:
            for r in records:
                try:
                    db.execute(
                        "INSERT INTO sealed_records VALUES (?, ?, ?, ?, ?, ?)",
                        (r.kind.value, r.key_id, r.epoch, r.format_version, r.blob, r.public),
                    )
                except sqlite3.IntegrityError:
                    raise HsmError(
                        Code.STORE_RECORD_EXISTS,
                        f"node {self._node_id} already has {r.kind.value} {r.key_id!r} "
                        f"epoch {r.epoch}",
                    ) from None

    def replace(self, old: SealedRecord, new: SealedRecord) -> None:
        if (old.kind, old.key_id, old.epoch) != (new.kind, new.key_id, new.epoch):
            raise ValueError("replace keeps the record key")
        with self._tx() as db:
            cur = db.execute(
                "UPDATE sealed_records SET blob = ?, format_version = ? WHERE kind = ? AND "
                "key_id = ? AND epoch = ? AND blob = ?",
                (new.blob, new.format_version, old.kind.value, old.key_id, old.epoch, old.blob),
            )
            if cur.rowcount != 1:
                raise HsmError(
                    Code.STORE_CONFLICT,
                    f"{old.kind.value} {old.key_id!r} epoch {old.epoch} changed concurrently",
                )

    def delete(self, record: SealedRecord) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM sealed_records WHERE kind = ? AND key_id = ? AND epoch = ?",
                (record.kind.value, record.key_id, record.epoch),
            )


def seal_record(
    sealer: Sealer,
    node_id: int,
    kind: RecordKind,
    key_id: str,
    epoch: int,
    plaintext: bytes,
    *,
    format_version: int = 1,
    public: bytes = b"",
) -> SealedRecord:
    ctx = SealContext(node_id, key_id, epoch, kind, format_version)
    return SealedRecord(kind, key_id, epoch, sealer.seal(plaintext, ctx), format_version, public)


def put_secret(
    sealer: Sealer,
    store: SealedStore,
    kind: RecordKind,
    key_id: str,
    epoch: int,
    plaintext: bytes,
    *,
    format_version: int = 1,
) -> SealedRecord:
    """Seal ``plaintext`` for ``store.node_id`` and insert it."""
    record = seal_record(
        sealer, store.node_id, kind, key_id, epoch, plaintext, format_version=format_version
    )
    store.insert_all([record])
    return record


def get_secret(
    sealer: Sealer, store: SealedStore, kind: RecordKind, key_id: str, epoch: int
) -> bytes:
    """Fetch and unseal; ``STORE_RECORD_NOT_FOUND`` if absent."""
    record = store.get(kind, key_id, epoch)
    if record is None:
        raise HsmError(
            Code.STORE_RECORD_NOT_FOUND,
            f"node {store.node_id} has no {kind.value} {key_id!r} epoch {epoch}",
        )
    return sealer.unseal(record.blob, record.context(store.node_id))


@dataclass(frozen=True, slots=True)
class RotationReport:
    active_version: int
    resealed: int
    unchanged: int
    vanished: int


def reseal_store(sealer: Sealer, store: SealedStore) -> RotationReport:
    """Bring every record under the active key, one compare-and-swap each.

    The node keeps serving meanwhile: old versions still unseal, and a record
    consumed or rewritten concurrently (a presignature used, a share refreshed)
    is re-read, or counted as ``vanished`` if it is gone. Safe to re-run after
    an interruption.
    """
    active = sealer.active_version
    resealed = unchanged = vanished = 0
    for record in store.records():
        current: SealedRecord | None = record
        while current is not None:
            if sealer.key_version_of(current.blob) == active:
                unchanged += 1
                break
            ctx = current.context(store.node_id)
            new = replace(current, blob=sealer.reseal(current.blob, ctx))
            try:
                store.replace(current, new)
                resealed += 1
                break
            except HsmError as exc:
                if exc.code != Code.STORE_CONFLICT:
                    raise
                current = store.get(current.kind, current.key_id, current.epoch)
        else:
            vanished += 1
    return RotationReport(active, resealed, unchanged, vanished)


def rotate_store(sealer: Sealer, store: SealedStore) -> RotationReport:
    """``custody hsm rotate``: new sealing key version, then :func:`reseal_store`."""
    sealer.rotate()
    return reseal_store(sealer, store)


def retire_old_keys(sealer: Sealer, stores: Iterable[SealedStore]) -> list[int]:
    """Destroy key versions no record in ``stores`` uses any more (never the
    active one); returns the destroyed versions."""
    in_use = {sealer.key_version_of(r.blob) for s in stores for r in s.records()}
    retired = [v for v in sealer.key_versions() if v != sealer.active_version and v not in in_use]
    for version in retired:
        sealer.destroy_key(version)
    return retired
