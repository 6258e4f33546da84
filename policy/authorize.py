"""The node-side gate: everything a signer node checks before it contributes anything.

Pure: the node passes its active :class:`~policy.governance.ChainState`, the inputs the
coordinator delivered, its own history, and its clock reading; it gets an
:class:`Authorization` (and the history entry to record atomically with consuming the
presignature) or a :class:`Refusal` with a stable :class:`~policy.errors.ReasonCode`.
Nothing the coordinator sends is trusted: keys, officer sets and rules come only from the
node's own policy copy.

Checks, in this order (the first failure is the refusal):

1. the claimed policy version id is the node's active one (``POLICY_VERSION_MISMATCH``);
2. the initiator is registered (``INITIATOR_UNKNOWN``), belongs to the request's tenant
   (``INITIATOR_TENANT_MISMATCH``) and signed this exact request
   (``INITIATOR_SIGNATURE_INVALID``);
3. the key belongs to the request's tenant, as the node's share store records it
   (``KEY_TENANT_MISMATCH``);
4. the request is fresh (``REQUEST_FROM_FUTURE``, ``REQUEST_EXPIRED``) and its id was not
   used for a different request (``REQUEST_ID_REUSED``; the same request again is a retry
   and is not counted twice);
5. the policy decision (``BLOCKED_BY_RULE``, ``BLOCKED_BY_DEFAULT``, ``VELOCITY_EXCEEDED``);
6. the approvals (``APPROVER_UNKNOWN``, ``APPROVAL_REQUEST_MISMATCH``,
   ``APPROVAL_POLICY_MISMATCH``, ``APPROVAL_SIGNATURE_INVALID``, ``SELF_APPROVAL``,
   ``APPROVAL_REJECTED``, ``APPROVAL_EXPIRED``, ``APPROVAL_MISSING``).

:func:`authorize_with_peers` first runs the history exchange of :mod:`policy.exchange`
(``HISTORY_*`` codes) and then :func:`authorize` over the reconciled history.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policy.errors import ReasonCode
from policy.evaluate import Decision, Outcome, check_approvals, evaluate
from policy.exchange import (
    ExchangeFailure,
    HistoryHead,
    HistoryReport,
    VerifiedSuffix,
    reconcile,
)
from policy.governance import ChainState
from policy.history import History, HistoryEntry, NodeHistory
from policy.request import Approval, InitiatorSignature, SigningRequest, request_digest
from policy.seen import AccountPart, Seen


@dataclass(frozen=True, slots=True)
class Refusal:
    code: ReasonCode
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Authorization:
    """The node may contribute to signing ``request_digest``. ``entry`` is what the node
    records in its history in the same transaction that consumes the presignature;
    ``peer_heads`` (from :func:`authorize_with_peers`) are the heads to remember,
    ``peer_logs`` the peers' verified log suffixes, to hold for their next reports, and
    ``seen`` the memory for the next exchange (:mod:`policy.seen`)."""

    request_digest: bytes
    policy_version_id: bytes
    decision: Decision
    approvers: tuple[str, ...]
    entry: HistoryEntry
    peer_heads: Mapping[int, HistoryHead] | None = None
    peer_logs: Mapping[int, VerifiedSuffix] | None = None
    seen: Seen | None = None


def authorize(
    state: ChainState,
    *,
    request: SigningRequest,
    initiator_signature: InitiatorSignature,
    approvals: Iterable[Approval],
    policy_version_id: bytes,
    key_tenant: str,
    history: History,
    now: int,
) -> Authorization | Refusal:
    """Decide whether this node contributes to ``request`` (checks in the module docstring).

    ``key_tenant`` is the owner of ``request.key_id`` in the node's own key store;
    ``history`` is what the node knows was signed (its own log, or the reconciled union).
    """
    refusal = _who_asks(state, request, initiator_signature, policy_version_id, key_tenant, now)
    if refusal is not None:
        return refusal
    return _decide(state, request=request, approvals=approvals, history=history, now=now)


def _who_asks(
    state: ChainState,
    request: SigningRequest,
    initiator_signature: InitiatorSignature,
    policy_version_id: bytes,
    key_tenant: str,
    now: int,
) -> Refusal | None:
    """Checks 1 to 4 of the module docstring."""
    if policy_version_id != state.version_id:
        return Refusal(ReasonCode.POLICY_VERSION_MISMATCH, f"active is {state.number}")
    return check_reportable(
        state,
        request=request,
        initiator_signature=initiator_signature,
        key_tenant=key_tenant,
        now=now,
    )


def _decide(
    state: ChainState,
    *,
    request: SigningRequest,
    approvals: Iterable[Approval],
    history: History,
    now: int,
) -> Authorization | Refusal:
    """Checks 4 (the request id) to 6, once :func:`_who_asks` passed."""
    policy = state.policy
    digest = request_digest(request)
    previous = history.get(request.request_id)
    if previous is not None:
        if previous.request_digest != digest:
            return Refusal(ReasonCode.REQUEST_ID_REUSED, request.request_id)
        history = history.without(request.request_id)  # a retry: do not count it twice
    decision = evaluate(policy, request, history, now)
    if decision.outcome is Outcome.BLOCK:
        if decision.velocity_exceeded:
            rules = ", ".join(
                r.rule_id or "" for r in decision.reasons if r.code is ReasonCode.VELOCITY_EXCEEDED
            )
            return Refusal(ReasonCode.VELOCITY_EXCEEDED, rules)
        if decision.rule_id is not None:
            return Refusal(ReasonCode.BLOCKED_BY_RULE, decision.rule_id)
        return Refusal(ReasonCode.BLOCKED_BY_DEFAULT)
    check = check_approvals(
        policy, decision, request, approvals, now, policy_version_id=state.version_id
    )
    if check.code is not None:
        return Refusal(check.code, check.detail)
    return Authorization(
        request_digest=digest,
        policy_version_id=state.version_id,
        decision=decision,
        approvers=check.approvers,
        entry=HistoryEntry.for_request(request, now),
    )


def check_reportable(
    state: ChainState,
    *,
    request: SigningRequest,
    initiator_signature: InitiatorSignature,
    key_tenant: str,
    now: int,
) -> Refusal | None:
    """May this node report for ``request`` (and so take its tenant's lease,
    :mod:`policy.exchange`)? Checks 2 to 4 of :func:`authorize`: only a genuine, fresh
    request of a registered initiator, for a key of its tenant, can hold a lease; the full
    decision is taken when the node is asked for its share."""
    doc = state.policy.document
    initiator = doc.initiators.get(request.initiator)
    if initiator is None:
        return Refusal(ReasonCode.INITIATOR_UNKNOWN, request.initiator)
    if initiator.tenant != request.tenant:
        return Refusal(ReasonCode.INITIATOR_TENANT_MISMATCH, request.initiator)
    if initiator_signature.initiator != request.initiator or not initiator_signature.verify(
        state.policy.initiator_verifiers[request.initiator], request_digest(request)
    ):
        return Refusal(ReasonCode.INITIATOR_SIGNATURE_INVALID, request.initiator)
    if key_tenant != request.tenant:
        return Refusal(ReasonCode.KEY_TENANT_MISMATCH, request.key_id)
    if request.created_at > now + doc.limits.clock_skew_seconds:
        return Refusal(ReasonCode.REQUEST_FROM_FUTURE, str(request.created_at))
    if now - request.created_at > doc.limits.request_max_age_seconds:
        return Refusal(ReasonCode.REQUEST_EXPIRED, str(request.created_at))
    return None


def authorize_with_peers(
    state: ChainState,
    *,
    node_id: int,
    request: SigningRequest,
    initiator_signature: InitiatorSignature,
    approvals: Iterable[Approval],
    policy_version_id: bytes,
    key_tenant: str,
    own_log: NodeHistory,
    signing_set: Collection[int],
    reports: Mapping[int, HistoryReport],
    node_keys: Mapping[int, Ed25519PublicKey],
    coordinator_view: Iterable[HistoryEntry],
    remembered_heads: Mapping[int, HistoryHead],
    now: int,
    own_reported_count: int | None = None,
    held_logs: Mapping[int, VerifiedSuffix] | None = None,
    seen: Seen | None = None,
    account: AccountPart | None = None,
) -> Authorization | Refusal:
    """:func:`authorize` over the history reconciled with the signing set's reports.
    Sound under assumption (A) of :mod:`policy.exchange` (``2t - n > f``). ``seen`` and
    ``account``: see :func:`policy.exchange.reconcile`."""
    if node_id not in signing_set:
        return Refusal(ReasonCode.HISTORY_REPORT_INVALID, "this node is not in the signing set")
    # Who asks comes before what the peers say (the same checks a report needs).
    refusal = _who_asks(state, request, initiator_signature, policy_version_id, key_tenant, now)
    if refusal is not None:
        return refusal
    lookback_after = now - state.policy.document.max_velocity_window
    merged = reconcile(
        node_id=node_id,
        own=own_log,
        tenant=request.tenant,
        request_digest=request_digest(request),
        signing_set=signing_set,
        reports=reports,
        node_keys=node_keys,
        coordinator_view=coordinator_view,
        lookback_after=lookback_after,
        remembered_heads=remembered_heads,
        own_reported_count=own_reported_count,
        held_logs=held_logs,
        seen=seen,
        account=account,
    )
    if isinstance(merged, ExchangeFailure):
        return Refusal(merged.code, merged.detail)
    result = _decide(state, request=request, approvals=approvals, history=merged.history, now=now)
    if isinstance(result, Refusal):
        return result
    return Authorization(
        request_digest=result.request_digest,
        policy_version_id=result.policy_version_id,
        decision=result.decision,
        approvers=result.approvers,
        entry=result.entry,
        peer_heads=merged.peer_heads,
        peer_logs=merged.peer_logs,
        seen=merged.seen,
    )
