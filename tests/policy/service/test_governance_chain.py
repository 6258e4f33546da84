"""Coordinator-side proposals and officer signatures (custody/governance/chain.py):
activation only at the active officer quorum, the bundle is what nodes accept, rejections,
superseded proposals, rollbacks, officer-set changes, restart and push failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from custody.governance.bundle import decode_bundle
from custody.governance.chain import PolicyGovernance, ProposalInfo, sign_rejection
from custody.governance.errors import GovernanceRefused
from custody.governance.tables import VersionRow
from policy.audit import AuditKind, verify_chain
from policy.governance import PolicyVersion, officer_message, sign_version
from signer_nodes.node.policy_state import PolicyState
from tests.policy.helpers import encode, key
from tests.policy.service.conftest import AUDIT_KEY, Gov
from tests.policy.service.db import database_url
from tests.policy.service.fixtures import GENESIS, doc_named, genesis_pin, with_officers


def propose(gov: Gov, document: bytes, officer: str, **kw: object) -> ProposalInfo:
    st = gov.chain.active()
    v = PolicyVersion(st.number + 1, st.version_id, document)
    return gov.chain.propose(
        document,
        number=v.number,
        parent_version_id=st.version_id,
        officer=officer,
        signature=sign_version(key(officer), officer, v).signature,
        **kw,  # type: ignore[arg-type]
    )


def approve(gov: Gov, proposal_id: str, officer: str, signer: str | None = None) -> ProposalInfo:
    sig = key(signer or officer).sign(officer_message(bytes.fromhex(proposal_id)))
    return gov.chain.approve(proposal_id, officer=officer, signature=sig)


def reject(gov: Gov, proposal_id: str, officer: str) -> ProposalInfo:
    s = sign_rejection(key(officer), officer, bytes.fromhex(proposal_id))
    return gov.chain.reject(proposal_id, officer=officer, signature=s.signature)


def refused(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(GovernanceRefused) as err:
        fn(*args, **kw)  # type: ignore[operator]
    return err.value.code


def test_quorum_activates_and_the_bundle_is_what_nodes_accept(tmp_path: Path, gov: Gov) -> None:
    p = propose(gov, doc_named("second"), "off-a")
    assert p.state == "OPEN" and [s.officer for s in p.approvals] == ["off-a"]
    assert gov.chain.active().number == 1 and gov.activated == []
    done = approve(gov, p.proposal_id, "off-c")
    assert done.state == "ACTIVATED" and done.push_error == ""
    assert gov.chain.active().number == 2 and len(gov.activated) == 1
    node = PolicyState(database_url(tmp_path, "node"), genesis_pin())
    assert node.activate(gov.activated[0]).version_id == gov.chain.active().version_id
    assert [v.version.number for v in gov.chain.versions()] == [1, 2]
    assert gov.chain.version().signatures == decode_bundle(gov.activated[0]).signatures


def test_below_quorum_or_non_officers_never_activate(gov: Gov) -> None:
    p = propose(gov, doc_named("second"), "off-a")
    assert approve(gov, p.proposal_id, "off-a").state == "OPEN"  # the same officer again
    assert refused(approve, gov, p.proposal_id, "mallory") == "POLICY_NOT_OFFICER"
    assert refused(approve, gov, p.proposal_id, "alice") == "POLICY_NOT_OFFICER"  # an approver
    assert refused(approve, gov, p.proposal_id, "off-b", "mallory") == "POLICY_SIGNATURE_INVALID"
    other = PolicyVersion(2, GENESIS.version_id, doc_named("other"))
    sig = sign_version(key("off-b"), "off-b", other).signature  # signed another version
    assert refused(gov.chain.approve, p.proposal_id, officer="off-b", signature=sig) == (
        "POLICY_SIGNATURE_INVALID"
    )
    assert refused(propose, gov, doc_named("x"), "mallory") == "POLICY_NOT_OFFICER"
    assert gov.chain.active().number == 1 and gov.activated == []
    assert [s.officer for s in gov.chain.proposal(p.proposal_id).approvals] == ["off-a"]


def test_proposals_must_extend_the_active_version_and_parse(gov: Gov) -> None:
    doc = doc_named("second")
    v = PolicyVersion(3, GENESIS.version_id, doc)
    sig = sign_version(key("off-a"), "off-a", v).signature
    kw = {"officer": "off-a", "signature": sig}
    assert refused(
        gov.chain.propose, doc, number=3, parent_version_id=GENESIS.version_id, **kw
    ) == ("POLICY_VERSION_NOT_NEXT")
    assert refused(gov.chain.propose, doc, number=2, parent_version_id=bytes(32), **kw) == (
        "POLICY_CHAIN_BROKEN"
    )
    with pytest.raises(GovernanceRefused) as err:
        propose(gov, encode({"format": "custody-policy/v1", "name": "x"}), "off-a")
    assert err.value.code == "POLICY_DOCUMENT_INVALID" and "/officers" in err.value.message


def test_rejections_and_superseded_proposals(gov: Gov) -> None:
    p = propose(gov, doc_named("second"), "off-a")
    assert reject(gov, p.proposal_id, "off-b").state == "OPEN"  # quorum still reachable
    assert refused(reject, gov, p.proposal_id, "off-a") == "PROPOSAL_ALREADY_VOTED"
    assert reject(gov, p.proposal_id, "off-c").state == "REJECTED"
    assert refused(approve, gov, p.proposal_id, "off-b") == "PROPOSAL_CLOSED"
    assert refused(propose, gov, doc_named("second"), "off-b") == "PROPOSAL_CLOSED"
    a = propose(gov, doc_named("a"), "off-a")
    b = propose(gov, doc_named("b"), "off-b")
    approve(gov, b.proposal_id, "off-c")
    assert gov.chain.proposal(a.proposal_id).state == "SUPERSEDED"
    assert refused(approve, gov, a.proposal_id, "off-c") == "PROPOSAL_CLOSED"
    assert [p.state for p in gov.chain.proposals("OPEN")] == []


def test_rollback_is_a_new_version_equal_to_an_old_one(gov: Gov) -> None:
    approve(gov, propose(gov, doc_named("second"), "off-a").proposal_id, "off-b")
    assert refused(propose, gov, doc_named("third"), "off-a", rollback_of=1) == (
        "POLICY_ROLLBACK_MISMATCH"
    )
    assert refused(propose, gov, GENESIS.document, "off-a", rollback_of=5) == (
        "POLICY_ROLLBACK_MISMATCH"
    )
    p = propose(gov, GENESIS.document, "off-a", rollback_of=1)
    assert p.state == "OPEN" and gov.chain.active().number == 2  # same quorum as any change
    approve(gov, p.proposal_id, "off-c")
    active = gov.chain.active()
    assert active.number == 3 and active.version.document == GENESIS.document
    assert gov.chain.version(3).rollback_of == 1


def test_officer_set_change_needs_the_old_quorum(gov: Gov) -> None:
    new_set = encode(with_officers("new-1", "new-2", "new-3"))
    assert refused(propose, gov, new_set, "new-1") == "POLICY_NOT_OFFICER"
    p = propose(gov, new_set, "off-a")
    assert refused(approve, gov, p.proposal_id, "new-2") == "POLICY_NOT_OFFICER"
    approve(gov, p.proposal_id, "off-b")
    third = encode(with_officers("new-1", "new-2", "new-3") | {"name": "third"})
    assert refused(propose, gov, third, "off-a") == "POLICY_NOT_OFFICER"
    q = propose(gov, third, "new-1")
    assert approve(gov, q.proposal_id, "new-3").state == "ACTIVATED"


def test_restart_reloads_and_a_tampered_mirror_is_refused(gov: Gov) -> None:
    approve(gov, propose(gov, doc_named("second"), "off-a").proposal_id, "off-b")
    again = PolicyGovernance(gov.store, genesis_pin())
    assert again.active().version_id == gov.chain.active().version_id
    with gov.store.transaction() as s:
        s.execute(update(VersionRow).where(VersionRow.number == 2).values(bundle=b"junk"))
    assert refused(PolicyGovernance, gov.store, genesis_pin()) == "POLICY_STATE_CORRUPT"


def test_push_failure_keeps_the_version_and_nodes_catch_up(tmp_path: Path, gov: Gov) -> None:
    def down(bundle: bytes) -> None:
        raise ConnectionError("node-2 unreachable")

    gov.chain.on_activated = down
    p = propose(gov, doc_named("second"), "off-a")
    done = approve(gov, p.proposal_id, "off-b")
    assert done.state == "ACTIVATED" and "unreachable" in done.push_error
    node = PolicyState(database_url(tmp_path, "lagging"), genesis_pin())
    assert node.activate_chain(gov.chain.bundles_since(node.active().number)).number == 2


def test_every_step_is_audited_and_the_log_verifies(gov: Gov) -> None:
    p = propose(gov, doc_named("second"), "off-a")
    reject(gov, p.proposal_id, "off-c")
    approve(gov, p.proposal_id, "off-b")
    records, checkpoints = gov.store.audit_log()
    verify_chain(records, checkpoints, AUDIT_KEY.public_key())
    events = [r.body for r in records if r.kind == AuditKind.POLICY_CHANGE]
    assert [e.split('"event":"')[1].split('"')[0] for e in events] == [
        "genesis",
        "proposed",
        "approved",
        "rejected",
        "approved",
        "activated",
    ]
    assert checkpoints and checkpoints[0].sequence == 0
