"""The node's database: key shares, the pool of single-use signing material
(FROST nonces and DKLs23 presignatures), and signing history.

SQLAlchemy 2 on SQLite (WAL) or PostgreSQL. Secrets are stored only as
sealed blobs (:mod:`signer_nodes.node.sealing`).

The single-use guarantee lives here: :meth:`NodeStore.sign_with_nonce` marks a
pool entry consumed *and erases its sealed secret* in the same transaction that
computes the share and records the signing request; the share leaves the node
only after that commit. A crash before the commit leaves the entry unused and
nothing released; a crash after it loses the entry, never reuses it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from signer_nodes.db import TransactionalStore, utcnow
from signer_nodes.prepared import run


class Base(DeclarativeBase):
    pass


class KeyShareRow(Base):
    __tablename__ = "key_shares"
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scheme: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(128), default="")  # the key's owner (policy)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    sealed_key_package: Mapped[bytes] = mapped_column(LargeBinary)
    public_key_package: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NonceRow(Base):
    """A pool entry: FROST nonces (``commitments`` = SigningCommitments) or a
    DKLs23 presignature (``commitments`` = its PresignaturePublic)."""

    __tablename__ = "nonces"
    nonce_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("key_shares.key_id"), index=True)
    commitments: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_nonces: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="unused", index=True)
    request_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SignRecordRow(Base):
    """The node's own signing history (also the input of velocity policy)."""

    __tablename__ = "sign_records"
    request_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    package_digest: Mapped[bytes] = mapped_column(LargeBinary)
    nonce_id: Mapped[str] = mapped_column(String(80))
    signature_share: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExcludedPeerRow(Base):
    """A peer this node will not run DKLs23 sessions with for a key: after an
    OT-extension consistency failure, each further session could leak one bit of
    the node's correlation secret Delta (DKLs23 abort rule; docs/dkls23-review.md).
    Cleared only by a reshare that leaves the peer out."""

    __tablename__ = "excluded_peers"
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    peer: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


_KEYS = cast(Table, KeyShareRow.__table__)
_NONCES = cast(Table, NonceRow.__table__)
_RECORDS = cast(Table, SignRecordRow.__table__)

# The hot path's statements, built once: SQLAlchemy Core on the session's connection
# (no unit of work, no identity map) and a cache key memoized on each statement, so a
# share costs four short statements and the commit. Bind names differ from column names
# (an UPDATE reserves those for its SET clause).
_READ_KEY = select(
    _KEYS.c.key_id,
    _KEYS.c.scheme,
    _KEYS.c.tenant,
    _KEYS.c.epoch,
    _KEYS.c.sealed_key_package,
    _KEYS.c.public_key_package,
).where(_KEYS.c.key_id == bindparam("b_key_id"))
_SIGNED = select(_RECORDS.c.request_id).where(_RECORDS.c.request_id == bindparam("b_request_id"))
_POOL_ENTRY = (
    select(_NONCES.c.state, _NONCES.c.commitments, _NONCES.c.sealed_nonces)
    .where(_NONCES.c.nonce_id == bindparam("b_nonce_id"), _NONCES.c.key_id == bindparam("b_key_id"))
    .with_for_update()
)
_CONSUME = (
    update(_NONCES)
    .where(_NONCES.c.nonce_id == bindparam("b_nonce_id"), _NONCES.c.state == "unused")
    .values(state="consumed", sealed_nonces=None, request_id=bindparam("b_request_id"))
)
_ADD_ENTRY = insert(_NONCES)
_ADD_RECORD = insert(_RECORDS)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key share row as read (the share itself still sealed)."""

    key_id: str
    scheme: str
    tenant: str
    epoch: int
    sealed_key_package: bytes = field(repr=False)
    public_key_package: bytes = field(repr=False)


class StoreError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NodeStore(TransactionalStore):
    def __init__(self, url: str) -> None:
        super().__init__(url, "node")

    # -- keys ------------------------------------------------------------------

    def save_key(
        self,
        key_id: str,
        scheme: str,
        sealed: bytes,
        public: bytes,
        epoch: int = 0,
        tenant: str = "",
    ) -> None:
        """Store a new key (``tenant`` set at DKG) or a refreshed share of one (newer epoch;
        the tenant is kept)."""
        with self.transaction() as s:
            row = s.get(KeyShareRow, key_id)
            if row is None:
                s.add(
                    KeyShareRow(
                        key_id=key_id,
                        scheme=scheme,
                        tenant=tenant,
                        epoch=epoch,
                        sealed_key_package=sealed,
                        public_key_package=public,
                    )
                )
            else:
                if epoch <= row.epoch:
                    raise StoreError(
                        "STALE_EPOCH", "a key share may only be replaced by a newer epoch"
                    )
                row.epoch, row.sealed_key_package, row.public_key_package = epoch, sealed, public
                # Nonces committed under the old share cannot be used with the new one.
                s.execute(
                    update(NonceRow)
                    .where(NonceRow.key_id == key_id, NonceRow.state == "unused")
                    .values(state="retired", sealed_nonces=None)
                )

    def load_key(self, key_id: str) -> StoredKey:
        """The key's row as committed now: read on every call (one statement), so a
        refresh, a re-seal (``custody hsm rotate``) or a removal by another process is
        seen at once."""
        with self.engine.connect() as conn:
            row = run(conn, _READ_KEY, {"b_key_id": key_id}).one_or_none()
        if row is None:
            raise StoreError("KEY_NOT_FOUND", f"this node holds no share of key {key_id}")
        return StoredKey(
            row.key_id,
            row.scheme,
            row.tenant,
            row.epoch,
            bytes(row.sealed_key_package),
            bytes(row.public_key_package),
        )

    # -- nonce pool -----------------------------------------------------------

    def add_nonces(self, key_id: str, entries: list[tuple[str, bytes, bytes]]) -> None:
        """``entries``: (nonce id, commitments, sealed nonces)."""
        if not entries:
            return
        with self.transaction() as s:
            s.connection().execute(
                _ADD_ENTRY,
                [
                    {
                        "nonce_id": nonce_id,
                        "key_id": key_id,
                        "commitments": commitments,
                        "sealed_nonces": sealed,
                        "state": "unused",
                        "created_at": utcnow(),
                    }
                    for nonce_id, commitments, sealed in entries
                ],
            )

    def sign_with_nonce(
        self,
        *,
        request_id: str,
        key_id: str,
        nonce_id: str,
        package_digest: bytes,
        expected_commitments: bytes | None,
        compute_share: Callable[[bytes], bytes],
        record: Callable[[Session], None] | None = None,
    ) -> bytes:
        """In one transaction: refuse a used nonce or one whose commitments are
        not those in the signing package; mark it consumed and erase its
        sealed secret; compute the share from it; record request and share in
        the node's history. The caller releases the share only after this
        commit, so a share never leaves for a nonce that could be used again.
        If ``compute_share`` raises, nothing was released and the transaction
        rolls back. ``record`` adds the policy history entry in the same
        transaction, so history and consumption commit together or not at all."""
        with self.transaction() as s:
            conn = s.connection()
            if run(conn, _SIGNED, {"b_request_id": request_id}).first() is not None:
                raise StoreError(
                    "REQUEST_ALREADY_SIGNED",
                    f"request {request_id} was already signed by this node",
                )
            row = run(conn, _POOL_ENTRY, {"b_nonce_id": nonce_id, "b_key_id": key_id}).first()
            if row is None:
                raise StoreError("NONCE_NOT_FOUND", f"no pool nonce {nonce_id} for key {key_id}")
            if row.state != "unused" or row.sealed_nonces is None:
                raise StoreError("NONCE_ALREADY_USED", f"pool nonce {nonce_id} is {row.state}")
            if expected_commitments is not None and row.commitments != expected_commitments:
                raise StoreError(
                    "COMMITMENT_MISMATCH", "the package carries other commitments for this node"
                )
            sealed = bytes(row.sealed_nonces)
            result = run(conn, _CONSUME, {"b_nonce_id": nonce_id, "b_request_id": request_id})
            if result.rowcount != 1:
                raise StoreError(
                    "NONCE_ALREADY_USED", f"pool nonce {nonce_id} was consumed concurrently"
                )
            share = compute_share(sealed)
            if record is not None:
                record(s)
            run(
                conn,
                _ADD_RECORD,
                {
                    "request_id": request_id,
                    "key_id": key_id,
                    "package_digest": package_digest,
                    "nonce_id": nonce_id,
                    "signature_share": share,
                    "created_at": utcnow(),
                },
            )
            return share

    def exclude_peers(self, key_id: str, peers: frozenset[int], reason: str) -> None:
        with self.transaction() as s:
            for peer in sorted(peers):
                if s.get(ExcludedPeerRow, (key_id, peer)) is None:
                    s.add(ExcludedPeerRow(key_id=key_id, peer=peer, reason=reason))

    def excluded_peers(self, key_id: str) -> set[int]:
        with self.transaction() as s:
            rows = s.execute(select(ExcludedPeerRow.peer).where(ExcludedPeerRow.key_id == key_id))
            return {int(p) for p in rows.scalars()}

    def sign_record(self, request_id: str) -> SignRecordRow | None:
        with self.transaction() as s:
            row = s.get(SignRecordRow, request_id)
            if row is not None:
                s.expunge(row)
            return row

    def unused_nonce_count(self, key_id: str) -> int:
        with self.transaction() as s:
            rows = s.execute(
                select(NonceRow.nonce_id).where(
                    NonceRow.key_id == key_id, NonceRow.state == "unused"
                )
            )
            return len(rows.all())
