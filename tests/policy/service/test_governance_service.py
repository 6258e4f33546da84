"""GovernanceService over mTLS (custody/governance/service.py and client.py), on a data dir
from ``custody.init.init_cluster`` with the dev governance profile."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody._pb.custody.governance.v1 import governance_pb2 as pb
from custody.governance.approvals import RequestStatus, sign_cancellation
from custody.governance.client import ClientCheckFailed, GovernanceClient, version_of
from custody.governance.genesis import (
    approver_key_path,
    initiator_key_path,
    officer_key_path,
)
from custody.governance.keys import load_private_key, load_public_key
from custody.pki import CertificateAuthority
from policy.audit import import_jsonl, verify_chain
from policy.governance import PolicyVersion
from policy.request import (
    ApprovalDecision,
    RequestType,
    SigningRequest,
    sign_approval,
    sign_request,
)
from signer_nodes.grpc_errors import reason_of
from signer_nodes.node.policy_state import PolicyState
from tests.policy.service.conftest import Served
from tests.policy.service.db import database_url


def officer(s: Served, name: str) -> tuple[str, Ed25519PrivateKey]:
    return name, load_private_key(officer_key_path(s.files.root, name))


def reason(fn: object, *args: object, **kw: object) -> tuple[str | None, grpc.StatusCode]:
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kw)  # type: ignore[operator]
    return reason_of(err.value), err.value.code()  # type: ignore[attr-defined]


def renamed(document: bytes, name: str) -> bytes:
    return document.replace(b'"name": "starter"', f'"name": "{name}"'.encode(), 1)


def acme_transfer(request_id: str) -> SigningRequest:
    """An acme transfer of 5 ETH: above the starter policy's 1 ETH, so it waits for the
    treasury's approval."""
    return SigningRequest(
        request_id=request_id,
        tenant="acme",
        initiator="acme-initiator",
        key_id="acme-key-1",
        request_type=RequestType.TRANSFER,
        chain="ethereum",
        asset="ETH",
        destination="0x" + "ab" * 20,
        amount=5 * 10**18,
        payload=b"\x02tx",
        created_at=int(time.time()),
    )


def test_officers_reach_quorum_and_nodes_accept_the_push(tmp_path: Path, served: Served) -> None:
    doc = renamed(served.files.document.read_bytes(), "second")
    with GovernanceClient.from_data_dir(served.data_dir) as c:
        p = c.propose(doc, *officer(served, "officer-1"))
        assert p.state == pb.PROPOSAL_STATE_OPEN and p.quorum == 2
        assert served.pushed == []
        done = c.approve_policy(p.version_id.hex()[:12], *officer(served, "officer-3"))
        assert done.state == pb.PROPOSAL_STATE_ACTIVATED
        assert c.version().number == 2 and c.versions().active == 2
    node = PolicyState.for_node(database_url(tmp_path, "node1"), served.config.node_dir(1))
    assert node.activate(served.pushed[0]).policy.document.name == "second"


def test_non_officers_and_wrong_keys_are_refused(served: Served) -> None:
    doc = renamed(served.files.document.read_bytes(), "second")
    approver_key = load_private_key(approver_key_path(served.files.root, "acme-approver-1"))
    with GovernanceClient.from_data_dir(served.data_dir) as c:
        assert reason(c.propose, doc, "acme-approver-1", approver_key) == (
            "POLICY_NOT_OFFICER",
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert reason(c.propose, doc, "officer-1", approver_key) == (
            "POLICY_SIGNATURE_INVALID",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        p = c.propose(doc, *officer(served, "officer-1"))
        ref = p.version_id.hex()
        assert reason(c.approve_policy, ref, "officer-2", approver_key)[0] == (
            "POLICY_SIGNATURE_INVALID"
        )
        # one officer signing twice is still one signature
        again = c.approve_policy(ref, *officer(served, "officer-1"))
        assert again.state == pb.PROPOSAL_STATE_OPEN and len(again.approvals) == 1
        bad = pb.ApprovePolicyRequest(version_id=b"\x00" * 5, officer="officer-2", signature=b"")
        assert reason(c.stub.ApprovePolicy, bad)[0] == "INVALID_VERSION_ID"
        assert c.version().number == 1 and served.pushed == []


def test_rollback_and_history(served: Served) -> None:
    genesis_doc = served.files.document.read_bytes()
    with GovernanceClient.from_data_dir(served.data_dir) as c:
        p = c.propose(renamed(genesis_doc, "second"), *officer(served, "officer-2"))
        c.approve_policy(p.version_id.hex(), *officer(served, "officer-1"))
        r = c.rollback(1, *officer(served, "officer-3"))
        assert r.rollback_of == 1 and r.state == pb.PROPOSAL_STATE_OPEN
        c.approve_policy(r.version_id.hex(), *officer(served, "officer-2"))
        versions = c.versions().versions
        assert [v.number for v in versions] == [1, 2, 3]
        assert versions[2].document == genesis_doc and versions[2].rollback_of == 1
        assert reason(c.version, 9)[0] == "POLICY_VERSION_NOT_FOUND"
        assert reason(c.version, 2**64 - 1)[0] == "INVALID_VERSION_NUMBER"


def test_approvers_approve_pending_requests_per_tenant(served: Served) -> None:
    ini = load_private_key(initiator_key_path(served.files.root, "acme-initiator"))
    request = acme_transfer("pay-1")
    changed: list[RequestStatus] = []
    served.gov.approvals.on_request_changed = changed.append
    st = served.gov.approvals.register(request, sign_request(ini, "acme-initiator", request))
    assert (st.state, st.requirement) == ("PENDING_APPROVAL", "acme-treasury>=1")
    with GovernanceClient.from_data_dir(served.data_dir, "acme") as acme:
        assert [d.request.request_id for d in acme.pending()] == ["pay-1"]
    with GovernanceClient.from_data_dir(served.data_dir, "globex") as globex:
        assert globex.pending() == []
        assert reason(globex.decision, "acme", "pay-1")[0] == "REQUEST_NOT_FOUND"
    with GovernanceClient.from_data_dir(served.data_dir) as c:
        wrong = load_private_key(approver_key_path(served.files.root, "globex-approver-1"))
        assert reason(c.decide, "acme", "pay-1", "acme-approver-1", wrong)[0] == (
            "APPROVAL_SIGNATURE_INVALID"
        )
        key = load_private_key(approver_key_path(served.files.root, "acme-approver-1"))
        d = c.decide("acme", "pay-1", "acme-approver-1", key)
        assert d.state == pb.REQUEST_STATE_APPROVED and list(d.approvers) == ["acme-approver-1"]
        assert [a.approver for a in d.approvals] == ["acme-approver-1"]
        other = load_private_key(approver_key_path(served.files.root, "acme-approver-2"))
        r = c.decide("acme", "pay-1", "acme-approver-2", other, decision=ApprovalDecision.REJECT)
        assert r.state == pb.REQUEST_STATE_REJECTED and r.code == "APPROVAL_REJECTED"
    assert [c.state for c in changed] == ["APPROVED", "REJECTED"]


def test_a_call_about_one_request_must_name_its_tenant(served: Served) -> None:
    """The coordinator's certificate may act for any tenant, so every call about one
    request (GetRequestDecision, Approve/RejectRequest, CancelRequest) must name one, even
    when the rest of the call is valid and signed; a tenant's certificate names its own by
    leaving the field empty."""
    ini = load_private_key(initiator_key_path(served.files.root, "acme-initiator"))
    request = acme_transfer("pay-2")
    served.gov.approvals.register(request, sign_request(ini, "acme-initiator", request))
    required = ("TENANT_REQUIRED", grpc.StatusCode.INVALID_ARGUMENT)
    approver = load_private_key(approver_key_path(served.files.root, "acme-approver-1"))
    with GovernanceClient.from_data_dir(served.data_dir) as c:
        assert reason(c.decision, "", "pay-2") == required
        version = c.decision("acme", "pay-2").policy_version_id
        expires_at = int(time.time()) + 3600
        for decision, call in (
            (ApprovalDecision.APPROVE, c.stub.ApproveRequest),
            (ApprovalDecision.REJECT, c.stub.RejectRequest),
        ):
            signed = sign_approval(
                approver,
                approver="acme-approver-1",
                request=request,
                decision=decision,
                expires_at=expires_at,
                policy_version_id=version,
            )
            message = pb.DecideRequestRequest(
                request_id="pay-2",
                approver="acme-approver-1",
                expires_at=expires_at,
                policy_version_id=version,
                signature=signed.signature,
            )
            assert reason(call, message) == required
        cancel = pb.CancelRequestRequest(
            request_id="pay-2",
            initiator="acme-initiator",
            signature=sign_cancellation(ini, "acme-initiator", request),
        )
        assert reason(c.stub.CancelRequest, cancel) == required
        # nothing was recorded: the request still waits, with no approval
        still = c.decision("acme", "pay-2")
        assert still.state == pb.REQUEST_STATE_PENDING_APPROVAL and not still.approvals
    with GovernanceClient.from_data_dir(served.data_dir, "acme") as acme:
        assert acme.decision("", "pay-2").request.request_id == "pay-2"


def test_audit_export_is_for_the_coordinator_and_verifies(served: Served) -> None:
    with GovernanceClient.from_data_dir(served.data_dir, "acme") as acme:
        assert reason(acme.export_audit)[0] == "AUDIT_FORBIDDEN"
    with GovernanceClient.from_data_dir(served.data_dir) as c:
        c.propose(renamed(served.files.document.read_bytes(), "x"), *officer(served, "officer-1"))
        records, checkpoints = import_jsonl(c.export_audit())
    verify_chain(records, checkpoints, load_public_key(served.config.coordinator_dir / "audit.pub"))
    assert [r.kind for r in records] == ["policy_change"] * 3


def test_clients_outside_the_cluster_roles_are_refused(served: Served) -> None:
    ca = CertificateAuthority.load(served.data_dir / "ca")
    paths = ca.issue(
        "mallory", "tenant", served.data_dir / "mallory", "client", server=False, client=True
    )
    client = GovernanceClient(
        served.config.coordinator_address,
        served.config.ca_cert.read_bytes(),
        paths.cert.read_bytes(),
        paths.key.read_bytes(),
    )
    with client:
        assert reason(client.version) == ("NOT_A_CLIENT", grpc.StatusCode.PERMISSION_DENIED)


def test_the_client_refuses_to_sign_a_mislabelled_version() -> None:
    v = PolicyVersion(2, b"\x01" * 32, b"{}")
    shown = pb.Proposal(
        version_id=PolicyVersion(2, b"\x01" * 32, b"{ }").version_id,
        number=2,
        parent_version_id=v.parent_hash,
        document=v.document,
    )
    with pytest.raises(ClientCheckFailed) as err:
        version_of(shown)
    assert err.value.code == "SERVER_MISMATCH"
