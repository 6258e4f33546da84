"""The coordinator's governance database and its persisted audit log.

:class:`GovernanceStore` owns the tables of :mod:`.tables` and the audit trail: every
record is ``policy.audit``'s format (``docs/policy-format.md`` §9) — the same hash,
canonical JSON body and checkpoint statement — so an export verifies with
:func:`policy.audit.verify_chain` and the public audit key alone.

Appends serialise on one head row (``SELECT ... FOR UPDATE``); an append can join a
caller's transaction (``session=``) so that a state change and its audit record commit
together or not at all. Checkpoints are signed in the appending transaction when
``checkpoint_every`` records or ``checkpoint_seconds`` seconds have passed since the last
one, and on demand (:meth:`GovernanceStore.checkpoint`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from custody.governance.tables import (
    AuditCheckpointRow,
    AuditHeadRow,
    AuditRecordRow,
)
from policy._codec import ZERO_HASH
from policy.audit import (
    AuditKind,
    AuditRecord,
    Checkpoint,
    canonical_json,
    checkpoint_message,
    export_jsonl,
    record_hash,
)
from signer_nodes.db import TransactionalStore
from signer_nodes.prepared import run

Clock = Callable[[], int]

# Appends run on every signature request (three records each): Core statements, built
# once, instead of ORM units of work.
_HEAD = cast(Table, AuditHeadRow.__table__)
_READ_HEAD = (
    select(_HEAD.c.count, _HEAD.c.head, _HEAD.c.checkpointed, _HEAD.c.checkpoint_time)
    .where(_HEAD.c.id == 1)
    .with_for_update()
)
_WRITE_HEAD = update(_HEAD).where(_HEAD.c.id == 1)
_ADD_RECORD = insert(cast(Table, AuditRecordRow.__table__))
_ADD_CHECKPOINT = insert(cast(Table, AuditCheckpointRow.__table__))
_HEAD_KEY = "custody.audit.head"


@dataclass(slots=True)
class _Head:
    """The audit head row as this transaction holds it (locked, and kept current by the
    transaction's own appends)."""

    count: int
    head: bytes
    checkpointed: int
    checkpoint_time: int


def unix_now() -> int:
    return int(time.time())


class GovernanceStore(TransactionalStore):
    """Governance tables and the audit trail in the coordinator's database."""

    def __init__(
        self,
        url: str,
        audit_key: Ed25519PrivateKey,
        *,
        checkpoint_every: int = 32,
        checkpoint_seconds: int = 300,
        clock: Clock = unix_now,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_seconds < 1:
            raise ValueError("checkpoint intervals are positive")
        super().__init__(url, "coordinator")
        self._audit_key = audit_key
        self._every = checkpoint_every
        self._seconds = checkpoint_seconds
        self.clock = clock
        with self.transaction() as s:
            if s.get(AuditHeadRow, 1) is None:
                s.add(
                    AuditHeadRow(id=1, count=0, head=ZERO_HASH, checkpointed=-1, checkpoint_time=0)
                )

    # -- audit -------------------------------------------------------------------------

    def audit(
        self,
        kind: AuditKind,
        body: Mapping[str, Any],
        *,
        session: Session | None = None,
        timestamp: int | None = None,
    ) -> AuditRecord:
        """Append one record (and a checkpoint when one is due)."""
        ts = self.clock() if timestamp is None else timestamp
        text = canonical_json(body)
        with self.joined(session) as s:
            head = self._locked_head(s)
            seq, prev = head.count, head.head
            digest = record_hash(seq, ts, kind.value, text, prev)
            run(
                s,
                _ADD_RECORD,
                {
                    "sequence": seq,
                    "timestamp": ts,
                    "kind": kind.value,
                    "body": text,
                    "prev_hash": prev,
                    "hash": digest,
                },
            )
            head.count, head.head = seq + 1, digest
            if seq - head.checkpointed >= self._every or ts - head.checkpoint_time >= self._seconds:
                self._sign_checkpoint(s, head, ts)
            self._write_head(s, head)
            return AuditRecord(seq, ts, kind.value, text, prev, digest)

    @staticmethod
    def _locked_head(s: Session) -> _Head:
        """The head row, locked for the rest of ``s``'s transaction. Read once per
        transaction (or savepoint: one that rolls back takes its appends with it, and the
        next append reads the row again): later appends in it keep the held copy current
        (nothing else can write the row while the lock is held)."""
        s.connection()  # begin the transaction now, so that it identifies the cache
        txn: SessionTransaction | None = s.get_nested_transaction() or s.get_transaction()
        held = s.info.get(_HEAD_KEY)
        if held is not None and held[0] is txn:
            head: _Head = held[1]
            return head
        count, last, checkpointed, checkpoint_time = run(s, _READ_HEAD).one()
        head = _Head(count, last, checkpointed, checkpoint_time)
        s.info[_HEAD_KEY] = (txn, head)
        return head

    @staticmethod
    def _write_head(s: Session, head: _Head) -> None:
        run(
            s,
            _WRITE_HEAD,
            {
                "count": head.count,
                "head": head.head,
                "checkpointed": head.checkpointed,
                "checkpoint_time": head.checkpoint_time,
            },
        )

    def _sign_checkpoint(self, s: Session, head: _Head, ts: int) -> Checkpoint:
        seq = head.count - 1
        signature = self._audit_key.sign(checkpoint_message(seq, head.head, ts))
        run(
            s,
            _ADD_CHECKPOINT,
            {"sequence": seq, "head_hash": head.head, "timestamp": ts, "signature": signature},
        )
        head.checkpointed, head.checkpoint_time = seq, ts
        return Checkpoint(seq, head.head, ts, signature)

    def checkpoint(self, *, session: Session | None = None) -> Checkpoint | None:
        """Sign a checkpoint over the last record now (``None`` if nothing is new)."""
        with self.joined(session) as s:
            head = self._locked_head(s)
            if head.count - 1 <= head.checkpointed:
                return None
            done = self._sign_checkpoint(s, head, self.clock())
            self._write_head(s, head)
            return done

    def audit_log(self) -> tuple[tuple[AuditRecord, ...], tuple[Checkpoint, ...]]:
        """Every record in storage order and every checkpoint, as stored (unverified)."""
        with self.transaction() as s:
            records = tuple(
                AuditRecord(r.sequence, r.timestamp, r.kind, r.body, r.prev_hash, r.hash)
                for r in s.execute(
                    select(AuditRecordRow).order_by(AuditRecordRow.position)
                ).scalars()
            )
            checkpoints = tuple(
                Checkpoint(c.sequence, c.head_hash, c.timestamp, c.signature)
                for c in s.execute(
                    select(AuditCheckpointRow).order_by(AuditCheckpointRow.position)
                ).scalars()
            )
        return records, checkpoints

    def export_audit(self) -> str:
        """The audit log as JSON lines (``policy.audit.export_jsonl``)."""
        return export_jsonl(*self.audit_log())
