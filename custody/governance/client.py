"""A client for GovernanceService that signs for officers and approvers locally.

The client never signs an identifier it has not recomputed itself: an officer's signature
goes over the version id derived from the document, number and parent the client received,
and an approver's over the digest of the request fields it received. A coordinator that
shows one document but asks for a signature on another id is caught before anything is
signed (``SERVER_MISMATCH``).

    with GovernanceClient.from_data_dir("./custody-data") as gov:
        gov.propose(Path("policy.json").read_bytes(), "officer-1", officer_key)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody._pb.custody.governance.v1 import governance_pb2 as pb
from custody._pb.custody.governance.v1 import governance_pb2_grpc
from custody.config import ClusterConfig
from custody.governance.approvals import sign_cancellation
from custody.governance.chain import sign_rejection
from policy.governance import PolicyVersion, sign_version
from policy.request import ApprovalDecision, SigningRequest, sign_approval
from signer_nodes.grpc_errors import ServiceError
from signer_nodes.node.authorization import request_from_proto


class ClientCheckFailed(Exception):
    """What the server sent does not match what was asked or what it claims."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def signing_request(m: pb.SigningRequest) -> SigningRequest:
    """The domain request from its protobuf form (validated on construction)."""
    try:
        if not m.amount:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_MISSING", "no amount")
        return request_from_proto(m)
    except ServiceError as e:
        raise ClientCheckFailed(
            "SERVER_MISMATCH", f"malformed request from the server: {e.message}"
        ) from None


def version_of(p: pb.Proposal | pb.PolicyVersion) -> PolicyVersion:
    """Recompute a proposal's or version's id from its content; refuse a mislabelled one."""
    v = PolicyVersion(p.number, p.parent_version_id, p.document)
    if v.version_id != p.version_id:
        raise ClientCheckFailed("SERVER_MISMATCH", "the version id does not match its content")
    return v


class GovernanceClient:
    def __init__(self, address: str, ca: bytes, cert: bytes, key: bytes) -> None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        self.channel = grpc.secure_channel(address, creds)
        self.stub = governance_pb2_grpc.GovernanceServiceStub(self.channel)

    @classmethod
    def from_data_dir(cls, data_dir: Path | str, tenant: str | None = None) -> GovernanceClient:
        """Connect with the coordinator's client certificate (operators, officers,
        approvers), or with ``tenant``'s."""
        config = ClusterConfig.load(data_dir)
        cdir = config.coordinator_dir if tenant is None else config.tenant_dir(tenant)
        return cls(
            config.coordinator_address,
            config.ca_cert.read_bytes(),
            (cdir / "client.pem").read_bytes(),
            (cdir / "client.key").read_bytes(),
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GovernanceClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------

    def version(self, number: int = 0) -> pb.PolicyVersion:
        """Version ``number`` (0: the active one), its id checked against its content."""
        v: pb.PolicyVersion = self.stub.GetPolicy(pb.GetPolicyRequest(number=number))
        version_of(v)
        if number and v.number != number:
            raise ClientCheckFailed("SERVER_MISMATCH", f"asked for {number}, got {v.number}")
        return v

    def versions(self) -> pb.ListPolicyVersionsResponse:
        out: pb.ListPolicyVersionsResponse = self.stub.ListPolicyVersions(
            pb.ListPolicyVersionsRequest()
        )
        return out

    def proposals(
        self, state: pb.ProposalState.ValueType = pb.PROPOSAL_STATE_UNSPECIFIED
    ) -> list[pb.Proposal]:
        return list(self.stub.ListProposals(pb.ListProposalsRequest(state=state)).proposals)

    def proposal(self, ref: str) -> pb.Proposal:
        """The proposal whose version id (hex) starts with ``ref`` (at least 8 characters)."""
        ref = ref.lower()
        if len(ref) < 8:
            raise ClientCheckFailed("AMBIGUOUS_PROPOSAL", "give at least 8 hex characters")
        found = [p for p in self.proposals() if p.version_id.hex().startswith(ref)]
        if len(found) != 1:
            what = "no proposal" if not found else f"{len(found)} proposals"
            code = "PROPOSAL_NOT_FOUND" if not found else "AMBIGUOUS_PROPOSAL"
            raise ClientCheckFailed(code, f"{what} with id {ref}...")
        version_of(found[0])
        return found[0]

    # -- officers ----------------------------------------------------------------------

    def propose(
        self,
        document: bytes,
        officer: str,
        key: Ed25519PrivateKey,
        *,
        rollback_of: int | None = None,
    ) -> pb.Proposal:
        """Propose ``document`` as the version after the active one, signed by ``officer``."""
        active = self.version()
        v = PolicyVersion(active.number + 1, active.version_id, document)
        result: pb.Proposal = self.stub.ProposePolicy(
            pb.ProposePolicyRequest(
                document=document,
                number=v.number,
                parent_version_id=v.parent_hash,
                officer=officer,
                signature=sign_version(key, officer, v).signature,
                rollback_of=rollback_of or 0,
            )
        )
        return result

    def rollback(self, to: int, officer: str, key: Ed25519PrivateKey) -> pb.Proposal:
        """Propose a new version whose document is version ``to``'s."""
        return self.propose(self.version(to).document, officer, key, rollback_of=to)

    def approve_policy(self, ref: str, officer: str, key: Ed25519PrivateKey) -> pb.Proposal:
        v = version_of(self.proposal(ref))
        result: pb.Proposal = self.stub.ApprovePolicy(
            pb.ApprovePolicyRequest(
                version_id=v.version_id,
                officer=officer,
                signature=sign_version(key, officer, v).signature,
            )
        )
        return result

    def reject_policy(self, ref: str, officer: str, key: Ed25519PrivateKey) -> pb.Proposal:
        v = version_of(self.proposal(ref))
        result: pb.Proposal = self.stub.RejectPolicy(
            pb.RejectPolicyRequest(
                version_id=v.version_id,
                officer=officer,
                signature=sign_rejection(key, officer, v.version_id).signature,
            )
        )
        return result

    # -- approvers ---------------------------------------------------------------------

    def pending(self, tenant: str = "") -> list[pb.RequestDecision]:
        return list(
            self.stub.ListPendingRequests(pb.ListPendingRequestsRequest(tenant=tenant)).requests
        )

    def decision(self, tenant: str, request_id: str) -> pb.RequestDecision:
        d: pb.RequestDecision = self.stub.GetRequestDecision(
            pb.GetRequestDecisionRequest(tenant=tenant, request_id=request_id)
        )
        return d

    def decide(
        self,
        tenant: str,
        request_id: str,
        approver: str,
        key: Ed25519PrivateKey,
        *,
        decision: ApprovalDecision = ApprovalDecision.APPROVE,
        expires_in: int = 3600,
    ) -> pb.RequestDecision:
        """Approve or reject a pending request as ``approver``, after recomputing its
        digest from the fields received; the approval names the active policy version."""
        current = self.decision(tenant, request_id)
        request = signing_request(current.request)
        if (request.tenant, request.request_id) != (tenant, request_id) or (
            request.digest() != current.request_digest
        ):
            raise ClientCheckFailed("SERVER_MISMATCH", "the request does not match its digest")
        expires_at = int(time.time()) + expires_in
        approval = sign_approval(
            key,
            approver=approver,
            request=request,
            decision=decision,
            expires_at=expires_at,
            policy_version_id=current.policy_version_id,
        )
        message = pb.DecideRequestRequest(
            tenant=tenant,
            request_id=request_id,
            approver=approver,
            expires_at=expires_at,
            policy_version_id=current.policy_version_id,
            signature=approval.signature,
        )
        call = (
            self.stub.ApproveRequest
            if decision is ApprovalDecision.APPROVE
            else self.stub.RejectRequest
        )
        result: pb.RequestDecision = call(message)
        return result

    # -- initiators --------------------------------------------------------------------

    def cancel(
        self, tenant: str, request_id: str, initiator: str, key: Ed25519PrivateKey
    ) -> pb.RequestDecision:
        """Cancel a request waiting for approvals as its ``initiator``, after recomputing
        its digest from the fields received (the cancellation signs that digest)."""
        current = self.decision(tenant, request_id)
        request = signing_request(current.request)
        if (request.tenant, request.request_id) != (tenant, request_id) or (
            request.digest() != current.request_digest
        ):
            raise ClientCheckFailed("SERVER_MISMATCH", "the request does not match its digest")
        if request.initiator != initiator:
            raise ClientCheckFailed(
                "NOT_THE_INITIATOR", f"the request's initiator is {request.initiator}"
            )
        result: pb.RequestDecision = self.stub.CancelRequest(
            pb.CancelRequestRequest(
                tenant=tenant,
                request_id=request_id,
                initiator=initiator,
                signature=sign_cancellation(key, initiator, request),
            )
        )
        return result

    # -- audit -------------------------------------------------------------------------

    def export_audit(self) -> str:
        """The audit log as JSON lines (coordinator certificate only)."""
        return "".join(line.line + "\n" for line in self.stub.ExportAudit(pb.ExportAuditRequest()))
