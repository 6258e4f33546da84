"""Published snapshots, persisted so that proofs can be issued again at any time.

Three tables in the coordinator's database (SQLite or PostgreSQL), written in one
transaction per snapshot, so a snapshot is either fully published or absent:

* ``por_snapshots``: the published ``snapshot.json`` byte for byte (its service
  signature covers exactly those bytes) and the fields listings need;
* ``por_customers``: per customer its leaf index, secret salt and balances, keyed
  by ``SHA-256(customer_id)`` (ids may be 1 KiB; the digest is a fixed-width key);
* ``por_tree_pages``: the tree's nodes (hash and big-endian sum vector, as in
  ``docs/por-format.md`` section 3), ``PAGE_NODES`` per row, every level below the
  root. A proof needs one sibling per level, so issuing it reads ``depth`` pages
  instead of rebuilding a tree of a million leaves.

Nothing that leaves the store is trusted blindly: :meth:`SnapshotStore.proof`
recomputes the root from the proof and compares it with the published snapshot
before returning it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    and_,
    insert,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from custody.por.errors import SnapshotCode, SnapshotError
from proofs import encoding as enc
from proofs.build import BuiltSnapshot
from proofs.errors import PorError
from proofs.inclusion import InclusionProof, PathNode, verify_inclusion
from proofs.snapshot import Snapshot, canonical_json
from proofs.verifier import parse_json
from signer_nodes.db import TransactionalStore, utcnow

PAGE_NODES = 256
INSERT_CHUNK = 5000
DOCUMENT_CACHE = 64  # parsed snapshots kept for proof checks


class Base(DeclarativeBase):
    pass


class SnapshotRow(Base):
    __tablename__ = "por_snapshots"
    snapshot_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    cutoff: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[str] = mapped_column(String(20))
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_count: Mapped[int] = mapped_column(BigInteger)
    assets: Mapped[str] = mapped_column(Text)  # comma-separated; asset codes have no comma
    service_public_key: Mapped[bytes] = mapped_column(LargeBinary)
    document: Mapped[bytes] = mapped_column(LargeBinary)  # snapshot.json as published
    published_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class CustomerRow(Base):
    __tablename__ = "por_customers"
    snapshot_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("por_snapshots.snapshot_id"), primary_key=True
    )
    id_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    leaf_index: Mapped[int] = mapped_column(BigInteger)
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    balances: Mapped[bytes] = mapped_column(LargeBinary)  # u64 big-endian per asset


class TreePageRow(Base):
    __tablename__ = "por_tree_pages"
    snapshot_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("por_snapshots.snapshot_id"), primary_key=True
    )
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    page: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    nodes: Mapped[bytes] = mapped_column(LargeBinary)  # PAGE_NODES x (hash || sums)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedSnapshot:
    """A stored snapshot as listed: its identifying fields, not its document."""

    snapshot_id: str
    cutoff: str
    created_at: str
    root_hash: bytes
    leaf_count: int
    assets: tuple[str, ...]
    service_public_key: bytes
    published_at: dt.datetime


def _id_hash(customer_id: str) -> bytes:
    return hashlib.sha256(customer_id.encode("utf-8")).digest()


def _published(row: Any) -> PublishedSnapshot:
    at = row.published_at
    return PublishedSnapshot(
        snapshot_id=row.snapshot_id,
        cutoff=row.cutoff,
        created_at=row.created_at,
        root_hash=bytes(row.root_hash),
        leaf_count=int(row.leaf_count),
        assets=tuple(row.assets.split(",")),
        service_public_key=bytes(row.service_public_key),
        published_at=at if at.tzinfo else at.replace(tzinfo=dt.UTC),  # SQLite drops the zone
    )


_SUMMARY = (
    SnapshotRow.snapshot_id,
    SnapshotRow.cutoff,
    SnapshotRow.created_at,
    SnapshotRow.root_hash,
    SnapshotRow.leaf_count,
    SnapshotRow.assets,
    SnapshotRow.service_public_key,
    SnapshotRow.published_at,
)


class StoreCorruptError(Exception):
    """A stored proof does not verify against its published snapshot."""


class SnapshotStore(TransactionalStore):
    """Published snapshots in the coordinator database (its own tables and metadata)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "coordinator")
        self._documents: dict[str, Snapshot] = {}  # immutable once published

    # -- publishing -----------------------------------------------------------------

    @contextmanager
    def publishing(self, built: BuiltSnapshot) -> Iterator[None]:
        """Insert a snapshot in one transaction; commit when the ``with`` body succeeds.

        The caller finishes its own side effect (moving the output files into place)
        inside the block, so that a failure there rolls the publication back.
        Raises :class:`SnapshotError` ``POR_SNAPSHOT_EXISTS`` for a published id.
        """
        snap = built.snapshot
        try:
            with self.transaction() as s:
                if s.get(SnapshotRow, snap.snapshot_id) is not None:
                    raise _exists(snap.snapshot_id)
                s.add(
                    SnapshotRow(
                        snapshot_id=snap.snapshot_id,
                        cutoff=snap.cutoff,
                        created_at=snap.created_at,
                        root_hash=snap.root_hash,
                        leaf_count=snap.leaf_count,
                        assets=",".join(snap.assets),
                        service_public_key=snap.service_public_key,
                        document=canonical_json(built.raw) + b"\n",
                    )
                )
                s.flush()
                self._insert_customers(s, built)
                self._insert_pages(s, built)
                yield
        except IntegrityError:
            raise _exists(snap.snapshot_id) from None

    def publish(self, built: BuiltSnapshot) -> None:
        with self.publishing(built):
            pass

    @staticmethod
    def _insert_customers(s: Session, built: BuiltSnapshot) -> None:
        ids = built.liabilities.customer_ids
        balances = built.liabilities.balances.astype(">u8")
        position = built.tree.position
        sid = built.snapshot.snapshot_id
        for start in range(0, len(ids), INSERT_CHUNK):
            stop = min(start + INSERT_CHUNK, len(ids))
            s.execute(
                insert(CustomerRow),
                [
                    {
                        "snapshot_id": sid,
                        "id_hash": _id_hash(ids[r]),
                        "customer_id": ids[r],
                        "leaf_index": int(position[r]),
                        "salt": built.salts[32 * r : 32 * r + 32],
                        "balances": balances[r].tobytes(),
                    }
                    for r in range(start, stop)
                ],
            )

    @staticmethod
    def _insert_pages(s: Session, built: BuiltSnapshot) -> None:
        tree, sid = built.tree, built.snapshot.snapshot_id
        rows = []
        for level in range(tree.depth):
            nodes = np.concatenate([tree.hashes[level], tree.sums_be[level]], axis=1)
            for page in range(0, nodes.shape[0], PAGE_NODES):
                rows.append(
                    {
                        "snapshot_id": sid,
                        "level": level,
                        "page": page // PAGE_NODES,
                        "nodes": nodes[page : page + PAGE_NODES].tobytes(),
                    }
                )
                if len(rows) == INSERT_CHUNK:
                    s.execute(insert(TreePageRow), rows)
                    rows = []
        if rows:
            s.execute(insert(TreePageRow), rows)

    # -- reading ----------------------------------------------------------------------

    def list_snapshots(
        self, limit: int, after: str | None = None
    ) -> list[PublishedSnapshot] | None:
        """Up to ``limit`` snapshots, newest first, after the snapshot id ``after``.

        Returns ``None`` if ``after`` names no published snapshot (a bad page token).
        Keyset pagination: publishing while a client pages cannot shift or repeat entries.
        """
        with self.transaction() as s:
            query = select(*_SUMMARY)
            if after is not None:
                anchor = s.get(SnapshotRow, after)
                if anchor is None:
                    return None
                query = query.where(
                    or_(
                        SnapshotRow.published_at < anchor.published_at,
                        and_(
                            SnapshotRow.published_at == anchor.published_at,
                            SnapshotRow.snapshot_id < anchor.snapshot_id,
                        ),
                    )
                )
            query = query.order_by(
                SnapshotRow.published_at.desc(), SnapshotRow.snapshot_id.desc()
            ).limit(limit)
            return [_published(r) for r in s.execute(query)]

    def get_snapshot(self, snapshot_id: str | None) -> tuple[PublishedSnapshot, bytes] | None:
        """A snapshot and its published ``snapshot.json`` bytes; ``None``: the newest."""
        with self.transaction() as s:
            query = select(*_SUMMARY, SnapshotRow.document)
            if snapshot_id is None:
                query = query.order_by(
                    SnapshotRow.published_at.desc(), SnapshotRow.snapshot_id.desc()
                ).limit(1)
            else:
                query = query.where(SnapshotRow.snapshot_id == snapshot_id)
            row = s.execute(query).first()
            return None if row is None else (_published(row), bytes(row.document))

    def proof(
        self, snapshot_id: str | None, customer_id: str
    ) -> tuple[PublishedSnapshot, InclusionProof | None] | None:
        """The customer's inclusion proof, checked against the published snapshot.

        ``None`` if there is no such snapshot; ``(snapshot, None)`` if the customer
        has no leaf in it. Raises :class:`StoreCorruptError` if the stored data does
        not reproduce the published root and totals.
        """
        found = self.get_snapshot(snapshot_id)
        if found is None:
            return None
        published, document = found
        snapshot = self._document(published.snapshot_id, document)
        with self.transaction() as s:
            cust = s.get(CustomerRow, (published.snapshot_id, _id_hash(customer_id)))
            if cust is None or cust.customer_id != customer_id:
                return published, None
            path = self._path(s, published.snapshot_id, int(cust.leaf_index), snapshot)
            proof = InclusionProof(
                version=snapshot.version,
                snapshot_id=snapshot.snapshot_id,
                root_hash=snapshot.root_hash,
                assets=snapshot.assets,
                unit_exponents=snapshot.unit_exponents,
                leaf_count=snapshot.leaf_count,
                customer_id=customer_id,
                salt=bytes(cust.salt),
                balances=_decode_u64(bytes(cust.balances)),
                leaf_index=int(cust.leaf_index),
                path=path,
            )
        try:
            verify_inclusion(proof, snapshot)
        except PorError as exc:
            raise StoreCorruptError(f"{snapshot.snapshot_id}: {exc.code.value}") from None
        return published, proof

    def _document(self, snapshot_id: str, document: bytes) -> Snapshot:
        cached = self._documents.get(snapshot_id)
        if cached is None:
            try:
                cached = Snapshot.from_json(parse_json(document))
            except PorError as exc:
                raise StoreCorruptError(f"{snapshot_id}: {exc.code.value}") from None
            if len(self._documents) >= DOCUMENT_CACHE:
                self._documents.clear()
            self._documents[snapshot_id] = cached
        return cached

    @staticmethod
    def _path(
        s: Session, snapshot_id: str, leaf_index: int, snapshot: Snapshot
    ) -> tuple[PathNode, ...]:
        depth = enc.tree_depth(snapshot.leaf_count)
        width = enc.HASH_LEN + 8 * len(snapshot.assets)
        siblings = [(leaf_index >> level) ^ 1 for level in range(depth)]
        wanted = {(level, sib // PAGE_NODES) for level, sib in enumerate(siblings)}
        if not wanted:
            return ()
        pages = {
            (r.level, int(r.page)): bytes(r.nodes)
            for r in s.execute(
                select(TreePageRow.level, TreePageRow.page, TreePageRow.nodes).where(
                    TreePageRow.snapshot_id == snapshot_id,
                    or_(
                        *(
                            and_(TreePageRow.level == lv, TreePageRow.page == pg)
                            for lv, pg in wanted
                        )
                    ),
                )
            )
        }
        path = []
        for level, sib in enumerate(siblings):
            page = pages.get((level, sib // PAGE_NODES))
            offset = (sib % PAGE_NODES) * width
            if page is None or len(page) < offset + width:
                raise StoreCorruptError(f"{snapshot_id}: tree page missing at level {level}")
            node = page[offset : offset + width]
            path.append(PathNode(hash=node[: enc.HASH_LEN], sums=_decode_u64(node[enc.HASH_LEN :])))
        return tuple(path)


def _decode_u64(raw: bytes) -> tuple[int, ...]:
    return tuple(int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8))


def _exists(snapshot_id: str) -> SnapshotError:
    return SnapshotError(
        SnapshotCode.SNAPSHOT_EXISTS, f"snapshot {snapshot_id} is already published"
    )
