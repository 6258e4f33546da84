"""The coordinator's database: keys (public material only), operations,
signature requests as a persisted state machine, and the nonce commitments
each node has prepared.

Request states: PENDING [-> PENDING_APPROVAL] -> SIGNING -> SUCCEEDED | FAILED. A request is stored
before any node is contacted, so a restarted coordinator finds every accepted
request and resumes or fails it. Pool entries move unused -> reserved (for one
request attempt) -> used; an entry handed to a node is never offered again,
whatever happened to the attempt.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    Update,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql.elements import BindParameter

from signer_nodes.db import TransactionalStore, utcnow
from signer_nodes.prepared import run


class Base(DeclarativeBase):
    pass


class KeyRow(Base):
    __tablename__ = "keys"
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    scheme: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[int] = mapped_column(Integer)
    participants: Mapped[int] = mapped_column(Integer)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    public_key_package: Mapped[bytes] = mapped_column(LargeBinary)
    chain_code: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OperationRow(Base):
    __tablename__ = "operations"
    operation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(160), nullable=True)
    scheme: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="RUNNING")
    stage: Mapped[str] = mapped_column(String(16), default="keygen")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    __table_args__ = (UniqueConstraint("tenant", "idempotency_key"),)


class SignatureRequestRow(Base):
    __tablename__ = "signature_requests"
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(256), default="")
    payload_kind: Mapped[str] = mapped_column(String(32))  # the policy request type
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the structured payload
    # The SigningRequest (custody.governance.v1 protobuf) the initiator signed, its signature,
    # the digest it commits to, and what the payload says to sign.
    signing_request: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    initiator_signature: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    request_digest: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    signed_digest: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    taproot_merkle_root: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    requirement: Mapped[str] = mapped_column(String(512), default="")
    state: Mapped[str] = mapped_column(String(16), default="PENDING", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    signers: Mapped[str] = mapped_column(String(256), default="")
    signature: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    recovery_id: Mapped[int] = mapped_column(Integer, default=-1)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    culprits: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class PoolNonceRow(Base):
    __tablename__ = "pool_nonces"
    # Picking an unused entry of one key on one node: an index on all three, so the pick
    # does not read every entry the node ever had (used ones are kept).
    __table_args__ = (Index("ix_pool_nonces_pick", "key_id", "node_id", "state"),)
    nonce_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    node_id: Mapped[int] = mapped_column(Integer, index=True)
    commitments: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default="unused", index=True)
    request_id: Mapped[str | None] = mapped_column(String(160), nullable=True)


class PresignatureRow(Base):
    """A DKLs23 presignature the nodes in ``signers`` hold (public part only).

    unused -> reserved (for one request attempt) -> used, like nonce entries."""

    __tablename__ = "pool_presignatures"
    __table_args__ = (Index("ix_pool_presignatures_pick", "key_id", "state", "signers"),)
    presignature_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    signers: Mapped[str] = mapped_column(String(256), index=True)  # "1,2"
    public: Mapped[bytes] = mapped_column(LargeBinary)  # PresignaturePublic encoding
    state: Mapped[str] = mapped_column(String(16), default="unused", index=True)
    request_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


_REQUESTS = cast(Table, SignatureRequestRow.__table__)
_REQUEST_KEY = (_REQUESTS.c.tenant == bindparam("t")) & (_REQUESTS.c.request_id == bindparam("rid"))
_READ_REQUEST = select(_REQUESTS).where(_REQUEST_KEY)
_ADD_REQUEST = insert(_REQUESTS)
# The columns' scalar defaults, applied by add_request as the ORM would at a flush.
_REQUEST_DEFAULTS = {
    c.key: cast(Any, c.default).arg
    for c in _REQUESTS.c
    if c.default is not None and getattr(c.default, "is_scalar", False)
}


@functools.cache
def _finish_statement(columns: frozenset[str]) -> Update:
    """``UPDATE signature_requests`` of ``columns`` (bound by name) and ``updated_at``:
    built once per set of columns (building a statement costs more than running it)."""
    unknown = columns - set(_REQUESTS.c.keys())
    if unknown:
        raise ValueError(f"not columns of signature_requests: {sorted(unknown)}")
    values: dict[str, BindParameter[Any]] = {
        c: bindparam(c) for c in sorted(columns | {"updated_at"})
    }
    return update(_REQUESTS).where(_REQUEST_KEY).values(values)


_NONCES = cast(Table, PoolNonceRow.__table__)
_ADD_NONCE = insert(_NONCES).values(state="unused")  # a refill's new entries
# One nonce reservation per signature request: Core statements, built once.
_RETIRE_NONCES = (
    update(_NONCES)
    .where(_NONCES.c.request_id == bindparam("tag"), _NONCES.c.state == "reserved")
    .values(state="used")
)
_PRESIGNATURES = cast(Table, PresignatureRow.__table__)
_RETIRE_PRESIGNATURES = (
    update(_PRESIGNATURES)
    .where(_PRESIGNATURES.c.request_id == bindparam("tag"), _PRESIGNATURES.c.state == "reserved")
    .values(state="used")
)
_PICK_NONCE = (
    select(_NONCES.c.nonce_id, _NONCES.c.commitments)
    .where(
        _NONCES.c.key_id == bindparam("key_id"),
        _NONCES.c.node_id == bindparam("node_id"),
        _NONCES.c.state == "unused",
    )
    .limit(1)
    .with_for_update(skip_locked=True)
)
_CLAIM_NONCE = (
    update(_NONCES)
    .where(_NONCES.c.nonce_id == bindparam("nid"), _NONCES.c.state == "unused")
    .values(state="reserved", request_id=bindparam("tag"))
)


def signer_set(signers: Iterable[int]) -> str:
    return ",".join(map(str, sorted(signers)))


class CoordinatorStore(TransactionalStore):
    def __init__(self, url: str) -> None:
        super().__init__(url, "coordinator")

    def pool_level(self, key_id: str, node_id: int) -> int:
        with self.transaction() as s:
            count = s.execute(
                select(func.count())
                .select_from(PoolNonceRow)
                .where(
                    PoolNonceRow.key_id == key_id,
                    PoolNonceRow.node_id == node_id,
                    PoolNonceRow.state == "unused",
                )
            ).scalar_one()
            return int(count)

    def pool_levels(self, key_id: str) -> dict[int, int]:
        """Unused nonce entries of ``key_id`` per node, in one query."""
        with self.transaction() as s:
            rows = s.execute(
                select(PoolNonceRow.node_id, func.count())
                .where(PoolNonceRow.key_id == key_id, PoolNonceRow.state == "unused")
                .group_by(PoolNonceRow.node_id)
            ).all()
            return {int(node): int(n) for node, n in rows}

    def add_nonces(self, key_id: str, node_id: int, entries: list[tuple[str, bytes]]) -> None:
        """Add a node's new pool entries ``(nonce_id, commitments)``, unused, in one
        statement."""
        if not entries:
            return
        with self.transaction() as s:
            s.execute(
                _ADD_NONCE,
                [
                    {"nonce_id": nid, "key_id": key_id, "node_id": node_id, "commitments": c}
                    for nid, c in entries
                ],
            )

    def begin_attempt(
        self,
        tenant: str,
        request_id: str,
        key_id: str,
        candidates: list[int],
        needed: int,
        attempt: int,
        *,
        session: Session | None = None,
        request: SignatureRequestRow | None = None,
    ) -> tuple[dict[int, tuple[str, bytes]], set[int]]:
        """One transaction per signing attempt (the caller's, if given): retire every
        entry an earlier attempt reserved, reserve one unused entry on each of
        ``needed`` nodes, and mark the request SIGNING with those signers. Returns the
        reservations and the candidates whose pools were empty. ``request``: the
        caller's row of a request not stored yet (nothing reserved for it before)."""
        tag = f"{tenant}/{request_id}"
        chosen: dict[int, tuple[str, bytes]] = {}
        empty: set[int] = set()
        with self.joined(session) as s:
            if request is None:
                run(s, _RETIRE_NONCES, {"tag": tag})
            for node_id in candidates:
                if len(chosen) == needed:
                    break
                row = run(s, _PICK_NONCE, {"key_id": key_id, "node_id": node_id}).first()
                if row is None:
                    empty.add(node_id)
                    continue
                claimed = run(s, _CLAIM_NONCE, {"nid": row.nonce_id, "tag": tag})
                if claimed.rowcount == 1:
                    chosen[node_id] = (row.nonce_id, row.commitments)
            if request is None:
                request = s.get(SignatureRequestRow, (tenant, request_id))
            assert request is not None
            request.attempts = attempt
            if len(chosen) == needed:
                request.state = "SIGNING"
                request.signers = ",".join(map(str, sorted(chosen)))
        return chosen, empty

    # -- presignatures ------------------------------------------------------------

    def add_presignature(
        self, presignature_id: str, key_id: str, signers: str, public: bytes
    ) -> None:
        with self.transaction() as s:
            s.add(
                PresignatureRow(
                    presignature_id=presignature_id, key_id=key_id, signers=signers, public=public
                )
            )

    def presignature_levels(self, key_id: str) -> dict[str, int]:
        """Unused presignatures per signer set of ``key_id``."""
        with self.transaction() as s:
            rows = s.execute(
                select(PresignatureRow.signers, func.count())
                .where(PresignatureRow.key_id == key_id, PresignatureRow.state == "unused")
                .group_by(PresignatureRow.signers)
            ).all()
            return {str(signers): int(n) for signers, n in rows}

    def begin_presignature_attempt(
        self,
        tenant: str,
        request_id: str,
        key_id: str,
        candidates: list[int],
        attempt: int,
        *,
        session: Session | None = None,
        request: SignatureRequestRow | None = None,
    ) -> tuple[str, tuple[int, ...], bytes] | None:
        """One transaction per attempt (the caller's, if given): spend what earlier
        attempts reserved, reserve one unused presignature whose signer set lies within
        ``candidates`` (preferring the fullest pool), mark the request SIGNING.
        None if no such presignature exists. ``request``: the caller's row of a request
        not stored yet (nothing reserved for it before)."""
        tag = f"{tenant}/{request_id}"
        allowed = set(candidates)
        with self.joined(session) as s:
            if request is None:
                run(s, _RETIRE_PRESIGNATURES, {"tag": tag})
            levels = s.execute(
                select(PresignatureRow.signers, func.count())
                .where(PresignatureRow.key_id == key_id, PresignatureRow.state == "unused")
                .group_by(PresignatureRow.signers)
            ).all()
            usable = sorted(
                (
                    (int(n), str(signers))
                    for signers, n in levels
                    if {int(x) for x in str(signers).split(",")} <= allowed
                ),
                reverse=True,
            )
            if request is None:
                request = s.get(SignatureRequestRow, (tenant, request_id))
            assert request is not None
            request.attempts = attempt
            for _, signers in usable:
                row = s.execute(
                    select(PresignatureRow.presignature_id, PresignatureRow.public)
                    .where(
                        PresignatureRow.key_id == key_id,
                        PresignatureRow.signers == signers,
                        PresignatureRow.state == "unused",
                    )
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if row is None:
                    continue
                claimed = s.execute(
                    update(PresignatureRow)
                    .where(
                        PresignatureRow.presignature_id == row.presignature_id,
                        PresignatureRow.state == "unused",
                    )
                    .values(state="reserved", request_id=tag)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    request.state, request.signers = "SIGNING", signers
                    ids = tuple(int(x) for x in signers.split(","))
                    return row.presignature_id, ids, row.public
            return None

    def add_request(self, row: SignatureRequestRow, *, session: Session) -> None:
        """INSERT ``row``, a new request not in any session, in ``session``'s transaction:
        one Core statement instead of a unit-of-work flush. Unset columns get their
        defaults, set on ``row`` too (as a flush would)."""
        now = utcnow()
        values: dict[str, Any] = {}
        for c in _REQUESTS.c:
            value = getattr(row, c.key)
            if value is None:
                value = (
                    now if c.key in ("created_at", "updated_at") else _REQUEST_DEFAULTS.get(c.key)
                )
                setattr(row, c.key, value)
            values[c.key] = value
        run(session, _ADD_REQUEST, values)

    def find_request(self, tenant: str, request_id: str) -> SignatureRequestRow | None:
        """The stored request, or ``None`` (one statement: asked for every request). The
        row is a copy outside any session, to read: adding it to one would INSERT."""
        with self.engine.connect() as conn:
            stored = run(conn, _READ_REQUEST, {"t": tenant, "rid": request_id}).mappings()
            found = stored.one_or_none()
        return None if found is None else SignatureRequestRow(**found)

    def finish_request(
        self, tenant: str, request_id: str, *, session: Session | None = None, **values: object
    ) -> SignatureRequestRow:
        """Record the outcome and spend every reserved entry, in one transaction (the
        caller's, if given). Returns the stored row as a copy outside any session, to
        read (:meth:`find_request`)."""
        tag = f"{tenant}/{request_id}"
        with self.joined(session) as s:
            run(s, _RETIRE_NONCES, {"tag": tag})
            run(s, _RETIRE_PRESIGNATURES, {"tag": tag})
            key = {"t": tenant, "rid": request_id}
            statement = _finish_statement(frozenset(values))
            run(s, statement, {**key, **values, "updated_at": utcnow()})
            stored = run(s, _READ_REQUEST, key).mappings().one()
            return SignatureRequestRow(**stored)  # a copy outside the session, to read
