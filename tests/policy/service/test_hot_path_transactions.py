"""Transaction edge cases of the coordinator's hot-path caches: the audit head held per
transaction (custody/governance/store.py) and the in-memory signed account
(custody/governance/signed_history.py) must follow what the database commits, also
with savepoints and with a caller's session used for several transactions."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from custody.governance.signed_history import SignedHistory
from custody.governance.store import GovernanceStore
from policy.audit import AuditKind, verify_chain
from policy.history import HistoryEntry

KEY = Ed25519PrivateKey.generate()


def _chain_ok(store: GovernanceStore) -> list[int]:
    records, checkpoints = store.audit_log()
    verify_chain(records, checkpoints, KEY.public_key())
    return [r.sequence for r in records]


def test_a_session_reused_across_transactions_reads_the_head_again(tmp_path: Path) -> None:
    store = GovernanceStore(f"sqlite:///{tmp_path}/c.db", KEY)
    s = Session(store.engine)
    store.audit(AuditKind.REFUSAL, {"n": 1}, session=s)
    s.commit()
    store.audit(AuditKind.REFUSAL, {"n": 2})  # another transaction appends meanwhile
    store.audit(AuditKind.REFUSAL, {"n": 3}, session=s)
    s.commit()
    s.close()
    assert _chain_ok(store) == [0, 1, 2]


def test_an_append_in_a_rolled_back_savepoint_leaves_no_gap(tmp_path: Path) -> None:
    store = GovernanceStore(f"sqlite:///{tmp_path}/c.db", KEY)
    with store.transaction() as s:
        store.audit(AuditKind.REFUSAL, {"n": 1}, session=s)
        savepoint = s.begin_nested()
        store.audit(AuditKind.REFUSAL, {"n": "lost"}, session=s)
        savepoint.rollback()
        store.audit(AuditKind.REFUSAL, {"n": 2}, session=s)
    assert _chain_ok(store) == [0, 1]


def _entry(i: int) -> HistoryEntry:
    return HistoryEntry(
        request_id=f"t:r{i}",
        request_digest=bytes([i]) * 32,
        key_id="k",
        initiator="alice",
        tenant="t",
        asset="BTC",
        amount=1,
        timestamp=10 + i,
    )


def test_the_signed_account_ignores_savepoint_ends() -> None:
    sessions = sessionmaker(create_engine("sqlite://"))
    account = SignedHistory(lambda tenant, after: ())
    account.history("t", 0)
    with sessions() as s:  # recorded in a released savepoint, the transaction rolls back
        s.begin()
        savepoint = s.begin_nested()
        account.stored(s, _entry(1))
        savepoint.commit()
        s.rollback()
    with sessions() as s:  # recorded, an unrelated savepoint rolls back, then commit
        s.begin()
        account.stored(s, _entry(2))
        s.begin_nested().rollback()
        s.commit()
    assert [e.request_id for e in account.entries("t", 0)] == ["t:r2"]
