"""The node gate under a lying coordinator: forged, dropped, misdirected, self-made,
expired and rejected approvals; replayed policies; swapped payloads; tenant confusion.

A "node" here is an honest gate (its own ChainState and history); the coordinator is the
test, which may hand each node anything. Honest nodes must refuse with the stable code."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from policy.authorize import Authorization, Refusal, authorize
from policy.errors import ReasonCode
from policy.evaluate import Outcome
from policy.governance import (
    ChainState,
    SignedPolicyVersion,
    propose,
    sign_version,
    verify_and_activate,
)
from policy.history import History, HistoryEntry
from policy.request import (
    Approval,
    ApprovalDecision,
    InitiatorSignature,
    RequestType,
    SigningRequest,
)
from tests.policy.helpers import (
    T0,
    approve,
    base_doc,
    encode,
    isig,
    key,
    req,
    state_for,
    with_rules,
)

NOW = T0 + 60
AND_OR = {
    "require_approval": {
        "all_of": [{"group": "treasury"}, {"any_of": [{"group": "risk"}, {"group": "ops"}]}]
    }
}


def policy_state(action: Any = AND_OR) -> ChainState:
    return state_for(
        with_rules(
            {"id": "no-raw", "match": {"request_types": ["raw_digest"]}, "action": "block"},
            {
                "id": "small",
                "match": {"assets": ["ETH"], "amount": {"max": "999"}},
                "action": "allow",
            },
            {"id": "big", "match": {"assets": ["ETH"]}, "action": action},
        )
    )


def gate(
    state: ChainState,
    request: SigningRequest,
    approvals: list[Approval] | tuple[Approval, ...] = (),
    *,
    signature: InitiatorSignature | None = None,
    version_id: bytes | None = None,
    key_tenant: str = "acme",
    history: History | None = None,
    now: int = NOW,
) -> Authorization | Refusal:
    return authorize(
        state,
        request=request,
        initiator_signature=signature or isig(request),
        approvals=list(approvals),
        policy_version_id=version_id or state.version_id,
        key_tenant=key_tenant,
        history=history or History(),
        now=now,
    )


def code(result: Authorization | Refusal) -> ReasonCode | None:
    return result.code if isinstance(result, Refusal) else None


def test_allowed_request_authorizes_and_records() -> None:
    s = policy_state()
    r = req(amount=500)
    out = gate(s, r)
    assert isinstance(out, Authorization)
    assert (
        out.decision.outcome is Outcome.ALLOW
        and out.entry.amount == 500
        and out.entry.timestamp == NOW
    )


@pytest.mark.parametrize(
    ("approvers", "expected"),
    [
        (("alice", "bob", "dave"), None),
        (("alice", "carol", "acme-ops"), None),
        (("bob", "carol"), ReasonCode.APPROVAL_MISSING),
        (("alice", "dave"), ReasonCode.APPROVAL_MISSING),
        (("dave", "erin"), ReasonCode.APPROVAL_MISSING),
        ((), ReasonCode.APPROVAL_MISSING),
    ],
)
def test_quorum_with_and_or_groups(approvers: tuple[str, ...], expected: ReasonCode | None) -> None:
    s = policy_state()
    r = req(amount=5000)
    out = gate(s, r, [approve(a, r, s) for a in approvers])
    if expected is None:
        assert isinstance(out, Authorization), out
        assert out.approvers == tuple(sorted(approvers))
    else:
        assert code(out) is expected


def test_alice_in_two_groups_counts_for_both() -> None:
    """alice is in treasury and ops, so alice + bob meet all_of(treasury>=2, ops>=1)."""
    s = policy_state()
    r = req(amount=5000)
    assert isinstance(gate(s, r, [approve(a, r, s) for a in ("alice", "bob")]), Authorization)


def test_duplicate_approvals_count_once() -> None:
    s = policy_state({"require_approval": {"group": "treasury"}})
    r = req(amount=5000)
    a = approve("alice", r, s)
    assert (
        code(gate(s, r, [a, a, approve("alice", r, s, expires_at=NOW + 999)]))
        is ReasonCode.APPROVAL_MISSING
    )


def test_self_approval_refused() -> None:
    s = policy_state({"require_approval": {"group": "ops"}})
    r = req(amount=5000, initiator="acme-ops")
    assert code(gate(s, r, [approve("acme-ops", r, s)])) is ReasonCode.SELF_APPROVAL
    # even if the others would meet quorum without it
    both = [approve("acme-ops", r, s), approve("alice", r, s)]
    assert code(gate(s, r, both)) is ReasonCode.SELF_APPROVAL
    assert isinstance(gate(s, r, [approve("alice", r, s)]), Authorization)


def test_self_approval_by_same_key_under_another_id() -> None:
    d = base_doc()
    d["approvers"]["bots-alias"] = {"public_key": d["initiators"]["acme-bot"]["public_key"]}
    d["approver_groups"]["risk"]["members"].append("bots-alias")
    s = state_for(
        with_rules(
            {"id": "x", "match": {}, "action": {"require_approval": {"group": "risk"}}}, doc=d
        )
    )
    r = req()
    alias = approve("acme-bot", r, s)
    alias = dataclasses.replace(alias, approver="bots-alias")
    alias = dataclasses.replace(alias, signature=key("acme-bot").sign(alias.message()))
    assert code(gate(s, r, [alias])) is ReasonCode.SELF_APPROVAL


def test_expired_approvals() -> None:
    s = policy_state({"require_approval": {"group": "risk"}})
    r = req(amount=5000)
    assert isinstance(gate(s, r, [approve("dave", r, s, expires_at=NOW + 1)]), Authorization)
    assert code(gate(s, r, [approve("dave", r, s, expires_at=NOW)])) is ReasonCode.APPROVAL_EXPIRED
    assert (
        code(gate(s, r, [approve("dave", r, s, expires_at=NOW - 5)])) is ReasonCode.APPROVAL_EXPIRED
    )


def test_any_approver_may_reject() -> None:
    s = policy_state({"require_approval": {"group": "risk"}})
    r = req(amount=5000)
    reject = approve("erin", r, s, decision=ApprovalDecision.REJECT)
    assert code(gate(s, r, [approve("dave", r, s), reject])) is ReasonCode.APPROVAL_REJECTED
    # a rejection also stops a request that needs no approval at all
    small = req(amount=10)
    assert (
        code(gate(s, small, [approve("erin", small, s, decision=ApprovalDecision.REJECT)]))
        is ReasonCode.APPROVAL_REJECTED
    )


def test_coordinator_forges_or_misdirects_approvals() -> None:
    s = policy_state({"require_approval": {"group": "risk"}})
    r = req(amount=5000)
    good = approve("dave", r, s)
    forged = dataclasses.replace(good, signature=key("coordinator").sign(good.message()))
    assert code(gate(s, r, [forged])) is ReasonCode.APPROVAL_SIGNATURE_INVALID
    relabelled = dataclasses.replace(good, approver="erin")
    assert code(gate(s, r, [relabelled])) is ReasonCode.APPROVAL_SIGNATURE_INVALID
    flipped = dataclasses.replace(
        approve("dave", r, s, decision=ApprovalDecision.REJECT), decision=ApprovalDecision.APPROVE
    )
    assert code(gate(s, r, [flipped])) is ReasonCode.APPROVAL_SIGNATURE_INVALID
    extended = dataclasses.replace(good, expires_at=good.expires_at + 10**6)
    assert code(gate(s, r, [extended])) is ReasonCode.APPROVAL_SIGNATURE_INVALID
    stranger = approve("mallory", r, s)
    assert code(gate(s, r, [stranger])) is ReasonCode.APPROVER_UNKNOWN
    other = req(request_id="req-2", amount=5000)
    assert code(gate(s, r, [approve("dave", other, s)])) is ReasonCode.APPROVAL_REQUEST_MISMATCH
    old_policy = approve("dave", r, s, version_id=b"\x07" * 32)
    assert code(gate(s, r, [old_policy])) is ReasonCode.APPROVAL_POLICY_MISMATCH
    # dropping approvals only ever leads to a refusal
    assert code(gate(s, r, [])) is ReasonCode.APPROVAL_MISSING


def test_coordinator_swaps_payload_after_approval() -> None:
    s = policy_state({"require_approval": {"group": "risk"}})
    r = req(amount=5000)
    approvals = [approve("dave", r, s)]
    assert isinstance(gate(s, r, approvals), Authorization)
    for change in (
        {"payload": b"\x02evil"},
        {"destination": "0x" + "66" * 20},
        {"amount": 4999 + 2},
        {"key_id": "key-hot-2"},
        {"derivation_path": (1,)},
    ):
        swapped = dataclasses.replace(r, **change)
        # with the original initiator signature: the initiator never signed this
        assert (
            code(gate(s, swapped, approvals, signature=isig(r)))
            is ReasonCode.INITIATOR_SIGNATURE_INVALID
        )
        # even if the initiator did sign the new payload, the approvals were for the old one
        assert code(gate(s, swapped, approvals)) is ReasonCode.APPROVAL_REQUEST_MISMATCH


def test_coordinator_replays_an_old_policy() -> None:
    s1 = policy_state()
    d = with_rules({"id": "nothing", "match": {}, "action": "block"})
    v2 = propose(s1, encode(d))
    s2 = verify_and_activate(
        s1, SignedPolicyVersion(v2, tuple(sign_version(key(o), o, v2) for o in ("off-a", "off-b")))
    )
    r = req(amount=10)
    # nodes on version 2 refuse a request the coordinator labels with version 1
    assert code(gate(s2, r, version_id=s1.version_id)) is ReasonCode.POLICY_VERSION_MISMATCH
    assert code(gate(s2, r)) is ReasonCode.BLOCKED_BY_RULE
    # approvals given under version 1 do not count under version 2
    s_old = policy_state({"require_approval": {"group": "risk"}})
    big = req(amount=5000)
    s_new = verify_and_activate(
        s_old,
        SignedPolicyVersion(
            (
                v := propose(
                    s_old,
                    encode(
                        with_rules(
                            {
                                "id": "all",
                                "match": {},
                                "action": {"require_approval": {"group": "risk"}},
                            }
                        )
                    ),
                )
            ),
            tuple(sign_version(key(o), o, v) for o in ("off-b", "off-c")),
        ),
    )
    assert (
        code(gate(s_new, big, [approve("dave", big, s_old)])) is ReasonCode.APPROVAL_POLICY_MISMATCH
    )


def test_initiator_checks() -> None:
    s = policy_state()
    r = req(amount=10)
    assert code(gate(s, req(initiator="mallory"))) is ReasonCode.INITIATOR_UNKNOWN
    # globex's initiator cannot act for acme
    assert code(gate(s, req(initiator="globex-bot"))) is ReasonCode.INITIATOR_TENANT_MISMATCH
    # acme-ops cannot sign as acme-bot
    assert (
        code(gate(s, r, signature=isig(r, signer="acme-ops")))
        is ReasonCode.INITIATOR_SIGNATURE_INVALID
    )
    relabel = InitiatorSignature(initiator="acme-ops", signature=isig(r).signature)
    assert code(gate(s, r, signature=relabel)) is ReasonCode.INITIATOR_SIGNATURE_INVALID
    # acme cannot use globex's key
    assert code(gate(s, r, key_tenant="globex")) is ReasonCode.KEY_TENANT_MISMATCH


def test_freshness_and_request_id_reuse() -> None:
    s = policy_state()
    r = req(amount=10)
    assert code(gate(s, r, now=T0 - 301)) is ReasonCode.REQUEST_FROM_FUTURE
    assert isinstance(gate(s, r, now=T0 - 300), Authorization)
    assert isinstance(gate(s, r, now=T0 + 86_400), Authorization)
    assert code(gate(s, r, now=T0 + 86_401)) is ReasonCode.REQUEST_EXPIRED
    done = HistoryEntry.for_request(r, NOW - 5)
    other = dataclasses.replace(r, amount=11)
    assert code(gate(s, other, history=History([done]))) is ReasonCode.REQUEST_ID_REUSED
    # the same request again (a retry with fresh presignatures) is not counted twice
    assert isinstance(gate(s, r, history=History([done])), Authorization)


def test_block_codes() -> None:
    s = policy_state()
    assert code(gate(s, req(request_type=RequestType.RAW_DIGEST))) is ReasonCode.BLOCKED_BY_RULE
    assert code(gate(s, req(asset="BTC", chain="bitcoin"))) is ReasonCode.BLOCKED_BY_DEFAULT
    v = state_for(
        with_rules(
            {
                "id": "v",
                "match": {
                    "assets": ["ETH"],
                    "velocity": {"scope": "tenant", "window_seconds": 60, "max_amount": "100"},
                },
                "action": "allow",
            }
        )
    )
    past = HistoryEntry.for_request(req(request_id="old", amount=60), NOW - 30)
    assert code(gate(v, req(amount=50), history=History([past]))) is ReasonCode.VELOCITY_EXCEEDED
    assert isinstance(gate(v, req(amount=40), history=History([past])), Authorization)


def test_honest_nodes_agree() -> None:
    """Three honest gates given the same inputs decide the same, byte for byte."""
    s = policy_state()
    r = req(amount=5000)
    approvals = [approve(a, r, s) for a in ("alice", "bob", "erin")]
    outs = [
        gate(state_for_copy, r, approvals) for state_for_copy in (policy_state(), policy_state(), s)
    ]
    assert outs[0] == outs[1] == outs[2]
    assert isinstance(outs[0], Authorization)
