"""Pending signing requests and approvals (custody/governance/approvals.py): intake checks
match the nodes' codes (self-approval, expiry, foreign or forged approvals), the
pre-evaluation names what is missing, and the approvals gathered are what a node accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from custody.governance.approvals import RequestApprovals, RequestStatus
from custody.governance.chain import PolicyGovernance
from custody.governance.errors import GovernanceRefused
from custody.governance.store import GovernanceStore
from policy.authorize import Authorization, authorize
from policy.document import VelocityScope
from policy.governance import PolicyVersion, sign_version
from policy.history import History, HistoryEntry
from policy.request import ApprovalDecision, SigningRequest, sign_approval
from signer_nodes.node.policy_state import GenesisPin
from tests.policy.helpers import T0, encode, isig, key, req, with_rules
from tests.policy.service.conftest import AUDIT_KEY
from tests.policy.service.db import database_url
from tests.policy.service.fixtures import QUORUM, FakeClock, bundle

RULES = (
    {
        "id": "small",
        "match": {
            "assets": ["ETH"],
            "amount": {"max": "1000"},
            "velocity": {"scope": "tenant", "window_seconds": 3600, "max_amount": "1500"},
        },
        "action": "allow",
    },
    {
        "id": "big",
        "match": {"assets": ["ETH"]},
        "action": {"require_approval": {"group": "treasury"}},
    },
    {"id": "ops", "match": {"assets": ["USDC"]}, "action": {"require_approval": {"group": "ops"}}},
)
DOC = encode(with_rules(*RULES))
GENESIS = PolicyVersion(1, bytes(32), DOC)


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(T0)
        self.changed: list[RequestStatus] = []
        self.store = GovernanceStore(database_url(tmp_path, "c"), AUDIT_KEY, clock=self.clock)
        pin = GenesisPin(bundle(GENESIS, *QUORUM), GENESIS.document_hash)
        self.chain = PolicyGovernance(self.store, pin)
        self.approvals = RequestApprovals(
            self.store, self.chain, on_request_changed=self.changed.append
        )

    def decide(
        self,
        who: str,
        r: SigningRequest,
        *,
        decision: ApprovalDecision = ApprovalDecision.APPROVE,
        expires_at: int = T0 + 600,
        version_id: bytes | None = None,
        signer: str | None = None,
    ) -> RequestStatus:
        vid = version_id or self.chain.active().version_id
        a = sign_approval(
            key(signer or who),
            approver=who,
            request=r,
            decision=decision,
            expires_at=expires_at,
            policy_version_id=vid,
        )
        return self.approvals.decide(
            r.tenant,
            r.request_id,
            approver=who,
            decision=decision,
            expires_at=expires_at,
            policy_version_id=vid,
            signature=a.signature,
        )


@pytest.fixture
def env(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def refused(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(GovernanceRefused) as err:
        fn(*args, **kw)  # type: ignore[operator]
    return err.value.code


BIG = req(request_id="big-1", amount=5000, created_at=T0)


def test_quorum_of_approvers_then_a_node_accepts(env: Setup) -> None:
    st = env.approvals.register(BIG, isig(BIG))
    assert (st.state, st.code, st.requirement) == (
        "PENDING_APPROVAL",
        "APPROVAL_MISSING",
        "treasury>=2",
    )
    assert env.decide("alice", BIG).state == "PENDING_APPROVAL"
    done = env.decide("bob", BIG)
    assert done.state == "APPROVED" and done.code is None and done.approvers == ("alice", "bob")
    assert [c.state for c in env.changed] == ["PENDING_APPROVAL", "APPROVED"]
    assert env.approvals.pending("acme") == []
    node = authorize(
        env.chain.active(),
        request=BIG,
        initiator_signature=isig(BIG),
        approvals=env.approvals.approvals_for("acme", "big-1"),
        policy_version_id=env.chain.active().version_id,
        key_tenant="acme",
        history=History(),
        now=T0 + 1,
    )
    assert isinstance(node, Authorization)


def test_registration_checks_the_initiator(env: Setup) -> None:
    assert refused(env.approvals.register, BIG, isig(BIG, signer="acme-ops")) == (
        "INITIATOR_SIGNATURE_INVALID"
    )
    stranger = req(request_id="x", initiator="mallory")
    assert refused(env.approvals.register, stranger, isig(stranger)) == "INITIATOR_UNKNOWN"
    foreign = req(request_id="y", tenant="globex")
    assert refused(env.approvals.register, foreign, isig(foreign)) == "INITIATOR_TENANT_MISMATCH"
    env.approvals.register(BIG, isig(BIG))
    assert env.approvals.register(BIG, isig(BIG)).state == "PENDING_APPROVAL"  # idempotent
    other = req(request_id="big-1", amount=6000, created_at=T0)
    assert refused(env.approvals.register, other, isig(other)) == "REQUEST_ID_REUSED"
    assert refused(env.approvals.status, "globex", "big-1") == "REQUEST_NOT_FOUND"


def test_the_initiator_cannot_approve_its_own_request(env: Setup) -> None:
    # acme-ops is both an initiator and a registered approver (member of group "ops")
    r = req(request_id="usdc-1", initiator="acme-ops", asset="USDC", amount=5)
    env.approvals.register(r, isig(r))
    assert refused(env.decide, "acme-ops", r) == "SELF_APPROVAL"
    assert env.decide("alice", r).state == "APPROVED"


def test_foreign_and_forged_approvals_are_refused_with_the_node_codes(env: Setup) -> None:
    env.approvals.register(BIG, isig(BIG))
    assert refused(env.decide, "mallory", BIG) == "APPROVER_UNKNOWN"
    assert refused(env.decide, "alice", BIG, signer="bob") == "APPROVAL_SIGNATURE_INVALID"
    assert refused(env.decide, "alice", BIG, version_id=b"\x01" * 32) == "APPROVAL_POLICY_MISMATCH"
    assert env.approvals.approvals_for("acme", "big-1") == ()


def test_expired_approvals(env: Setup) -> None:
    env.approvals.register(BIG, isig(BIG))
    assert refused(env.decide, "alice", BIG, expires_at=T0) == "APPROVAL_EXPIRED"
    env.decide("alice", BIG, expires_at=T0 + 60)
    assert env.decide("bob", BIG, expires_at=T0 + 600).state == "APPROVED"
    env.clock.now = T0 + 60  # alice's approval lapses (it counts while now < expires_at)
    st = env.approvals.status("acme", "big-1")
    assert (st.state, st.code) == ("PENDING_APPROVAL", "APPROVAL_EXPIRED")
    assert [s.requirement for s in env.approvals.pending()] == ["treasury>=2"]
    # a renewed approval by the same approver replaces the lapsed one
    assert env.decide("alice", BIG, expires_at=T0 + 900).state == "APPROVED"


def test_a_rejection_is_final(env: Setup) -> None:
    env.approvals.register(BIG, isig(BIG))
    env.decide("alice", BIG)
    st = env.decide("carol", BIG, decision=ApprovalDecision.REJECT)
    assert (st.state, st.code) == ("REJECTED", "APPROVAL_REJECTED")
    assert refused(env.decide, "bob", BIG) == "REQUEST_CLOSED"


def test_a_policy_change_voids_pending_approvals(env: Setup) -> None:
    env.approvals.register(BIG, isig(BIG))
    old = env.chain.active().version_id
    env.decide("alice", BIG)
    doc = encode(with_rules(*RULES, doc=None) | {"name": "v2"})
    v2 = PolicyVersion(2, old, doc)
    p = env.chain.propose(
        doc,
        number=2,
        parent_version_id=old,
        officer="off-a",
        signature=sign_version(key("off-a"), "off-a", v2).signature,
    )
    env.chain.approve(
        p.proposal_id, officer="off-b", signature=sign_version(key("off-b"), "off-b", v2).signature
    )
    assert env.approvals.approvals_for("acme", "big-1") == ()
    assert refused(env.decide, "bob", BIG, version_id=old) == "APPROVAL_POLICY_MISMATCH"
    env.decide("alice", BIG)
    assert env.decide("bob", BIG).state == "APPROVED"


def test_pre_evaluation_uses_the_coordinators_account(env: Setup) -> None:
    small = req(request_id="s-1", amount=900)
    st = env.approvals.missing_approvals(small, now=T0)
    assert (st.state, st.rule_id, st.requirement) == ("ALLOWED", "small", None)
    env.approvals.record_signed(HistoryEntry.for_request(req(request_id="old", amount=800), T0))
    st = env.approvals.missing_approvals(small, now=T0 + 10)
    assert (st.state, st.rule_id, st.requirement) == ("PENDING_APPROVAL", "big", "treasury>=2")
    assert st.reasons == ("VELOCITY_EXCEEDED(small)", "RULE_REQUIRES_APPROVAL(big)")
    # the window has passed
    assert env.approvals.missing_approvals(small, now=T0 + 3600).state == "ALLOWED"
    blocked = req(request_id="b", asset="BTC")
    assert env.approvals.missing_approvals(blocked).code == "BLOCKED_BY_DEFAULT"
    assert [e.request_id for e in env.approvals.coordinator_view("acme", T0 - 1)] == ["old"]
    assert env.approvals.coordinator_view("globex", T0 - 1) == ()


def test_signed_requests_close_and_are_audited(env: Setup) -> None:
    env.approvals.register(BIG, isig(BIG))
    env.decide("alice", BIG)
    env.decide("bob", BIG)
    env.approvals.record_signed(HistoryEntry.for_request(BIG, T0 + 5))
    env.approvals.record_signed(HistoryEntry.for_request(BIG, T0 + 6))  # a retry: once
    assert env.approvals.status("acme", "big-1").state == "SIGNED"
    assert refused(env.decide, "carol", BIG) == "REQUEST_CLOSED"
    clash = HistoryEntry.for_request(req(request_id="big-1", amount=1), T0)
    assert refused(env.approvals.record_signed, clash) == "REQUEST_ID_REUSED"
    env.approvals.record_refusal("acme", "big-1", "APPROVAL_MISSING", node_id=2)
    kinds = [r.kind for r in env.store.audit_log()[0]]
    assert kinds.count("signature") == 1 and kinds.count("approval") == 2
    assert kinds[-1] == "refusal" and "request" in kinds and "decision" in kinds


def test_stale_requests_leave_the_approvers_list(env: Setup) -> None:
    env.approvals.register(BIG, isig(BIG))
    assert len(env.approvals.pending()) == 1
    env.clock.now = T0 + 86_401  # older than the policy's request_max_age_seconds
    st = env.approvals.status("acme", "big-1")
    assert (st.state, st.code) == ("EXPIRED", "REQUEST_EXPIRED")
    assert refused(env.decide, "alice", BIG, expires_at=T0 + 90_000) == "REQUEST_CLOSED"
    assert env.approvals.pending() == []
    future = req(request_id="f-1", created_at=env.clock.now + 301)
    assert env.approvals.missing_approvals(future).code == "REQUEST_FROM_FUTURE"


def test_the_signed_account_follows_commits_not_rollbacks(env: Setup, tmp_path: Path) -> None:
    """The in-memory account (custody/governance/signed_history.py) holds what committed:
    a signature recorded in a transaction that rolls back is never counted, one that
    commits is counted at once, and a fresh process reading the database agrees."""
    first = HistoryEntry.for_request(req(request_id="one", amount=100), T0)
    env.approvals.record_signed(first)
    assert [e.request_id for e in env.approvals.coordinator_view("acme", T0 - 1)] == ["one"]
    lost = HistoryEntry.for_request(req(request_id="lost", amount=100), T0 + 1)
    with pytest.raises(RuntimeError), env.store.transaction() as s:
        env.approvals.record_signed(lost, session=s)
        raise RuntimeError("the caller's transaction fails after recording")
    kept = HistoryEntry.for_request(req(request_id="kept", amount=100), T0 + 2)
    with env.store.transaction() as s:
        env.approvals.record_signed(kept, session=s)
        # not committed yet: not in the account
        assert "kept" not in [e.request_id for e in env.approvals.coordinator_view("acme", 0)]
    ids = [e.request_id for e in env.approvals.coordinator_view("acme", T0 - 1)]
    assert sorted(ids) == ["kept", "one"]
    assert env.approvals.history("acme", T0 + 10).window(VelocityScope.TENANT, "acme", None, 0) == (
        2,
        200,
    )
    # an older read than the memory holds reloads from the database
    assert [e.request_id for e in env.approvals.coordinator_view("acme", T0 - 10)] == [
        "one",
        "kept",
    ]
    fresh = RequestApprovals(env.store, env.chain)
    assert fresh.coordinator_view("acme", T0 - 1) == env.approvals.coordinator_view("acme", T0 - 1)
