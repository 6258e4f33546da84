"""Officer-quorum governance: quorum of distinct current officers, hash chain, replay,
officer-set changes and rollbacks."""

from __future__ import annotations

import copy

import pytest

from policy.errors import GovernanceError, ReasonCode
from policy.governance import (
    ChainState,
    OfficerSignature,
    PolicyVersion,
    SignedPolicyVersion,
    activate_chain,
    document_hash,
    genesis,
    propose,
    propose_rollback,
    sign_version,
    verify_and_activate,
)
from tests.policy.helpers import base_doc, encode, key, pub, state_for


def signed(version: PolicyVersion, *officers: str) -> SignedPolicyVersion:
    return SignedPolicyVersion(version, tuple(sign_version(key(o), o, version) for o in officers))


def doc_named(name: str) -> bytes:
    d = base_doc()
    d["name"] = name
    return encode(d)


@pytest.fixture
def state() -> ChainState:
    return state_for(base_doc())


def test_genesis_is_pinned_by_hash() -> None:
    data = encode(base_doc())
    with pytest.raises(GovernanceError) as err:
        genesis(data, expected_document_hash=document_hash(data + b" "))
    assert err.value.code is ReasonCode.POLICY_CHAIN_BROKEN


def test_activation_at_quorum(state: ChainState) -> None:
    v2 = propose(state, doc_named("second"))
    new = verify_and_activate(state, signed(v2, "off-a", "off-c"))
    assert new.number == 2 and new.version.parent_hash == state.version_id
    assert new.policy.document.name == "second"
    assert new.version_id != state.version_id


def _code(state: ChainState, bundle: SignedPolicyVersion) -> ReasonCode:
    with pytest.raises(GovernanceError) as err:
        verify_and_activate(state, bundle)
    return err.value.code


def test_fewer_than_quorum_is_never_activated(state: ChainState) -> None:
    v2 = propose(state, doc_named("second"))
    assert _code(state, signed(v2, "off-a")) is ReasonCode.POLICY_QUORUM_NOT_MET
    assert _code(state, signed(v2)) is ReasonCode.POLICY_QUORUM_NOT_MET
    # the same officer twice is one signer
    assert _code(state, signed(v2, "off-a", "off-a")) is ReasonCode.POLICY_QUORUM_NOT_MET


def test_non_officer_and_forged_signatures(state: ChainState) -> None:
    v2 = propose(state, doc_named("second"))
    assert _code(state, signed(v2, "off-a", "mallory")) is ReasonCode.POLICY_NOT_OFFICER
    # an approver (not an officer) cannot stand in for one
    assert _code(state, signed(v2, "off-a", "alice")) is ReasonCode.POLICY_NOT_OFFICER
    # mallory signs under an officer's name
    forged = OfficerSignature("off-b", key("mallory").sign(b"x" * 32))
    bundle = SignedPolicyVersion(v2, (sign_version(key("off-a"), "off-a", v2), forged))
    assert _code(state, bundle) is ReasonCode.POLICY_SIGNATURE_INVALID
    # signatures over another version do not carry over
    other = propose(state, doc_named("other"))
    moved = SignedPolicyVersion(v2, signed(other, "off-a", "off-b").signatures)
    assert _code(state, moved) is ReasonCode.POLICY_SIGNATURE_INVALID


def test_replay_and_broken_chain(state: ChainState) -> None:
    v2 = signed(propose(state, doc_named("second")), "off-a", "off-b")
    s2 = verify_and_activate(state, v2)
    assert _code(s2, v2) is ReasonCode.POLICY_VERSION_NOT_NEXT  # replay of the active one
    v3 = signed(propose(s2, doc_named("third")), "off-a", "off-b")
    s3 = verify_and_activate(s2, v3)
    assert _code(s3, v2) is ReasonCode.POLICY_VERSION_NOT_NEXT  # replay of an old one
    # a version 4 whose parent is not version 3
    fork = PolicyVersion(4, v2.version.version_id, doc_named("fork"))
    assert _code(s3, signed(fork, "off-a", "off-b")) is ReasonCode.POLICY_CHAIN_BROKEN
    # skipping a number
    skip = PolicyVersion(5, s3.version_id, doc_named("skip"))
    assert _code(s3, signed(skip, "off-a", "off-b")) is ReasonCode.POLICY_VERSION_NOT_NEXT
    # catching up applies in order, all or nothing
    assert activate_chain(state, [v2, v3]).version_id == s3.version_id
    with pytest.raises(GovernanceError):
        activate_chain(state, [v3, v2])


def test_invalid_document_is_not_activated_even_with_quorum(state: ChainState) -> None:
    bad = PolicyVersion(2, state.version_id, b'{"format": "custody-policy/v1"}')
    assert _code(state, signed(bad, "off-a", "off-b")) is ReasonCode.POLICY_DOCUMENT_INVALID
    with pytest.raises(GovernanceError):
        propose(state, b"{}")


def test_officer_set_change_needs_the_current_quorum(state: ChainState) -> None:
    d = copy.deepcopy(base_doc())
    d["officers"] = {"quorum": 1, "members": {"mallory": {"public_key": pub("mallory")}}}
    takeover = propose(state, encode(d))
    # the incoming officer cannot sign herself in, nor can one current officer
    assert _code(state, signed(takeover, "mallory")) is ReasonCode.POLICY_NOT_OFFICER
    assert _code(state, signed(takeover, "off-a")) is ReasonCode.POLICY_QUORUM_NOT_MET
    # with the current quorum the change happens, and from then on the new set governs
    s2 = verify_and_activate(state, signed(takeover, "off-a", "off-b"))
    v3 = propose(s2, doc_named("third"))
    assert _code(s2, signed(v3, "off-a", "off-b")) is ReasonCode.POLICY_NOT_OFFICER
    assert verify_and_activate(s2, signed(v3, "mallory")).number == 3


def test_rollback_is_a_new_version_with_the_old_document(state: ChainState) -> None:
    s2 = verify_and_activate(state, signed(propose(state, doc_named("second")), "off-a", "off-b"))
    back = propose_rollback(s2, state.version)
    assert back.number == 3 and back.parent_hash == s2.version_id
    assert back.document_hash == state.version.document_hash
    assert _code(s2, signed(back, "off-c")) is ReasonCode.POLICY_QUORUM_NOT_MET
    s3 = verify_and_activate(s2, signed(back, "off-b", "off-c"))
    assert s3.policy.document == state.policy.document
    assert s3.version_id not in (state.version_id, s2.version_id)
    # a document that was never active cannot be "rolled back" to
    with pytest.raises(GovernanceError):
        propose_rollback(s3, PolicyVersion(2, s2.version.parent_hash, doc_named("never")))
