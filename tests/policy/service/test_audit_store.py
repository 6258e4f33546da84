"""The persisted audit log (custody/governance/store.py): records and checkpoints in the
``policy.audit`` format; every kind of tampering with the stored rows is detected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from custody.governance.keys import ensure_audit_key, load_public_key, public_path
from custody.governance.tables import AuditCheckpointRow, AuditRecordRow
from policy.audit import (
    AuditKind,
    AuditTamperError,
    TamperKind,
    import_jsonl,
    record_hash,
    verify_chain,
)
from tests.policy.service.conftest import AUDIT_KEY, Gov

PUB = AUDIT_KEY.public_key()


def fill(gov: Gov, n: int) -> None:
    for i in range(n):
        gov.clock.now += 1
        gov.store.audit(AuditKind.KEY_EVENT, {"event": "created", "key_id": f"k-{i}", "i": i})


def tamper_kind(gov: Gov) -> tuple[TamperKind, int]:
    with pytest.raises(AuditTamperError) as err:
        verify_chain(*gov.store.audit_log(), PUB)
    return err.value.kind, err.value.index


def test_append_checkpoints_and_export_round_trip(gov: Gov) -> None:
    fill(gov, 10)
    records, checkpoints = gov.store.audit_log()
    assert [r.sequence for r in records] == list(range(11))  # genesis + 10
    assert [c.sequence for c in checkpoints] == [0, 4, 8]  # every 4 records
    verify_chain(records, checkpoints, PUB)
    assert import_jsonl(gov.store.export_audit()) == (records, checkpoints)
    assert gov.store.checkpoint() is not None and gov.store.checkpoint() is None


def test_a_caller_transaction_commits_or_drops_its_records(gov: Gov) -> None:
    with pytest.raises(RuntimeError), gov.store.transaction() as s:
        gov.store.audit(AuditKind.KEY_EVENT, {"event": "created"}, session=s)
        raise RuntimeError("the state change failed")
    fill(gov, 1)
    records, checkpoints = gov.store.audit_log()
    assert len(records) == 2
    verify_chain(records, checkpoints, PUB)


def _rows(s: Session) -> list[AuditRecordRow]:
    return list(s.execute(select(AuditRecordRow).order_by(AuditRecordRow.position)).scalars())


def edit(s: Session) -> None:
    s.execute(
        update(AuditRecordRow)
        .where(AuditRecordRow.sequence == 6)
        .values(body='{"event":"created","i":99,"key_id":"k-5"}')
    )


def delete_one(s: Session) -> None:
    s.execute(delete(AuditRecordRow).where(AuditRecordRow.sequence == 6))


def insert_one(s: Session) -> None:
    rows = _rows(s)
    forged = rows[6]
    s.add(
        AuditRecordRow(
            sequence=forged.sequence,
            timestamp=forged.timestamp,
            kind="key_event",
            body='{"event":"forged"}',
            prev_hash=forged.prev_hash,
            hash=record_hash(
                forged.sequence,
                forged.timestamp,
                "key_event",
                '{"event":"forged"}',
                forged.prev_hash,
            ),
        )
    )


def reorder(s: Session) -> None:
    a, b = _rows(s)[5:7]
    pa, pb = a.position, b.position
    s.execute(update(AuditRecordRow).where(AuditRecordRow.position == pa).values(position=-1))
    s.execute(update(AuditRecordRow).where(AuditRecordRow.position == pb).values(position=pa))
    s.execute(update(AuditRecordRow).where(AuditRecordRow.position == -1).values(position=pb))


def rewrite_everything_after(s: Session) -> None:
    """The attacker edits record 6 and re-hashes every later record: only the signed
    checkpoint at 8 still shows it."""
    rows = _rows(s)
    prev = rows[5].hash
    for r in rows[6:]:
        body = '{"event":"rewritten"}' if r.sequence == 6 else r.body
        r.body, r.prev_hash = body, prev
        r.hash = record_hash(r.sequence, r.timestamp, r.kind, body, prev)
        prev = r.hash


def truncate(s: Session) -> None:
    s.execute(delete(AuditRecordRow).where(AuditRecordRow.sequence >= 8))


def forge_checkpoint(s: Session) -> None:
    s.execute(
        update(AuditCheckpointRow)
        .where(AuditCheckpointRow.sequence == 4)
        .values(timestamp=AuditCheckpointRow.timestamp + 1)
    )


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        (edit, (TamperKind.EDIT, 6)),
        (delete_one, (TamperKind.DELETION, 6)),
        (insert_one, (TamperKind.INSERTION, 11)),
        (reorder, (TamperKind.REORDERING, 5)),
        (rewrite_everything_after, (TamperKind.CHECKPOINT_MISMATCH, 5)),
        (truncate, (TamperKind.DELETION, 8)),
        (forge_checkpoint, (TamperKind.BAD_CHECKPOINT, 4)),
    ],
)
def test_tampering_with_stored_rows_is_detected(
    gov: Gov, attack: Callable[[Session], None], expected: tuple[TamperKind, int]
) -> None:
    fill(gov, 10)
    verify_chain(*gov.store.audit_log(), PUB)
    with gov.store.transaction() as s:
        attack(s)
    assert tamper_kind(gov) == expected


def test_audit_key_file(tmp_path: Path) -> None:
    path = tmp_path / "coordinator" / "audit.key"
    key = ensure_audit_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert ensure_audit_key(path).public_key() == key.public_key()  # loaded, not replaced
    assert load_public_key(public_path(path)) == key.public_key()
