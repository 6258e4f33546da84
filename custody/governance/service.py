"""GovernanceService (``custody.governance.v1``): protobuf at the edge, the domain inside.

Transport authentication is the cluster's mTLS: the client certificate's common name is
either ``coordinator`` (the operator's certificate: every tenant, and the audit export) or a
tenant of the cluster (its own tenant's requests only). Authority over policy and requests
does not come from the certificate but from the Ed25519 signatures the calls carry, which
the domain (:mod:`.chain`, :mod:`.approvals`) verifies. Errors are ``google.rpc.Status``
with an ``ErrorInfo`` reason (:mod:`signer_nodes.grpc_errors`), listed in
``docs/governance.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from custody._pb.custody.governance.v1 import governance_pb2 as pb
from custody._pb.custody.governance.v1 import governance_pb2_grpc
from custody.governance.approvals import RequestApprovals, RequestStatus
from custody.governance.chain import PolicyGovernance, ProposalInfo, VersionInfo
from custody.governance.errors import Fault, GovernanceRefused
from custody.governance.store import GovernanceStore
from custody.pki import COORDINATOR_CLIENT
from policy.governance import OfficerSignature
from policy.request import ApprovalDecision
from signer_nodes.grpc_errors import ServiceError, abort
from signer_nodes.node.authorization import approval_to_proto, request_to_proto
from signer_nodes.node.server import peer_common_names

T = TypeVar("T")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GovernanceService"].full_name
_STATUS = {
    Fault.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Fault.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    Fault.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Fault.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    Fault.EXISTS: grpc.StatusCode.ALREADY_EXISTS,
}
PROPOSAL_STATES = {
    "OPEN": pb.PROPOSAL_STATE_OPEN,
    "ACTIVATED": pb.PROPOSAL_STATE_ACTIVATED,
    "REJECTED": pb.PROPOSAL_STATE_REJECTED,
    "SUPERSEDED": pb.PROPOSAL_STATE_SUPERSEDED,
}
PROPOSAL_STATE_NAMES = {v: k for k, v in PROPOSAL_STATES.items()}
REQUEST_STATES = {
    "PENDING_APPROVAL": pb.REQUEST_STATE_PENDING_APPROVAL,
    "APPROVED": pb.REQUEST_STATE_APPROVED,
    "ALLOWED": pb.REQUEST_STATE_ALLOWED,
    "REJECTED": pb.REQUEST_STATE_REJECTED,
    "BLOCKED": pb.REQUEST_STATE_BLOCKED,
    "SIGNED": pb.REQUEST_STATE_SIGNED,
    "EXPIRED": pb.REQUEST_STATE_EXPIRED,
    "CANCELLED": pb.REQUEST_STATE_CANCELLED,
}


def _sigs(sigs: Iterable[OfficerSignature]) -> list[pb.OfficerSignature]:
    return [pb.OfficerSignature(officer=s.officer, signature=s.signature) for s in sigs]


def version_message(v: VersionInfo) -> pb.PolicyVersion:
    return pb.PolicyVersion(
        number=v.version.number,
        version_id=v.version.version_id,
        parent_version_id=v.version.parent_hash,
        document_hash=v.version.document_hash,
        document=v.version.document,
        signatures=_sigs(v.signatures),
        rollback_of=v.rollback_of or 0,
        proposer=v.proposer,
        activate_time=v.activated_at.isoformat(),
        bundle=v.bundle,
    )


def proposal_message(p: ProposalInfo) -> pb.Proposal:
    return pb.Proposal(
        version_id=p.version.version_id,
        number=p.version.number,
        parent_version_id=p.version.parent_hash,
        document_hash=p.version.document_hash,
        document=p.version.document,
        proposer=p.proposer,
        rollback_of=p.rollback_of or 0,
        state=PROPOSAL_STATES[p.state],
        approvals=_sigs(p.approvals),
        rejections=_sigs(p.rejections),
        quorum=p.quorum,
        create_time=p.created_at.isoformat(),
        push_error=p.push_error,
    )


def decision_message(st: RequestStatus) -> pb.RequestDecision:
    return pb.RequestDecision(
        request=request_to_proto(st.request),
        request_digest=st.request_digest,
        state=REQUEST_STATES[st.state],
        outcome=st.outcome,
        rule_id=st.rule_id or "",
        reasons=list(st.reasons),
        requirement=st.requirement or "",
        code=st.code or "",
        detail=st.detail,
        approvals=[approval_to_proto(a) for a in st.approvals],
        approvers=list(st.approvers),
        policy_version=st.policy_number,
        policy_version_id=st.policy_version_id,
    )


def _invalid(reason: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, reason, message)


def _version_id(raw: bytes) -> str:
    if len(raw) != 32:
        raise _invalid("INVALID_VERSION_ID", "a version id is 32 bytes")
    return raw.hex()


class GovernanceServicer(governance_pb2_grpc.GovernanceServiceServicer):
    def __init__(
        self,
        chain: PolicyGovernance,
        approvals: RequestApprovals,
        store: GovernanceStore,
        tenants: Iterable[str],
    ) -> None:
        self.chain = chain
        self.approvals = approvals
        self.store = store
        self.tenants = frozenset(tenants)

    # -- edge plumbing -----------------------------------------------------------------

    def _caller(self, context: grpc.ServicerContext) -> str:
        names = peer_common_names(context)
        name = names[0].decode() if len(names) == 1 else ""
        if name != COORDINATOR_CLIENT and name not in self.tenants:
            abort(
                context,
                ServiceError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "NOT_A_CLIENT",
                    "the client certificate is neither the coordinator's nor a tenant's",
                ),
            )
        return name

    def _run(self, context: grpc.ServicerContext, fn: Callable[[str], T], request: Message) -> T:
        caller = self._caller(context)
        if len(UnknownFieldSet(request)):
            abort(
                context,
                _invalid("UNKNOWN_FIELD", "the request has fields this server does not understand"),
            )
        try:
            return fn(caller)
        except GovernanceRefused as e:
            abort(context, ServiceError(_STATUS[e.fault], e.code, e.message))
        except ServiceError as e:
            abort(context, e)

    def _tenant(self, caller: str, asked: str) -> str | None:
        """The tenant a call may see: a tenant certificate only its own (another tenant's
        requests are indistinguishable from missing ones); the coordinator any (``None``:
        all)."""
        if caller == COORDINATOR_CLIENT:
            return asked or None
        if asked and asked != caller:
            raise GovernanceRefused("REQUEST_NOT_FOUND", Fault.NOT_FOUND, "no such request")
        return caller

    def _named_tenant(self, caller: str, asked: str) -> str:
        """:meth:`_tenant` for a call about one request: it must name a tenant (the
        coordinator names it; a tenant certificate is its own)."""
        tenant = self._tenant(caller, asked)
        if tenant is None:
            raise _invalid("TENANT_REQUIRED", "name the request's tenant")
        return tenant

    # -- policy ------------------------------------------------------------------------

    def ProposePolicy(
        self, request: pb.ProposePolicyRequest, context: grpc.ServicerContext
    ) -> pb.Proposal:
        return self._run(
            context,
            lambda _c: proposal_message(
                self.chain.propose(
                    request.document,
                    number=request.number,
                    parent_version_id=request.parent_version_id,
                    officer=request.officer,
                    signature=request.signature,
                    rollback_of=request.rollback_of or None,
                )
            ),
            request,
        )

    def ApprovePolicy(
        self, request: pb.ApprovePolicyRequest, context: grpc.ServicerContext
    ) -> pb.Proposal:
        return self._run(
            context,
            lambda _c: proposal_message(
                self.chain.approve(
                    _version_id(request.version_id),
                    officer=request.officer,
                    signature=request.signature,
                )
            ),
            request,
        )

    def RejectPolicy(
        self, request: pb.RejectPolicyRequest, context: grpc.ServicerContext
    ) -> pb.Proposal:
        return self._run(
            context,
            lambda _c: proposal_message(
                self.chain.reject(
                    _version_id(request.version_id),
                    officer=request.officer,
                    signature=request.signature,
                )
            ),
            request,
        )

    def GetPolicy(
        self, request: pb.GetPolicyRequest, context: grpc.ServicerContext
    ) -> pb.PolicyVersion:
        def go(_c: str) -> pb.PolicyVersion:
            if request.number >= 1 << 63:
                raise _invalid("INVALID_VERSION_NUMBER", "version numbers are below 2^63")
            return version_message(self.chain.version(request.number or None))

        return self._run(context, go, request)

    def ListPolicyVersions(
        self, request: pb.ListPolicyVersionsRequest, context: grpc.ServicerContext
    ) -> pb.ListPolicyVersionsResponse:
        return self._run(
            context,
            lambda _c: pb.ListPolicyVersionsResponse(
                versions=[version_message(v) for v in self.chain.versions()],
                active=self.chain.active().number,
            ),
            request,
        )

    def ListProposals(
        self, request: pb.ListProposalsRequest, context: grpc.ServicerContext
    ) -> pb.ListProposalsResponse:
        def go(_c: str) -> pb.ListProposalsResponse:
            state = PROPOSAL_STATE_NAMES.get(request.state)
            if request.state and state is None:
                raise _invalid("INVALID_STATE", "unknown proposal state")
            proposals = self.chain.proposals(state)
            return pb.ListProposalsResponse(proposals=[proposal_message(p) for p in proposals])

        return self._run(context, go, request)

    # -- requests ----------------------------------------------------------------------

    def ListPendingRequests(
        self, request: pb.ListPendingRequestsRequest, context: grpc.ServicerContext
    ) -> pb.ListPendingRequestsResponse:
        return self._run(
            context,
            lambda c: pb.ListPendingRequestsResponse(
                requests=[
                    decision_message(s)
                    for s in self.approvals.pending(self._tenant(c, request.tenant))
                ]
            ),
            request,
        )

    def _decide(
        self,
        request: pb.DecideRequestRequest,
        context: grpc.ServicerContext,
        decision: ApprovalDecision,
    ) -> pb.RequestDecision:
        def go(caller: str) -> pb.RequestDecision:
            tenant = self._named_tenant(caller, request.tenant)
            return decision_message(
                self.approvals.decide(
                    tenant,
                    request.request_id,
                    approver=request.approver,
                    decision=decision,
                    expires_at=request.expires_at,
                    policy_version_id=request.policy_version_id,
                    signature=request.signature,
                )
            )

        return self._run(context, go, request)

    def ApproveRequest(
        self, request: pb.DecideRequestRequest, context: grpc.ServicerContext
    ) -> pb.RequestDecision:
        return self._decide(request, context, ApprovalDecision.APPROVE)

    def RejectRequest(
        self, request: pb.DecideRequestRequest, context: grpc.ServicerContext
    ) -> pb.RequestDecision:
        return self._decide(request, context, ApprovalDecision.REJECT)

    def GetRequestDecision(
        self, request: pb.GetRequestDecisionRequest, context: grpc.ServicerContext
    ) -> pb.RequestDecision:
        def go(caller: str) -> pb.RequestDecision:
            tenant = self._named_tenant(caller, request.tenant)
            return decision_message(self.approvals.status(tenant, request.request_id))

        return self._run(context, go, request)

    def CancelRequest(
        self, request: pb.CancelRequestRequest, context: grpc.ServicerContext
    ) -> pb.RequestDecision:
        """The initiator's signed cancellation (:meth:`RequestApprovals.cancel`); a tenant
        certificate may cancel its own tenant's requests only."""

        def go(caller: str) -> pb.RequestDecision:
            tenant = self._named_tenant(caller, request.tenant)
            return decision_message(
                self.approvals.cancel(
                    tenant,
                    request.request_id,
                    initiator=request.initiator,
                    signature=request.signature,
                )
            )

        return self._run(context, go, request)

    # -- audit -------------------------------------------------------------------------

    def ExportAudit(
        self, request: pb.ExportAuditRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.AuditLine]:
        def go(caller: str) -> list[str]:
            if caller != COORDINATOR_CLIENT:
                raise ServiceError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "AUDIT_FORBIDDEN",
                    "only the coordinator's certificate may export the audit log",
                )
            return self.store.export_audit().splitlines()

        for line in self._run(context, go, request):
            yield pb.AuditLine(line=line)
