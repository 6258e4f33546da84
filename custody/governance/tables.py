"""The coordinator's governance tables (SQLAlchemy 2, SQLite or PostgreSQL).

Their own metadata, created next to the coordinator's tables in the same database, so that
the coordinator can write an audit record or an approval in the same transaction as its
own state. Identifiers of versions and proposals are stored as lower-case hex (the
version id, ``docs/policy-format.md`` §6), which is also how the CLI names them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from signer_nodes.db import utcnow

# An auto-increment surrogate key on both databases (SQLite only auto-increments INTEGER).
_ROWID = BigInteger().with_variant(Integer(), "sqlite")


class GovernanceBase(DeclarativeBase):
    pass


class VersionRow(GovernanceBase):
    """The coordinator's mirror of the activated chain (what nodes were sent)."""

    __tablename__ = "gov_versions"
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    version_id: Mapped[str] = mapped_column(String(64), unique=True)
    bundle: Mapped[bytes] = mapped_column(LargeBinary)
    rollback_of: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    proposer: Mapped[str] = mapped_column(String(128), default="")
    activated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProposalRow(GovernanceBase):
    """A proposed next version: the whole document, its hash and the version it extends.
    States: OPEN -> ACTIVATED | REJECTED | SUPERSEDED (another version took its number)."""

    __tablename__ = "gov_proposals"
    proposal_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # version id, hex
    number: Mapped[int] = mapped_column(BigInteger, index=True)
    parent_hash: Mapped[bytes] = mapped_column(LargeBinary)
    document: Mapped[bytes] = mapped_column(LargeBinary)
    document_hash: Mapped[bytes] = mapped_column(LargeBinary)
    proposer: Mapped[str] = mapped_column(String(128))
    rollback_of: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="OPEN", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class VoteRow(GovernanceBase):
    """One officer's signed approval or rejection of a proposal (one per officer)."""

    __tablename__ = "gov_proposal_votes"
    proposal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    officer: Mapped[str] = mapped_column(String(128), primary_key=True)
    decision: Mapped[str] = mapped_column(String(8))  # approve | reject
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PendingRequestRow(GovernanceBase):
    """A signing request known to governance, every field of ``policy.request.SigningRequest``
    with the initiator's signature, so approvers see exactly what they approve."""

    __tablename__ = "gov_requests"
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    initiator: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(128))
    derivation_path: Mapped[str] = mapped_column(String(256), default="")  # "0/1"
    request_type: Mapped[str] = mapped_column(String(32))
    chain: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(String(128))
    destination: Mapped[str] = mapped_column(String(256), default="")
    amount: Mapped[str] = mapped_column(String(80))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)
    request_digest: Mapped[bytes] = mapped_column(LargeBinary)
    initiator_signature: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(24), index=True)
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RequestApprovalRow(GovernanceBase):
    """A signed approval or rejection (``policy.request.Approval``) of a pending request.
    An approver's newer statement with the same decision replaces the older one."""

    __tablename__ = "gov_request_approvals"
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    approver: Mapped[str] = mapped_column(String(128), primary_key=True)
    decision: Mapped[str] = mapped_column(String(8), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    policy_version_id: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SignedEntryRow(GovernanceBase):
    """The coordinator's account of what was signed (``coordinator_view`` in
    ``policy.exchange``), also the history its pre-evaluation uses."""

    __tablename__ = "gov_signed_history"
    __table_args__ = (Index("ix_gov_signed_history_window", "tenant", "timestamp"),)
    request_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    key_id: Mapped[str] = mapped_column(String(128))
    initiator: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(String(128))
    amount: Mapped[str] = mapped_column(String(80))
    request_digest: Mapped[bytes] = mapped_column(LargeBinary)
    timestamp: Mapped[int] = mapped_column(BigInteger, index=True)


class AuditRecordRow(GovernanceBase):
    """``policy.audit.AuditRecord`` in storage order (``position``); ``sequence`` is the
    record's own claim, so moved, removed or added rows show up in verification."""

    __tablename__ = "audit_records"
    position: Mapped[int] = mapped_column(_ROWID, primary_key=True, autoincrement=True)
    sequence: Mapped[int] = mapped_column(BigInteger, index=True)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class AuditHeadRow(GovernanceBase):
    """The single row appends lock: next sequence, last hash, last checkpoint."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger)
    head: Mapped[bytes] = mapped_column(LargeBinary)
    checkpointed: Mapped[int] = mapped_column(BigInteger)  # sequence of the last checkpoint, or -1
    checkpoint_time: Mapped[int] = mapped_column(BigInteger)


class AuditCheckpointRow(GovernanceBase):
    __tablename__ = "audit_checkpoints"
    position: Mapped[int] = mapped_column(_ROWID, primary_key=True, autoincrement=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
