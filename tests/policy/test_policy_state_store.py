"""The signer node's persisted policy chain and history (signer_nodes/node/policy_state.py):
only quorum-signed next versions are activated, the chain is re-verified on start, and
history entries are recorded atomically with the caller's transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import sessionmaker

from policy.authorize import Authorization, authorize, authorize_with_peers
from policy.document import VelocityScope
from policy.exchange import make_report
from policy.governance import PolicyVersion
from policy.history import HistoryEntry, NodeHistory
from signer_nodes.db import make_engine
from signer_nodes.node.policy_state import (
    GenesisPin,
    HistoryRow,
    PolicyState,
    PolicyStateError,
    PolicyVersionRow,
)
from tests.policy.helpers import T0, base_doc, encode, isig, key, req
from tests.policy.service.db import database_url
from tests.policy.service.fixtures import (
    GENESIS,
    GENESIS_BUNDLE,
    QUORUM,
    bundle,
    doc_named,
    genesis_pin,
    next_version,
    with_officers,
)

GENESIS_DOC = GENESIS.document


@pytest.fixture
def url(tmp_path: Path) -> str:
    return database_url(tmp_path, "node")


@pytest.fixture
def state(url: str) -> PolicyState:
    return PolicyState(url, genesis_pin())


def code_of(fn: object, *args: object) -> str:
    with pytest.raises(PolicyStateError) as err:
        fn(*args)  # type: ignore[operator]
    return err.value.code


def test_genesis_is_installed_and_pinned(url: str, state: PolicyState) -> None:
    assert state.active().number == 1 and state.active().version_id == GENESIS.version_id
    other = GenesisPin(GENESIS_BUNDLE, bytes(32))
    assert code_of(PolicyState, url, other) == "POLICY_GENESIS_MISMATCH"
    # a different genesis for an existing database is refused too
    v = PolicyVersion(1, bytes(32), doc_named("other-genesis"))
    assert code_of(PolicyState, url, GenesisPin(bundle(v, *QUORUM), v.document_hash)) == (
        "POLICY_GENESIS_MISMATCH"
    )


def test_genesis_needs_its_own_officer_quorum(tmp_path: Path) -> None:
    pin = GenesisPin(bundle(GENESIS, "off-a"), GENESIS.document_hash)
    assert code_of(PolicyState, database_url(tmp_path, "g"), pin) == "POLICY_QUORUM_NOT_MET"
    assert code_of(GenesisPin.load, tmp_path) == "POLICY_GENESIS_MISMATCH"


def test_activation_at_quorum_survives_restart(url: str, state: PolicyState) -> None:
    v2 = next_version(GENESIS, doc_named("second"))
    new = state.activate(bundle(v2, "off-a", "off-c"))
    assert new.number == 2 and new.policy.document.name == "second"
    assert state.activate(bundle(v2, "off-a", "off-c")).number == 2  # re-delivery: no-op
    reopened = PolicyState(url, genesis_pin())
    assert reopened.active().version_id == v2.version_id
    assert [v.number for v in reopened.versions()] == [1, 2]


@pytest.mark.parametrize(
    ("officers", "code"),
    [
        (("off-a",), "POLICY_QUORUM_NOT_MET"),
        ((), "POLICY_QUORUM_NOT_MET"),
        (("off-a", "mallory"), "POLICY_NOT_OFFICER"),
        (("off-a", "alice"), "POLICY_NOT_OFFICER"),  # an approver is not an officer
    ],
)
def test_below_quorum_or_non_officer_is_never_activated(
    url: str, state: PolicyState, officers: tuple[str, ...], code: str
) -> None:
    v2 = next_version(GENESIS, doc_named("second"))
    assert code_of(state.activate, bundle(v2, *officers)) == code
    assert state.active().number == 1
    assert PolicyState(url, genesis_pin()).active().number == 1
    assert state.bundle(2) is None


def test_forged_signature_and_malformed_bundle(state: PolicyState) -> None:
    v2 = next_version(GENESIS, doc_named("second"))
    good = bundle(v2, *QUORUM)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    assert code_of(state.activate, forged) == "POLICY_SIGNATURE_INVALID"
    assert code_of(state.activate, good[:-3]) == "POLICY_BUNDLE_MALFORMED"
    assert code_of(state.activate, good + b"\x00") == "POLICY_BUNDLE_MALFORMED"
    assert state.active().number == 1


def test_replay_fork_and_chain_checks(state: PolicyState) -> None:
    v2 = next_version(GENESIS, doc_named("second"))
    v3 = next_version(v2, doc_named("third"))
    assert code_of(state.activate, bundle(v3, *QUORUM)) == "POLICY_VERSION_NOT_NEXT"
    state.activate(bundle(v2, *QUORUM))
    # the genesis bundle again (an old version replayed by the coordinator)
    assert code_of(state.activate, GENESIS_BUNDLE) == "POLICY_VERSION_NOT_NEXT"
    # a version 3 that does not extend version 2
    fork = PolicyVersion(3, GENESIS.version_id, doc_named("fork"))
    assert code_of(state.activate, bundle(fork, *QUORUM)) == "POLICY_CHAIN_BROKEN"
    bad_doc = next_version(v2, b'{"format": "custody-policy/v1"}')
    assert code_of(state.activate, bundle(bad_doc, *QUORUM)) == "POLICY_DOCUMENT_INVALID"
    assert state.active().number == 2


def test_catch_up_is_all_or_nothing(url: str, state: PolicyState) -> None:
    v2 = next_version(GENESIS, doc_named("second"))
    v3 = next_version(v2, doc_named("third"))
    assert code_of(state.activate_chain, [bundle(v2, *QUORUM), bundle(v3, "off-a")]) == (
        "POLICY_QUORUM_NOT_MET"
    )
    assert state.active().number == 1 and PolicyState(url, genesis_pin()).active().number == 1
    assert state.activate_chain([bundle(v2, *QUORUM), bundle(v3, *QUORUM)]).number == 3


def test_officer_set_change_needs_the_old_quorum(state: PolicyState) -> None:
    new_set = encode(with_officers("new-1", "new-2", "new-3"))
    v2 = next_version(GENESIS, new_set)
    # incoming officers cannot sign themselves in
    assert code_of(state.activate, bundle(v2, "new-1", "new-2")) == "POLICY_NOT_OFFICER"
    state.activate(bundle(v2, "off-b", "off-c"))
    v3 = next_version(v2, encode(with_officers("new-1", "new-2", "new-3") | {"name": "v3"}))
    # the old officers no longer govern
    assert code_of(state.activate, bundle(v3, *QUORUM)) == "POLICY_NOT_OFFICER"
    assert state.activate(bundle(v3, "new-1", "new-3")).number == 3


def test_rollback_is_a_new_version_with_an_old_document(url: str, state: PolicyState) -> None:
    v2 = next_version(GENESIS, doc_named("second"))
    state.activate(bundle(v2, *QUORUM))
    rollback = next_version(v2, GENESIS_DOC)
    assert code_of(state.activate, bundle(rollback, "off-c")) == "POLICY_QUORUM_NOT_MET"
    after = state.activate(bundle(rollback, "off-a", "off-c"))
    assert after.number == 3 and after.version.document == GENESIS.document
    assert after.version_id != GENESIS.version_id  # the chain moved forward
    assert after.document_hashes[0] == after.document_hashes[2]
    assert PolicyState(url, genesis_pin()).active().version_id == after.version_id


def test_edited_version_row_stops_the_node(url: str, state: PolicyState) -> None:
    v2 = next_version(GENESIS, doc_named("second"))
    state.activate(bundle(v2, *QUORUM))
    v2_evil = next_version(GENESIS, doc_named("evil"))
    with state.transaction() as s:
        s.execute(
            update(PolicyVersionRow)
            .where(PolicyVersionRow.number == 2)
            .values(bundle=bundle(v2_evil, "off-a"))
        )
    assert code_of(PolicyState, url, genesis_pin()) == "POLICY_STATE_CORRUPT"


# --------------------------------------------------------------------------- history


def entry(i: int, *, amount: int = 10, ts: int = T0, digest: bytes | None = None) -> HistoryEntry:
    return HistoryEntry(
        request_id=f"r-{i}",
        request_digest=digest or bytes([i]) * 32,
        key_id="key-hot-1",
        initiator="acme-bot",
        tenant="acme",
        asset="ETH",
        amount=amount,
        timestamp=ts,
    )


def test_record_commits_and_rolls_back_with_the_callers_transaction(
    url: str, state: PolicyState
) -> None:
    # a session from another engine on the same database, like the node store's
    sessions = sessionmaker(make_engine(url))
    with sessions.begin() as s:
        state.record(s, entry(1))
    with pytest.raises(RuntimeError), sessions.begin() as s:
        state.record(s, entry(2))
        raise RuntimeError("share computation failed")
    log = state.log()
    assert [e.request_id for e in log.entries] == ["r-1"]
    assert log.head == NodeHistory([entry(1)]).head
    with sessions.begin() as s:
        state.record(s, entry(2, amount=2**255))  # amounts beyond 64 bits persist exactly
    reopened = PolicyState(url, genesis_pin())
    assert reopened.log().entries == (entry(1), entry(2, amount=2**255))
    assert reopened.head() == (2, NodeHistory([entry(1), entry(2, amount=2**255)]).head)


def test_retry_is_recorded_once_and_reused_id_refused(state: PolicyState) -> None:
    with state.transaction() as s:
        head = state.record(s, entry(1))
    with state.transaction() as s:
        assert state.record(s, entry(1, ts=T0 + 5)) == head
    with pytest.raises(PolicyStateError) as err, state.transaction() as s:
        state.record(s, entry(1, digest=b"\xee" * 32))
    assert err.value.code == "REQUEST_ID_REUSED"
    assert state.log().count == 1


def test_history_windows_and_tampered_rows(url: str, state: PolicyState) -> None:
    with state.transaction() as s:
        for i in range(1, 4):
            state.record(s, entry(i, amount=i, ts=T0 + 100 * i))
    h = state.history()
    assert h.window(VelocityScope.KEY, "key-hot-1", "ETH", T0 + 100) == (2, 5)
    with state.transaction() as s:
        s.execute(text("UPDATE policy_history SET amount = '0' WHERE seq = 3"))
    fresh = PolicyState(url, genesis_pin())  # a restarted node reads the edited row
    assert code_of(fresh.log) == "POLICY_STATE_CORRUPT"
    with state.transaction() as s:
        s.execute(update(HistoryRow).where(HistoryRow.seq == 3).values(amount="3"))
    assert PolicyState(url, genesis_pin()).log().count == 3


def test_peer_heads_never_move_back(url: str, state: PolicyState) -> None:
    peer_log = NodeHistory([entry(1), entry(2)])
    digest = b"\x01" * 32
    long = make_report(key("node-2"), 2, peer_log, digest, 0).head
    short = make_report(key("node-2"), 2, NodeHistory([entry(1)]), digest, 0).head
    with state.transaction() as s:
        state.remember_heads(s, {2: long})
    with state.transaction() as s:
        state.remember_heads(s, {2: short})
    assert PolicyState(url, genesis_pin()).remembered_heads() == {2: long}


def test_authorize_then_record_in_one_transaction(state: PolicyState) -> None:
    """The node-side flow the service wires: authorize over the persisted state, then record
    the entry in the nonce-consuming transaction; a second identical request is a retry."""
    r = req(amount=5, created_at=T0)
    result = authorize(
        state.active(),
        request=r,
        initiator_signature=isig(r),
        approvals=(),
        policy_version_id=state.active().version_id,
        key_tenant="acme",
        history=state.history(),
        now=T0 + 10,
    )
    assert isinstance(result, Authorization)
    state.report(key("node-1"), 1, r, T0 + 10)  # the lease the record needs
    with state.transaction() as s:
        state.record_authorization(s, result, T0 + 10)
    assert state.history().get(r.request_id) == result.entry


def test_report_feeds_the_peer_exchange(tmp_path: Path) -> None:
    """Two nodes' persisted logs: node 1 checks node 2's report and remembers its head."""
    doc = base_doc()
    doc["rules"] = [
        {
            "id": "budget",
            "match": {
                "assets": ["ETH"],
                "velocity": {"scope": "tenant", "window_seconds": 3600, "max_amount": "100"},
            },
            "action": "allow",
        }
    ]
    g = PolicyVersion(1, bytes(32), encode(doc))
    pin = GenesisPin(bundle(g, *QUORUM), g.document_hash)
    n1 = PolicyState(database_url(tmp_path, "n1"), pin)
    n2 = PolicyState(database_url(tmp_path, "n2"), pin)
    with n2.transaction() as s:
        n2.record(s, entry(7, amount=95, ts=T0))
    r = req(amount=10, created_at=T0 + 10)
    report = n2.report(key("node-2"), 2, r, T0 + 20)
    common = {
        "request": r,
        "initiator_signature": isig(r),
        "approvals": (),
        "policy_version_id": n1.active().version_id,
        "key_tenant": "acme",
        "signing_set": {1, 2},
        "reports": {2: report},
        "node_keys": {2: key("node-2").public_key()},
        "remembered_heads": n1.remembered_heads(),
        "now": T0 + 20,
    }
    refused = authorize_with_peers(
        n1.active(), node_id=1, own_log=n1.log(), coordinator_view=[entry(7, amount=95)], **common
    )
    assert not isinstance(refused, Authorization)
    assert refused.code == "VELOCITY_EXCEEDED"
    hidden = authorize_with_peers(
        n1.active(), node_id=1, own_log=n1.log(), coordinator_view=[], **common
    )
    assert not isinstance(hidden, Authorization) and hidden.code == "HISTORY_HIDDEN"
    n2.forfeit(r.request_id, r.digest())  # r was refused: the tenant's lease is free
    small = req(request_id="req-2", amount=5, created_at=T0 + 10)
    report = n2.report(key("node-2"), 2, small, T0 + 20)
    n1.report(key("node-1"), 1, small, T0 + 20)
    ok = authorize_with_peers(
        n1.active(),
        node_id=1,
        own_log=n1.log(),
        coordinator_view=[entry(7, amount=95)],
        **(common | {"request": small, "initiator_signature": isig(small), "reports": {2: report}}),
    )
    assert isinstance(ok, Authorization)
    with n1.transaction() as s:
        n1.record_authorization(s, ok, T0 + 20)
    assert n1.remembered_heads()[2] == report.head
    assert n1.log().count == 1
