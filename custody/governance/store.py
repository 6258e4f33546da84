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
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

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

Clock = Callable[[], int]


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
            head = s.execute(
                select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()
            ).scalar_one()
            seq, prev = head.count, head.head
            digest = record_hash(seq, ts, kind.value, text, prev)
            s.add(
                AuditRecordRow(
                    sequence=seq,
                    timestamp=ts,
                    kind=kind.value,
                    body=text,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            head.count, head.head = seq + 1, digest
            if seq - head.checkpointed >= self._every or ts - head.checkpoint_time >= self._seconds:
                self._sign_checkpoint(s, head, ts)
            s.flush()
            return AuditRecord(seq, ts, kind.value, text, prev, digest)

    def _sign_checkpoint(self, s: Session, head: AuditHeadRow, ts: int) -> Checkpoint:
        seq = head.count - 1
        signature = self._audit_key.sign(checkpoint_message(seq, head.head, ts))
        s.add(
            AuditCheckpointRow(sequence=seq, head_hash=head.head, timestamp=ts, signature=signature)
        )
        head.checkpointed, head.checkpoint_time = seq, ts
        return Checkpoint(seq, head.head, ts, signature)

    def checkpoint(self, *, session: Session | None = None) -> Checkpoint | None:
        """Sign a checkpoint over the last record now (``None`` if nothing is new)."""
        with self.joined(session) as s:
            head = s.execute(
                select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()
            ).scalar_one()
            if head.count - 1 <= head.checkpointed:
                return None
            return self._sign_checkpoint(s, head, self.clock())

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
