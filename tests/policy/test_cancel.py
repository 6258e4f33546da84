"""An initiator's signed cancellation of a request waiting for approvals
(custody/governance/approvals.py): final, audited, refused approvals afterwards, never
cleared for signing again, ordered against concurrent approvals; refusals change
nothing. SQLite, or PostgreSQL with ``CUSTODY_TEST_POSTGRES``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from custody.governance.approvals import (
    RequestApprovals,
    RequestStatus,
    cancellation_message,
    sign_cancellation,
)
from custody.governance.chain import PolicyGovernance
from custody.governance.errors import GovernanceRefused
from custody.governance.store import GovernanceStore
from policy.audit import verify_chain
from policy.governance import PolicyVersion
from policy.history import HistoryEntry
from policy.request import ApprovalDecision, SigningRequest, sign_approval
from signer_nodes.node.policy_state import GenesisPin
from tests.policy.helpers import T0, encode, isig, key, req, with_rules
from tests.policy.service.conftest import AUDIT_KEY
from tests.policy.service.db import database_url
from tests.policy.service.fixtures import QUORUM, FakeClock, bundle

RULES = (
    {"id": "small", "match": {"assets": ["ETH"], "amount": {"max": "1000"}}, "action": "allow"},
    {
        "id": "big",
        "match": {"assets": ["ETH"]},
        "action": {"require_approval": {"group": "treasury"}},
    },
)
GENESIS = PolicyVersion(1, bytes(32), encode(with_rules(*RULES)))


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(T0)
        self.changed: list[RequestStatus] = []
        self.store = GovernanceStore(database_url(tmp_path, "c"), AUDIT_KEY, clock=self.clock)
        pin = GenesisPin(bundle(GENESIS, *QUORUM), GENESIS.document_hash)
        self.chain = PolicyGovernance(self.store, pin)
        self.approvals = RequestApprovals(
            self.store, self.chain, on_request_changed=self.changed.append
        )

    def register(self, request_id: str, amount: int = 5000) -> SigningRequest:
        r = req(request_id=request_id, amount=amount, created_at=T0)
        self.approvals.register(r, isig(r))
        return r

    def decide(
        self, who: str, r: SigningRequest, decision: ApprovalDecision = ApprovalDecision.APPROVE
    ) -> RequestStatus:
        vid = self.chain.active().version_id
        a = sign_approval(
            key(who),
            approver=who,
            request=r,
            decision=decision,
            expires_at=T0 + 600,
            policy_version_id=vid,
        )
        return self.approvals.decide(
            r.tenant,
            r.request_id,
            approver=who,
            decision=decision,
            expires_at=T0 + 600,
            policy_version_id=vid,
            signature=a.signature,
        )

    def cancel(
        self, r: SigningRequest, *, initiator: str = "acme-bot", signer: str | None = None
    ) -> RequestStatus:
        return self.approvals.cancel(
            r.tenant,
            r.request_id,
            initiator=initiator,
            signature=sign_cancellation(key(signer or initiator), initiator, r),
        )

    def records(self) -> int:
        return len(self.store.audit_log()[0])


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def refused(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(GovernanceRefused) as err:
        fn(*args, **kw)  # type: ignore[operator]
    return err.value.code


def test_a_cancelled_request_is_final_and_never_cleared_again(env: Env) -> None:
    r = env.register("big-1")
    assert env.decide("alice", r).state == "PENDING_APPROVAL"  # one of two approvals
    done = env.cancel(r)
    assert (done.state, done.code) == ("CANCELLED", "REQUEST_CANCELLED")
    assert [(c.state, c.code) for c in env.changed][-1] == ("CANCELLED", "REQUEST_CANCELLED")
    # the approval that would have cleared it is refused; nothing is sent to nodes
    assert refused(env.decide, "bob", r) == "REQUEST_CLOSED"
    assert env.approvals.approvals_for("acme", "big-1") == ()
    # what the coordinator asks before it signs (also after a restart) stays a refusal
    again = env.approvals.register(r, isig(r))
    assert (again.state, again.code) == ("CANCELLED", "REQUEST_CANCELLED")
    assert env.approvals.status("acme", "big-1").code == "REQUEST_CANCELLED"
    assert env.approvals.pending("acme") == []
    # idempotent: the same cancellation again changes nothing
    n = env.records()
    assert env.cancel(r).state == "CANCELLED" and env.records() == n


def test_the_cancellation_is_in_the_audit_chain_and_verifiable(env: Env) -> None:
    r = env.register("big-2")
    env.cancel(r)
    records, checkpoints = env.store.audit_log()
    verify_chain(records, checkpoints, AUDIT_KEY.public_key())
    body = json.loads(records[-1].body)
    assert records[-1].kind == "decision"
    assert (body["state"], body["code"], body["cancelled_by"]) == (
        "CANCELLED",
        "REQUEST_CANCELLED",
        "acme-bot",
    )
    assert body["request_digest"] == r.digest().hex()
    # anyone holding the initiator's public key can check the statement
    key("acme-bot").public_key().verify(
        bytes.fromhex(body["signature"]), cancellation_message("acme-bot", r.digest())
    )


def test_only_the_requests_initiator_cancels_it(env: Env) -> None:
    r = env.register("big-3")
    other = env.register("big-4")
    before = env.records()
    assert refused(env.cancel, r, initiator="acme-ops") == "NOT_THE_INITIATOR"
    assert refused(env.cancel, r, signer="acme-ops") == "INITIATOR_SIGNATURE_INVALID"
    forged = sign_cancellation(key("acme-bot"), "acme-bot", other)  # another request's
    assert (
        refused(env.approvals.cancel, "acme", "big-3", initiator="acme-bot", signature=forged)
        == "INITIATOR_SIGNATURE_INVALID"
    )
    assert refused(env.cancel, req(request_id="nope")) == "REQUEST_NOT_FOUND"
    assert refused(
        env.approvals.cancel, "globex", "big-3", initiator="acme-bot", signature=forged
    ) == ("REQUEST_NOT_FOUND")
    assert env.approvals.status("acme", "big-3").state == "PENDING_APPROVAL"
    assert env.records() == before


def test_requests_past_waiting_are_not_cancelled(env: Env) -> None:
    approved = env.register("big-5")
    env.decide("alice", approved)
    assert env.decide("bob", approved).state == "APPROVED"
    allowed = env.register("small-1", amount=10)
    rejected = env.register("big-6")
    env.decide("carol", rejected, ApprovalDecision.REJECT)
    signed = env.register("big-7")
    env.decide("alice", signed)
    env.decide("bob", signed)
    env.approvals.record_signed(HistoryEntry.for_request(signed, T0 + 1))
    stale = env.register("big-8")
    before = env.records()
    assert refused(env.cancel, approved) == "REQUEST_APPROVED"
    assert refused(env.cancel, allowed) == "REQUEST_APPROVED"
    assert refused(env.cancel, rejected) == "REQUEST_CLOSED"
    assert refused(env.cancel, signed) == "REQUEST_CLOSED"
    states = [env.approvals.status("acme", r.request_id).state for r in (approved, rejected)]
    assert states == ["APPROVED", "REJECTED"]
    assert len(env.approvals.approvals_for("acme", "big-5")) == 2
    assert env.records() == before
    env.clock.now = T0 + 86_401  # older than request_max_age_seconds
    assert refused(env.cancel, stale) == "REQUEST_CLOSED"
    assert env.records() == before


def test_cancel_and_approvals_race_into_one_order(env: Env) -> None:
    """The approvals that complete the quorum race the initiator's cancellation, twenty
    times (every other time the first approval is already in, so the last one and the
    cancellation race head to head): each request ends either cancelled, with no
    approval accepted after it and never cleared for signing, or approved with the
    cancellation refused; never both."""
    for n in range(20):
        r = env.register(f"race-{n}")
        racing: tuple[str, ...] = ("alice", "bob")
        if n % 2:
            env.decide("alice", r)
            racing = ("bob",)
        approvals: list[str] = []
        cancel: list[str] = []
        barrier = threading.Barrier(2)

        def approve(
            r: SigningRequest = r,
            who: tuple[str, ...] = racing,
            out: list[str] = approvals,
            go: threading.Barrier = barrier,
        ) -> None:
            go.wait()
            for approver in who:
                try:
                    out.append(env.decide(approver, r).state)
                except GovernanceRefused as exc:
                    out.append(exc.code)

        def cancel_it(
            r: SigningRequest = r, out: list[str] = cancel, go: threading.Barrier = barrier
        ) -> None:
            go.wait()
            try:
                out.append(env.cancel(r).state)
            except GovernanceRefused as exc:
                out.append(exc.code)

        threads = [threading.Thread(target=approve), threading.Thread(target=cancel_it)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = env.approvals.status("acme", r.request_id)
        cleared = [c for c in env.changed if c.request.request_id == r.request_id and not c.code]
        if cancel == ["CANCELLED"]:
            assert "APPROVED" not in approvals and approvals[-1] == "REQUEST_CLOSED"
            assert (final.state, final.code) == ("CANCELLED", "REQUEST_CANCELLED")
            assert env.approvals.approvals_for("acme", r.request_id) == () and not cleared
        else:
            assert cancel == ["REQUEST_APPROVED"] and approvals[-1] == "APPROVED"
            assert (final.state, final.code) == ("APPROVED", None) and cleared
