"""The node's single-use pool and its signing transaction (signer_nodes/node/store.py),
with the policy history recorded in it (signer_nodes/node/policy_state.py): every refusal
keeps its code and changes nothing, a share is recorded with its history entry or not at
all, and what another process commits (a refreshed key, a history entry) is seen at once.

SQLite files, or PostgreSQL when ``CUSTODY_TEST_POSTGRES`` is set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from policy.authorize import Authorization, authorize
from policy.exchange import HistoryHead, make_report
from policy.history import HistoryEntry, NodeHistory
from policy.request import SigningRequest
from signer_nodes.db import make_engine
from signer_nodes.node.policy_state import PolicyState, PolicyStateError
from signer_nodes.node.store import NodeStore, StoreError
from tests.policy.helpers import T0, isig, key, req
from tests.policy.service.db import database_url
from tests.policy.service.fixtures import genesis_pin

KEY = "key-hot-1"
NOW = T0 + 10
COMMITMENTS = b"c" * 64


@pytest.fixture
def url(tmp_path: Path) -> str:
    return database_url(tmp_path, "node")


@pytest.fixture
def store(url: str) -> NodeStore:
    s = NodeStore(url)
    s.save_key(KEY, "frost-ed25519", b"sealed-0", b"public-0", tenant="acme")
    s.add_nonces(KEY, [(f"n-{i}", COMMITMENTS, b"secret-%d" % i) for i in range(4)])
    return s


@pytest.fixture
def state(url: str, store: NodeStore) -> PolicyState:
    return PolicyState(url, genesis_pin())


def share_of(sealed: bytes) -> bytes:
    return b"share(" + sealed + b")"


def sign(
    store: NodeStore,
    request_id: str,
    nonce_id: str,
    *,
    digest: bytes = b"d" * 32,
    commitments: bytes | None = COMMITMENTS,
    compute: Callable[[bytes], bytes] = share_of,
    record: Callable[[Session], None] | None = None,
    key_id: str = KEY,
) -> bytes:
    return store.sign_with_nonce(
        request_id=request_id,
        key_id=key_id,
        nonce_id=nonce_id,
        package_digest=digest,
        expected_commitments=commitments,
        compute_share=compute,
        record=record,
    )


def refused(fn: Callable[..., object], *args: object, **kw: object) -> str:
    with pytest.raises(StoreError) as err:
        fn(*args, **kw)
    return err.value.reason


def authorized(state: PolicyState, request: SigningRequest) -> Authorization:
    decided = authorize(
        state.active(),
        request=request,
        initiator_signature=isig(request),
        approvals=(),
        policy_version_id=state.active().version_id,
        key_tenant="acme",
        history=state.history(),
        now=NOW,
    )
    assert isinstance(decided, Authorization), decided
    return decided


def test_a_share_consumes_its_nonce_and_records_the_request(store: NodeStore) -> None:
    assert sign(store, "r-1", "n-0") == share_of(b"secret-0")
    assert store.unused_nonce_count(KEY) == 3
    row = store.sign_record("r-1")
    assert row is not None
    assert (row.nonce_id, row.package_digest, row.signature_share) == (
        "n-0",
        b"d" * 32,
        share_of(b"secret-0"),
    )
    # ECDSA presignatures carry no commitments to compare
    assert sign(store, "r-2", "n-1", commitments=None) == share_of(b"secret-1")


def test_refusals_keep_their_codes_and_change_nothing(store: NodeStore) -> None:
    sign(store, "r-1", "n-0")
    # the request comes first: an already signed request, whatever the nonce
    assert refused(sign, store, "r-1", "n-1") == "REQUEST_ALREADY_SIGNED"
    assert refused(sign, store, "r-1", "n-0") == "REQUEST_ALREADY_SIGNED"
    assert refused(sign, store, "r-1", "missing") == "REQUEST_ALREADY_SIGNED"
    # then the nonce: unknown, another key's, used, or not the package's commitments
    assert refused(sign, store, "r-2", "missing") == "NONCE_NOT_FOUND"
    assert refused(sign, store, "r-2", "n-1", key_id="other-key") == "NONCE_NOT_FOUND"
    assert refused(sign, store, "r-2", "n-0") == "NONCE_ALREADY_USED"
    assert refused(sign, store, "r-2", "n-0", commitments=b"x" * 64) == "NONCE_ALREADY_USED"
    assert refused(sign, store, "r-2", "n-1", commitments=b"x" * 64) == "COMMITMENT_MISMATCH"
    assert store.unused_nonce_count(KEY) == 3
    assert store.sign_record("r-2") is None
    assert sign(store, "r-2", "n-1") == share_of(b"secret-1")  # n-1 was left unused


def test_a_refreshed_key_retires_its_nonces(url: str, store: NodeStore) -> None:
    store.save_key(KEY, "frost-ed25519", b"sealed-1", b"public-1", epoch=1)
    assert refused(sign, store, "r-1", "n-0") == "NONCE_ALREADY_USED"
    assert store.unused_nonce_count(KEY) == 0
    assert refused(store.save_key, KEY, "frost-ed25519", b"old", b"old", epoch=1) == "STALE_EPOCH"


def test_a_failed_share_or_record_rolls_everything_back(
    store: NodeStore, state: PolicyState
) -> None:
    def broken(_sealed: bytes) -> bytes:
        raise RuntimeError("share computation failed")

    with pytest.raises(RuntimeError):
        sign(store, "r-1", "n-0", compute=broken)
    r = req(request_id="r-1")
    decided = authorized(state, r)  # no report was given: no lease

    def record(s: Session) -> None:
        state.record_authorization(s, decided, NOW)

    with pytest.raises(PolicyStateError) as err:
        sign(store, "r-1", "n-0", record=record)
    assert err.value.code == "HISTORY_LEASE_MISSING"
    assert store.unused_nonce_count(KEY) == 4
    assert store.sign_record("r-1") is None
    assert state.log().count == 0
    state.report(key("node-1"), 1, r, NOW)  # takes the lease
    assert sign(store, "r-1", "n-0", record=record) == share_of(b"secret-0")
    assert [e.request_id for e in state.log().entries] == ["r-1"]
    assert store.unused_nonce_count(KEY) == 3


def test_keys_are_read_as_committed_now(url: str, store: NodeStore) -> None:
    assert refused(store.load_key, "other-key") == "KEY_NOT_FOUND"
    first = store.load_key(KEY)
    assert (first.scheme, first.tenant, first.epoch) == ("frost-ed25519", "acme", 0)
    assert (first.sealed_key_package, first.public_key_package) == (b"sealed-0", b"public-0")
    assert "sealed-0" not in repr(first)
    NodeStore(url).save_key(KEY, "frost-ed25519", b"sealed-1", b"public-1", epoch=1)  # another
    refreshed = store.load_key(KEY)
    assert (refreshed.epoch, refreshed.sealed_key_package, refreshed.tenant) == (
        1,
        b"sealed-1",
        "acme",
    )


def entry(i: int, digest: bytes | None = None) -> HistoryEntry:
    return HistoryEntry(
        request_id=f"r-{i}",
        request_digest=digest or bytes([i]) * 32,
        key_id=KEY,
        initiator="acme-bot",
        tenant="acme",
        asset="ETH",
        amount=i,
        timestamp=T0 + i,
    )


def test_reports_and_decisions_see_every_committed_entry(url: str, state: PolicyState) -> None:
    """Entries committed through any session (another engine, another process) are in the
    next report and decision; rolled-back ones never are."""
    sessions = sessionmaker(make_engine(url))
    with sessions.begin() as s:
        state.record(s, entry(1))
    with pytest.raises(RuntimeError), sessions.begin() as s:
        state.record(s, entry(2))
        raise RuntimeError("rolled back")
    first = state.report(key("node-1"), 1, req(request_id="q-1"), NOW)
    assert first.head.head_hash == NodeHistory([entry(1)]).head
    other = PolicyState(url, genesis_pin())
    with other.transaction() as s:
        other.record(s, entry(2))
    log, heads = state.signing_view()
    assert log.entries == (entry(1), entry(2)) and log.head == NodeHistory(log.entries).head
    assert heads == {}
    again = state.report(key("node-1"), 1, req(request_id="q-1"), NOW)  # the holder again
    assert again.head.head_hash == log.head


def test_peer_heads_are_added_moved_forward_and_kept(state: PolicyState) -> None:
    digest = b"\x01" * 32

    def head(node_id: int, n: int) -> HistoryHead:
        log = NodeHistory([entry(i) for i in range(1, n + 1)])
        return make_report(key(f"node-{node_id}"), node_id, log, digest, 0).head

    two, three = head(2, 2), head(3, 1)
    with state.transaction() as s:
        state.remember_heads(s, {2: two, 3: three})
    assert state.remembered_heads() == {2: two, 3: three}
    longer, shorter = head(2, 3), head(3, 0)
    with state.transaction() as s:
        state.remember_heads(s, {2: longer, 3: shorter})
    assert state.remembered_heads() == {2: longer, 3: three}
    assert state.signing_view()[1] == state.remembered_heads()
    with pytest.raises(ValueError), state.transaction() as s:
        state.remember_heads(s, {4: longer})
    assert 4 not in state.remembered_heads()
