"""The node's policy gate at the wire edge: protobuf -> domain types, then
:func:`policy.authorize.authorize_with_peers`, then the check that what the
coordinator asks the node to sign is exactly what the request's payload says.

ARCHITECTURE.md section 1: a signing request reaches each node with the
initiator's signature, the approvals and the claimed policy version; the node
verifies all of it against its OWN policy copy, derives the digest it signs
from the structured payload (:mod:`policy.payloads`), reconciles velocity
history with the other signers' signed reports, and only then contributes.
Refusals carry the stable reason codes of :class:`policy.errors.ReasonCode`
and :class:`policy.payloads.PayloadCode`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from custody._pb.custody.governance.v1 import governance_pb2 as gpb
from custody._pb.custody.node.v1 import node_pb2
from policy.authorize import Authorization, Refusal, authorize_with_peers, check_reportable
from policy.errors import ReasonCode
from policy.exchange import HistoryHead, HistoryReport, VerifiedSuffix
from policy.history import HistoryEntry
from policy.payloads import Interpretation, PayloadError, interpret_request
from policy.request import (
    Approval,
    ApprovalDecision,
    InitiatorSignature,
    RequestType,
    SigningRequest,
)
from policy.seen import AccountPart, Seen
from signer_nodes.grpc_errors import ServiceError
from signer_nodes.mpc.bip32 import InvalidPathError, parse_path
from signer_nodes.node.policy_state import PolicyState, PolicyStateError

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
# Internal scheme names (node store) -> the service's key schemes (policy/payloads).
KEY_SCHEMES = {
    "ecdsa-dkls23": "ecdsa-secp256k1",
    "frost-bip340": "schnorr-bip340",
    "frost-ed25519": "eddsa-ed25519",
}


def _bad(what: str, exc: Exception) -> ServiceError:
    return ServiceError(INVALID, "AUTHORIZATION_MALFORMED", f"{what}: {exc}")


# -- protobuf <-> domain --------------------------------------------------------------


def request_from_proto(m: gpb.SigningRequest) -> SigningRequest:
    try:
        return SigningRequest(
            request_id=m.request_id,
            tenant=m.tenant,
            initiator=m.initiator,
            key_id=m.key_id,
            derivation_path=tuple(m.derivation_path),
            request_type=RequestType(m.request_type),
            chain=m.chain,
            asset=m.asset,
            destination=m.destination,
            amount=int(m.amount or "0"),
            payload=m.payload,
            created_at=m.created_at,
        )
    except ValueError as exc:
        raise _bad("request", exc) from None


def request_to_proto(r: SigningRequest) -> gpb.SigningRequest:
    return gpb.SigningRequest(
        request_id=r.request_id,
        tenant=r.tenant,
        initiator=r.initiator,
        key_id=r.key_id,
        derivation_path=list(r.derivation_path),
        request_type=r.request_type.value,
        chain=r.chain,
        asset=r.asset,
        destination=r.destination,
        amount=str(r.amount),
        payload=r.payload,
        created_at=r.created_at,
    )


def approval_from_proto(m: gpb.Approval, request_digest: bytes) -> Approval:
    try:
        return Approval(
            approver=m.approver,
            request_digest=request_digest,
            decision=ApprovalDecision(m.decision),
            expires_at=m.expires_at,
            policy_version_id=m.policy_version_id,
            signature=m.signature,
        )
    except ValueError as exc:
        raise _bad("approval", exc) from None


def approval_to_proto(a: Approval) -> gpb.Approval:
    return gpb.Approval(
        approver=a.approver,
        decision=a.decision.value,
        expires_at=a.expires_at,
        policy_version_id=a.policy_version_id,
        signature=a.signature,
    )


def entry_from_proto(m: node_pb2.HistoryEntry) -> HistoryEntry:
    """Checked conversion. The same entries arrive with every request of a velocity
    window, so valid ones are memoized by value (the check is the costly part)."""
    try:
        return _entry(
            m.request_id,
            m.request_digest,
            m.key_id,
            m.initiator,
            m.tenant,
            m.asset,
            m.amount,
            m.timestamp,
        )
    except ValueError as exc:
        raise _bad("history entry", exc) from None


@functools.lru_cache(maxsize=1 << 16)
def _entry(
    request_id: str,
    request_digest: bytes,
    key_id: str,
    initiator: str,
    tenant: str,
    asset: str,
    amount: str,
    timestamp: int,
) -> HistoryEntry:
    return HistoryEntry(
        request_id=request_id,
        request_digest=request_digest,
        key_id=key_id,
        initiator=initiator,
        tenant=tenant,
        asset=asset,
        amount=int(amount or "0"),
        timestamp=timestamp,
    )


def entry_to_proto(e: HistoryEntry) -> node_pb2.HistoryEntry:
    return node_pb2.HistoryEntry(
        request_id=e.request_id,
        request_digest=e.request_digest,
        key_id=e.key_id,
        initiator=e.initiator,
        tenant=e.tenant,
        asset=e.asset,
        amount=str(e.amount),
        timestamp=e.timestamp,
    )


def report_from_proto(m: node_pb2.HistoryReport) -> HistoryReport:
    h = m.head
    head = HistoryHead(
        node_id=h.node_id,
        count=h.count,
        head_hash=h.head_hash,
        anchor_count=h.anchor_count,
        anchor_hash=h.anchor_hash,
        request_digest=h.request_digest,
        signature=h.signature,
    )
    entries = tuple(entry_from_proto(e) for e in m.entries)
    return HistoryReport(head, entries, m.start if m.HasField("start") else None)


def report_to_proto(r: HistoryReport) -> node_pb2.HistoryReport:
    h = r.head
    return node_pb2.HistoryReport(
        head=node_pb2.HistoryHead(
            node_id=h.node_id,
            count=h.count,
            head_hash=h.head_hash,
            anchor_count=h.anchor_count,
            anchor_hash=h.anchor_hash,
            request_digest=h.request_digest,
            signature=h.signature,
        ),
        entries=[_entry_message(e) for e in r.entries],
        start=r.start,
    )


# A report repeats the entries of the previous one (the velocity window's log suffix):
# their messages are built once. The report's constructor copies them, so the cached
# messages are never handed out or changed.
_entry_message = functools.lru_cache(maxsize=1 << 16)(entry_to_proto)


# -- the gates -------------------------------------------------------------------------


def report_for(
    *,
    policy: PolicyState,
    identity_key: Ed25519PrivateKey,
    node_id: int,
    message: node_pb2.GetHistoryReportRequest,
    key_tenant: Callable[[str], str | None],
    now: int,
) -> HistoryReport:
    """Check a report request (:func:`policy.authorize.check_reportable`), take the
    tenant's lease for it and give the signed report (``policy.exchange``, "Leases").
    Raises ServiceError: INVALID_ARGUMENT when malformed, PERMISSION_DENIED with the
    refusal's reason code, FAILED_PRECONDITION ``REQUEST_ID_REUSED`` /
    ``HISTORY_LEASE_LOST``, UNAVAILABLE ``HISTORY_LEASE_BUSY`` (retry later or elsewhere)."""
    if not message.HasField("request"):
        raise ServiceError(
            INVALID, "AUTHORIZATION_MISSING", "a report is given for a signed request"
        )
    request = request_from_proto(message.request)
    if message.request_digest and message.request_digest != request.digest():
        raise ServiceError(INVALID, "INVALID_DIGEST", "the digest is not the request's")
    try:
        initiator_signature = InitiatorSignature(
            initiator=request.initiator, signature=message.initiator_signature
        )
    except ValueError as exc:
        raise _bad("initiator signature", exc) from None
    tenant = key_tenant(request.key_id)
    if tenant is None:
        raise ServiceError(grpc.StatusCode.NOT_FOUND, "UNKNOWN_KEY", "no share for this key")
    refusal = check_reportable(
        policy.active(),
        request=request,
        initiator_signature=initiator_signature,
        key_tenant=tenant,
        now=now,
    )
    if refusal is not None:
        raise ServiceError(DENIED, refusal.code.value, refusal.detail or refusal.code.value)
    try:
        return policy.report(identity_key, node_id, request, now, held_end=message.held_end)
    except PolicyStateError as exc:
        raise lease_error(exc) from None


def lease_error(exc: PolicyStateError) -> ServiceError:
    """A refused lease or history record as the wire error (``HISTORY_LEASE_BUSY`` is
    transient: UNAVAILABLE, so a coordinator retries or uses other signers)."""
    status = (
        grpc.StatusCode.UNAVAILABLE
        if exc.code == "HISTORY_LEASE_BUSY"
        else grpc.StatusCode.FAILED_PRECONDITION
    )
    return ServiceError(status, exc.code, str(exc))


@dataclass(frozen=True, slots=True)
class Authorized:
    """The node may contribute: what to record, and what the payload says to sign."""

    authorization: Authorization
    interpretation: Interpretation


def account_from_proto(message: node_pb2.Authorization) -> AccountPart | None:
    """Where the coordinator's view sits in its account (``None``: the whole account, not
    to be held: a coordinator that names no epoch)."""
    if not message.HasField("account") or not message.account.epoch:
        return None
    part = message.account
    if len(part.epoch) > 64 or part.end < part.start:
        raise _bad("account part", ValueError("malformed epoch or positions"))
    return AccountPart(bytes(part.epoch), part.start, part.end)


def authorize_signing(
    *,
    policy: PolicyState,
    node_id: int,
    node_keys: Mapping[int, Ed25519PublicKey],
    message: node_pb2.Authorization,
    key_id: str,
    key_scheme: str,
    key_tenant: str,
    derivation_path: str,
    signer_key: bytes,
    signing_set: Iterable[int],
    now: int,
    own_reported_count: int | None = None,
    held_logs: Mapping[int, VerifiedSuffix] | None = None,
    seen: Seen | None = None,
) -> Authorized:
    """Everything the node checks before it contributes (module docstring). Raises
    ServiceError(PERMISSION_DENIED, reason) on any refusal, INVALID_ARGUMENT on malformed
    input. ``signer_key`` is the (derived, untweaked) public key of the key being used;
    ``own_reported_count`` is this node's log length when it reported for this request
    and ``held_logs`` what it verified of each peer's log before, ``seen`` its memory of
    the last exchange (:func:`policy.exchange.reconcile`). A report that leaves out
    entries this node does not hold is FAILED_PRECONDITION
    ``HISTORY_REPORT_INCOMPLETE``: not a refusal of the request, the coordinator sends
    whole reports next time."""
    if not message.HasField("request"):
        raise ServiceError(DENIED, "AUTHORIZATION_MISSING", "no signed request accompanies this")
    request = request_from_proto(message.request)
    if request.key_id != key_id:
        raise ServiceError(DENIED, "KEY_MISMATCH", "the request names another key")
    try:
        path = tuple(parse_path(derivation_path)) if derivation_path not in ("", "m") else ()
    except InvalidPathError as exc:
        raise ServiceError(INVALID, exc.code, str(exc)) from None
    if request.derivation_path != path:
        raise ServiceError(DENIED, "PATH_MISMATCH", "the request names another derivation path")
    try:
        interpretation = interpret_request(
            request, key_scheme=KEY_SCHEMES[key_scheme], signer_key=signer_key
        )
    except PayloadError as exc:
        raise ServiceError(DENIED, exc.code.value, str(exc)) from None
    try:
        initiator_signature = InitiatorSignature(
            initiator=request.initiator, signature=message.initiator_signature
        )
    except ValueError as exc:
        raise _bad("initiator signature", exc) from None
    digest = request.digest()
    approvals = [approval_from_proto(a, digest) for a in message.approvals]
    signers = sorted(set(signing_set))
    if sorted(set(message.signing_set)) != signers:
        raise ServiceError(DENIED, "SIGNING_SET_MISMATCH", "the signing set is not this one")
    reports: dict[int, HistoryReport] = {}
    for m in message.reports:
        report = report_from_proto(m)
        if report.head.node_id in reports:
            raise _bad("history reports", ValueError("two reports from one node"))
        reports[report.head.node_id] = report
    own_log, remembered_heads = policy.signing_view()
    result = authorize_with_peers(
        policy.active(),
        node_id=node_id,
        request=request,
        initiator_signature=initiator_signature,
        approvals=approvals,
        policy_version_id=message.policy_version_id,
        key_tenant=key_tenant,
        own_log=own_log,
        signing_set=signers,
        reports=reports,
        node_keys=node_keys,
        coordinator_view=[entry_from_proto(e) for e in message.coordinator_view],
        remembered_heads=remembered_heads,
        now=now,
        own_reported_count=own_reported_count,
        held_logs=held_logs,
        seen=seen,
        account=account_from_proto(message),
    )
    if isinstance(result, Refusal):
        status = (
            grpc.StatusCode.FAILED_PRECONDITION
            if result.code is ReasonCode.HISTORY_REPORT_INCOMPLETE
            else DENIED
        )
        raise ServiceError(status, result.code.value, result.detail or result.code.value)
    return Authorized(result, interpretation)
