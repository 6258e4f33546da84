"""Signing requests awaiting approvals, the approvals and rejections received, and the
coordinator's pre-evaluation of what a request still needs.

The coordinator evaluates a request with the same pure functions the nodes run
(:func:`policy.evaluate.evaluate`, :func:`policy.evaluate.check_approvals`), over its own
account of the tenant's signatures, so it can tell clients which approvals are missing and
forward a request to the nodes only when they would accept it. It is advisory: nodes
decide on their own policy copy and history (``docs/policy-format.md`` §7-8).

Approvals are checked on intake exactly as a node would check them (registered approver,
this request's digest, the ACTIVE policy version, valid signature, not the initiator by id
or key, not already expired), so a bad approval is refused at once with the node's code
instead of making the whole set fail later. Approvals bind the policy version: after a
policy change, only approvals under the new version count (:meth:`approvals_for`).

Request states: ``PENDING_APPROVAL``, ``APPROVED``, ``ALLOWED`` (no approval needed),
``REJECTED`` (a valid rejection: final), ``BLOCKED`` (the policy blocks it now; a velocity
block may lift later), ``EXPIRED`` (older than the policy's ``request_max_age_seconds``:
final), ``SIGNED`` (recorded by :meth:`record_signed`: final), ``CANCELLED`` (withdrawn by
its initiator while it waited: final).

**Cancellation** (:meth:`RequestApprovals.cancel`). The request's own initiator may
withdraw it while it is not cleared for signing, with an Ed25519 signature over
``tag("request-cancellation") || lp(initiator) || request_digest`` (framing of
``docs/policy-format.md`` §1; a statement of this service, like an officer's rejection:
nodes never see it). Under the request's row lock, in one transaction with its audit
record, the request is re-assessed and becomes ``CANCELLED`` only if it is
``PENDING_APPROVAL`` or ``BLOCKED``; approvals take the same lock, so an approval and a
cancellation are ordered: an approval after the cancellation is ``REQUEST_CLOSED``, a
cancellation after the approval that cleared the request is ``REQUEST_APPROVED``. Once
cancelled, the request's status carries ``REQUEST_CANCELLED``, so :meth:`register` (which
the coordinator calls before it signs) never clears it again, and :meth:`approvals_for`
gives no approvals for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from custody.governance.chain import PolicyGovernance
from custody.governance.errors import Fault, GovernanceRefused
from custody.governance.signed_history import SignedHistory
from custody.governance.store import GovernanceStore
from custody.governance.tables import PendingRequestRow, RequestApprovalRow, SignedEntryRow
from policy._codec import ed25519_ok, lps, tag
from policy.audit import AuditKind
from policy.errors import ReasonCode
from policy.evaluate import Outcome, check_approvals, evaluate
from policy.governance import ChainState
from policy.history import History, HistoryEntry
from policy.request import (
    Approval,
    ApprovalDecision,
    InitiatorSignature,
    RequestType,
    SigningRequest,
    request_digest,
)
from signer_nodes.db import utcnow
from signer_nodes.prepared import run

PENDING_APPROVAL, APPROVED, ALLOWED = "PENDING_APPROVAL", "APPROVED", "ALLOWED"
REJECTED, BLOCKED, SIGNED, EXPIRED = "REJECTED", "BLOCKED", "SIGNED", "EXPIRED"
CANCELLED = "CANCELLED"
FINAL = frozenset({REJECTED, SIGNED, EXPIRED, CANCELLED})
CANCELLABLE = frozenset({PENDING_APPROVAL, BLOCKED})
REQUEST_CANCELLED = "REQUEST_CANCELLED"
"""The ``code`` of a cancelled request's status: why it can never be signed."""


def cancellation_message(initiator: str, digest: bytes) -> bytes:
    """What an initiator signs to cancel its request:
    ``tag("request-cancellation") || lp(initiator) || request_digest``."""
    if len(digest) != 32:
        raise ValueError("a request digest is 32 bytes")
    return tag("request-cancellation") + lps(initiator) + digest


def sign_cancellation(key: Ed25519PrivateKey, initiator: str, request: SigningRequest) -> bytes:
    """Initiator-side helper: the signature that cancels ``request``."""
    return key.sign(cancellation_message(initiator, request_digest(request)))


@dataclass(frozen=True, slots=True)
class RequestStatus:
    """What the policy says about a request now, and why it cannot be signed yet.

    ``code`` is ``None`` when the nodes would accept the request with ``approvals``; else
    the node refusal code it would get (``APPROVAL_MISSING``, ``APPROVAL_EXPIRED``,
    ``APPROVAL_REJECTED``, ``BLOCKED_BY_RULE``, ``BLOCKED_BY_DEFAULT``,
    ``VELOCITY_EXCEEDED``, ``REQUEST_EXPIRED``, ``REQUEST_FROM_FUTURE``). ``requirement``
    describes the approvals the matched rule needs
    (``treasury>=2``, ``all_of(...)``)."""

    request: SigningRequest
    state: str
    outcome: str
    rule_id: str | None
    reasons: tuple[str, ...]
    requirement: str | None
    code: str | None
    detail: str
    approvals: tuple[Approval, ...] = field(repr=False)
    approvers: tuple[str, ...]
    policy_number: int
    policy_version_id: bytes

    @property
    def request_digest(self) -> bytes:
        return request_digest(self.request)


def assess(
    state: ChainState,
    request: SigningRequest,
    approvals: Iterable[Approval],
    history: History,
    now: int,
) -> RequestStatus:
    """Evaluate ``request`` as a node would, from step 4 of ``docs/policy-format.md`` §7 on
    (freshness, decision, approvals; the initiator was checked at registration), without
    the history exchange."""
    approvals = tuple(approvals)
    if history.get(request.request_id) is not None:
        history = history.without(request.request_id)  # a retry is not counted twice
    decision = evaluate(state.policy, request, history, now)
    reasons = tuple(
        f"{r.code}({r.rule_id})" if r.rule_id else str(r.code) for r in decision.reasons
    )
    code: ReasonCode | None
    detail = ""
    approvers: tuple[str, ...] = ()
    limits = state.policy.document.limits
    if request.created_at > now + limits.clock_skew_seconds:
        st, code, detail = BLOCKED, ReasonCode.REQUEST_FROM_FUTURE, str(request.created_at)
    elif now - request.created_at > limits.request_max_age_seconds:
        st, code, detail = EXPIRED, ReasonCode.REQUEST_EXPIRED, str(request.created_at)
    elif decision.outcome is Outcome.BLOCK:
        st = BLOCKED
        if decision.velocity_exceeded:
            code = ReasonCode.VELOCITY_EXCEEDED
        elif decision.rule_id is not None:
            code, detail = ReasonCode.BLOCKED_BY_RULE, decision.rule_id
        else:
            code = ReasonCode.BLOCKED_BY_DEFAULT
    else:
        check = check_approvals(
            state.policy, decision, request, approvals, now, policy_version_id=state.version_id
        )
        code, detail, approvers = check.code, check.detail, check.approvers
        if code is ReasonCode.APPROVAL_REJECTED:
            st = REJECTED
        elif code is None:
            st = APPROVED if decision.outcome is Outcome.NEEDS_APPROVAL else ALLOWED
        else:
            st = PENDING_APPROVAL
    return RequestStatus(
        request=request,
        state=st,
        outcome=decision.outcome.value,
        rule_id=decision.rule_id,
        reasons=reasons,
        requirement=decision.approvals_description,
        code=None if code is None else code.value,
        detail=detail,
        approvals=approvals,
        approvers=approvers,
        policy_number=state.number,
        policy_version_id=state.version_id,
    )


def _request(row: PendingRequestRow) -> SigningRequest:
    return SigningRequest(
        request_id=row.request_id,
        tenant=row.tenant,
        initiator=row.initiator,
        key_id=row.key_id,
        derivation_path=tuple(int(i) for i in row.derivation_path.split("/") if i),
        request_type=RequestType(row.request_type),
        chain=row.chain,
        asset=row.asset,
        destination=row.destination,
        amount=int(row.amount),
        payload=row.payload,
        created_at=row.created_at,
    )


def _approval(row: RequestApprovalRow, digest: bytes) -> Approval:
    return Approval(
        approver=row.approver,
        request_digest=digest,
        decision=ApprovalDecision(row.decision),
        expires_at=row.expires_at,
        policy_version_id=row.policy_version_id,
        signature=row.signature,
    )


def _entry(row: SignedEntryRow) -> HistoryEntry:
    return HistoryEntry(
        request_id=row.request_id,
        request_digest=row.request_digest,
        key_id=row.key_id,
        initiator=row.initiator,
        tenant=row.tenant,
        asset=row.asset,
        amount=int(row.amount),
        timestamp=row.timestamp,
    )


_SIGNED = cast(Table, SignedEntryRow.__table__)
_PENDING = cast(Table, PendingRequestRow.__table__)
# Run once per signature (record_signed): Core statements, built once.
_SIGNED_DIGEST = select(_SIGNED.c.request_digest).where(_SIGNED.c.request_id == bindparam("rid"))
_ADD_SIGNED = insert(_SIGNED)
_PENDING_DIGEST = select(_PENDING.c.request_digest).where(
    _PENDING.c.tenant == bindparam("t"), _PENDING.c.request_id == bindparam("rid")
)
_ADD_PENDING = insert(_PENDING)
_CLOSE_PENDING = (
    update(_PENDING)
    .where(
        _PENDING.c.tenant == bindparam("t"),
        _PENDING.c.request_id == bindparam("rid"),
        _PENDING.c.request_digest == bindparam("digest"),
    )
    .values(state=SIGNED)
)


def _not_found(tenant: str, request_id: str) -> GovernanceRefused:
    return GovernanceRefused(
        "REQUEST_NOT_FOUND", Fault.NOT_FOUND, f"no request {request_id!r} of tenant {tenant!r}"
    )


class RequestApprovals:
    """Pending requests and their approvals (module docstring). Thread-safe."""

    def __init__(
        self,
        store: GovernanceStore,
        chain: PolicyGovernance,
        *,
        on_request_changed: Callable[[RequestStatus], None] | None = None,
    ) -> None:
        self.store = store
        self.chain = chain
        self.on_request_changed = on_request_changed
        self._lock = threading.RLock()
        self.signed = SignedHistory(self._read_signed)

    # -- the coordinator's account of what was signed -----------------------------------

    def coordinator_view(self, tenant: str, after: int) -> tuple[HistoryEntry, ...]:
        """The tenant's signatures with ``timestamp > after`` (``policy.exchange`` step 2),
        from memory (:mod:`custody.governance.signed_history`)."""
        return self.signed.entries(tenant, after)

    def _read_signed(self, tenant: str, after: int) -> tuple[HistoryEntry, ...]:
        with self.store.transaction() as s:
            rows = s.execute(
                select(SignedEntryRow)
                .where(SignedEntryRow.tenant == tenant, SignedEntryRow.timestamp > after)
                .order_by(SignedEntryRow.timestamp, SignedEntryRow.request_id)
            ).scalars()
            return tuple(_entry(r) for r in rows)

    def history(self, tenant: str, now: int) -> History:
        """What velocity rules of the active policy can see for ``tenant`` at ``now``
        (velocity scopes never leave a tenant; older entries may be present: no window
        ending at ``now`` counts them)."""
        window = self.chain.active().policy.document.max_velocity_window
        if not window:
            return History()
        return self.signed.history(tenant, now - window)

    def record_signed(self, entry: HistoryEntry, *, session: Session | None = None) -> None:
        """Record a completed signature (in the caller's transaction if given): it joins the
        coordinator's view, closes the pending request, and is audited."""
        with self.store.joined(session) as s:
            old = run(s, _SIGNED_DIGEST, {"rid": entry.request_id}).scalar_one_or_none()
            if old is not None:
                if old != entry.request_digest:
                    raise GovernanceRefused(
                        "REQUEST_ID_REUSED", Fault.EXISTS, f"request {entry.request_id!r}"
                    )
                return
            run(
                s,
                _ADD_SIGNED,
                {
                    "request_id": entry.request_id,
                    "tenant": entry.tenant,
                    "key_id": entry.key_id,
                    "initiator": entry.initiator,
                    "asset": entry.asset,
                    "amount": str(entry.amount),
                    "request_digest": entry.request_digest,
                    "timestamp": entry.timestamp,
                },
            )
            self.signed.stored(s, entry)
            run(
                s,
                _CLOSE_PENDING,
                {"t": entry.tenant, "rid": entry.request_id, "digest": entry.request_digest},
            )
            self.store.audit(
                AuditKind.SIGNATURE,
                {
                    "tenant": entry.tenant,
                    "request_id": entry.request_id,
                    "request_digest": entry.request_digest.hex(),
                    "key_id": entry.key_id,
                    "asset": entry.asset,
                    "amount": str(entry.amount),
                    "timestamp": entry.timestamp,
                },
                session=s,
            )

    def record_refusal(
        self,
        tenant: str,
        request_id: str,
        code: str,
        detail: str = "",
        *,
        node_id: int | None = None,
        session: Session | None = None,
    ) -> None:
        """Audit a refusal (by a node, or by the coordinator's pre-evaluation)."""
        body: dict[str, object] = {
            "tenant": tenant,
            "request_id": request_id,
            "code": code,
            "detail": detail,
        }
        if node_id is not None:
            body["node_id"] = node_id
        self.store.audit(AuditKind.REFUSAL, body, session=session)

    # -- requests ------------------------------------------------------------------------

    def missing_approvals(
        self,
        request: SigningRequest,
        *,
        approvals: Iterable[Approval] | None = None,
        now: int | None = None,
    ) -> RequestStatus:
        """Pre-evaluate ``request`` under the active policy with ``approvals`` (default:
        those stored for it): ``requirement`` and ``code`` say what is missing."""
        now = self.store.clock() if now is None else now
        if approvals is None:
            approvals = self.approvals_for(request.tenant, request.request_id)
        return assess(
            self.chain.active(), request, approvals, self.history(request.tenant, now), now
        )

    def register(
        self,
        request: SigningRequest,
        initiator_signature: InitiatorSignature,
        *,
        now: int | None = None,
        session: Session | None = None,
    ) -> RequestStatus:
        """Accept a request for approval: the initiator must be registered for the tenant
        and have signed exactly this request. Idempotent for the same request; the same
        id with another digest is ``REQUEST_ID_REUSED``. Audits the request and decision,
        in the caller's transaction if given (the coordinator stores, registers and
        reserves a new request's nonces in one commit)."""
        now = self.store.clock() if now is None else now
        state = self.chain.active()
        initiator = state.policy.document.initiators.get(request.initiator)
        if initiator is None:
            raise GovernanceRefused("INITIATOR_UNKNOWN", Fault.FORBIDDEN, request.initiator)
        if initiator.tenant != request.tenant:
            raise GovernanceRefused("INITIATOR_TENANT_MISMATCH", Fault.FORBIDDEN, request.initiator)
        digest = request_digest(request)
        if initiator_signature.initiator != request.initiator or not initiator_signature.verify(
            state.policy.initiator_verifiers[request.initiator], digest
        ):
            raise GovernanceRefused("INITIATOR_SIGNATURE_INVALID", Fault.INVALID, request.initiator)
        with self._lock, self.store.joined(session) as s:
            stored = run(
                s, _PENDING_DIGEST, {"t": request.tenant, "rid": request.request_id}
            ).scalar_one_or_none()
            if stored is not None:
                if stored != digest:
                    raise GovernanceRefused(
                        "REQUEST_ID_REUSED", Fault.EXISTS, f"request {request.request_id!r}"
                    )
                return self._status(s, self._load(s, request.tenant, request.request_id), now)
            return self._register_new(s, request, initiator_signature, digest, now)

    def _register_new(
        self,
        s: Session,
        request: SigningRequest,
        initiator_signature: InitiatorSignature,
        digest: bytes,
        now: int,
    ) -> RequestStatus:
        """Store a request governance has not seen, with its first decision, and audit
        both. It has no approvals yet (they name a stored request), so the decision is
        the pre-evaluation with none; Core statements: this runs for every request."""
        status = assess(self.chain.active(), request, (), self.history(request.tenant, now), now)
        run(
            s,
            _ADD_PENDING,
            {
                "tenant": request.tenant,
                "request_id": request.request_id,
                "initiator": request.initiator,
                "key_id": request.key_id,
                "derivation_path": "/".join(map(str, request.derivation_path)),
                "request_type": request.request_type.value,
                "chain": request.chain,
                "asset": request.asset,
                "destination": request.destination,
                "amount": str(request.amount),
                "payload": request.payload,
                "created_at": request.created_at,
                "request_digest": digest,
                "initiator_signature": initiator_signature.signature,
                "state": status.state,
                "registered_at": utcnow(),
            },
        )
        self.store.audit(
            AuditKind.REQUEST,
            {
                "tenant": request.tenant,
                "request_id": request.request_id,
                "request_digest": digest.hex(),
                "initiator": request.initiator,
                "key_id": request.key_id,
                "request_type": request.request_type.value,
                "chain": request.chain,
                "asset": request.asset,
                "destination": request.destination,
                "amount": str(request.amount),
                "created_at": request.created_at,
            },
            session=s,
        )
        self._audit_decision(s, request.tenant, request.request_id, status)
        return status

    def _stored_approvals(self, s: Session, row: PendingRequestRow) -> tuple[Approval, ...]:
        """The stored approvals under the active version (older ones no longer count)."""
        vid = self.chain.active().version_id
        rows = s.execute(
            select(RequestApprovalRow)
            .where(
                RequestApprovalRow.tenant == row.tenant,
                RequestApprovalRow.request_id == row.request_id,
                RequestApprovalRow.policy_version_id == vid,
            )
            .order_by(RequestApprovalRow.approver, RequestApprovalRow.decision)
        ).scalars()
        return tuple(_approval(r, row.request_digest) for r in rows)

    def _status(self, s: Session, row: PendingRequestRow, now: int) -> RequestStatus:
        """Assess a stored request and persist (and audit) a change of state."""
        request = _request(row)
        status = assess(
            self.chain.active(),
            request,
            self._stored_approvals(s, row),
            self.history(row.tenant, now),
            now,
        )
        if row.state == CANCELLED:
            return replace(
                status, state=CANCELLED, code=REQUEST_CANCELLED, detail="cancelled by its initiator"
            )
        if row.state in FINAL:
            return replace(status, state=row.state)
        if status.state != row.state:
            row.state = status.state
            self._audit_decision(s, row.tenant, row.request_id, status)
        return status

    def _audit_decision(
        self, s: Session, tenant: str, request_id: str, status: RequestStatus
    ) -> None:
        self.store.audit(
            AuditKind.DECISION,
            {
                "tenant": tenant,
                "request_id": request_id,
                "state": status.state,
                "outcome": status.outcome,
                "rule_id": status.rule_id,
                "requirement": status.requirement,
                "code": status.code,
                "policy_version": status.policy_number,
            },
            session=s,
        )

    def _load(self, s: Session, tenant: str, request_id: str) -> PendingRequestRow:
        row = s.get(PendingRequestRow, (tenant, request_id), with_for_update=True)
        if row is None:
            raise _not_found(tenant, request_id)
        return row

    def status(self, tenant: str, request_id: str, *, now: int | None = None) -> RequestStatus:
        now = self.store.clock() if now is None else now
        with self._lock, self.store.transaction() as s:
            return self._status(s, self._load(s, tenant, request_id), now)

    def pending(self, tenant: str | None = None, *, now: int | None = None) -> list[RequestStatus]:
        """Requests still waiting for approvals (of one tenant, or all)."""
        now = self.store.clock() if now is None else now
        with self._lock, self.store.transaction() as s:
            q = select(PendingRequestRow).where(PendingRequestRow.state.not_in(FINAL))
            if tenant is not None:
                q = q.where(PendingRequestRow.tenant == tenant)
            rows = list(s.execute(q.order_by(PendingRequestRow.registered_at)).scalars())
            return [
                st for st in (self._status(s, r, now) for r in rows) if st.state == PENDING_APPROVAL
            ]

    def approvals_for(self, tenant: str, request_id: str) -> tuple[Approval, ...]:
        """The approvals to send to the nodes with the request (active version only);
        none for a cancelled request, so that nodes refuse one that needs approvals even
        if it were sent to them."""
        with self.store.transaction() as s:
            row = s.get(PendingRequestRow, (tenant, request_id))
            if row is None or row.state == CANCELLED:
                return ()
            return self._stored_approvals(s, row)

    def cancel(
        self,
        tenant: str,
        request_id: str,
        *,
        initiator: str,
        signature: bytes,
        now: int | None = None,
    ) -> RequestStatus:
        """Cancel a request waiting for approvals, on its initiator's signed word (module
        docstring). Idempotent: cancelling a cancelled request again returns its status.
        Refusals, nothing changed: ``REQUEST_NOT_FOUND``, ``NOT_THE_INITIATOR``,
        ``INITIATOR_UNKNOWN``, ``INITIATOR_TENANT_MISMATCH``,
        ``INITIATOR_SIGNATURE_INVALID``, ``REQUEST_CLOSED`` (signed, rejected or
        expired), ``REQUEST_APPROVED`` (cleared for signing: the coordinator may be
        signing it). Calls ``on_request_changed`` after the commit."""
        now = self.store.clock() if now is None else now
        policy = self.chain.active().policy
        with self._lock, self.store.transaction() as s:
            row = self._load(s, tenant, request_id)
            if initiator != row.initiator:
                raise GovernanceRefused(
                    "NOT_THE_INITIATOR", Fault.FORBIDDEN, "only the request's initiator cancels it"
                )
            registered = policy.document.initiators.get(initiator)
            if registered is None:
                raise GovernanceRefused("INITIATOR_UNKNOWN", Fault.FORBIDDEN, initiator)
            if registered.tenant != tenant:
                raise GovernanceRefused("INITIATOR_TENANT_MISMATCH", Fault.FORBIDDEN, initiator)
            if not ed25519_ok(
                policy.initiator_verifiers[initiator],
                signature,
                cancellation_message(initiator, row.request_digest),
            ):
                raise GovernanceRefused("INITIATOR_SIGNATURE_INVALID", Fault.INVALID, initiator)
            if row.state == CANCELLED:
                return self._status(s, row, now)
            if row.state in FINAL:
                raise GovernanceRefused(
                    "REQUEST_CLOSED", Fault.CONFLICT, f"request is {row.state.lower()}"
                )
            current = self._status(s, row, now)
            if current.state in FINAL:  # expired or rejected just now: refused, rolled back
                raise GovernanceRefused(
                    "REQUEST_CLOSED", Fault.CONFLICT, f"request is {current.state.lower()}"
                )
            if current.state not in CANCELLABLE:
                raise GovernanceRefused(
                    "REQUEST_APPROVED",
                    Fault.CONFLICT,
                    f"request is {current.state.lower()}: it may be being signed",
                )
            row.state = CANCELLED
            self.store.audit(
                AuditKind.DECISION,
                {
                    "tenant": tenant,
                    "request_id": request_id,
                    "request_digest": row.request_digest.hex(),
                    "state": CANCELLED,
                    "code": REQUEST_CANCELLED,
                    "cancelled_by": initiator,
                    "signature": signature.hex(),
                    "policy_version": current.policy_number,
                },
                session=s,
            )
            s.flush()
            status = self._status(s, row, now)
        if self.on_request_changed is not None:
            self.on_request_changed(status)
        return status

    def decide(
        self,
        tenant: str,
        request_id: str,
        *,
        approver: str,
        decision: ApprovalDecision,
        expires_at: int,
        policy_version_id: bytes,
        signature: bytes,
        now: int | None = None,
    ) -> RequestStatus:
        """Accept an approver's signed approval or rejection (checks: module docstring)."""
        now = self.store.clock() if now is None else now
        with self._lock, self.store.transaction() as s:
            row = self._load(s, tenant, request_id)
            if row.state in FINAL:
                raise GovernanceRefused(
                    "REQUEST_CLOSED", Fault.CONFLICT, f"request is {row.state.lower()}"
                )
            approval = self._check(
                row, approver, decision, expires_at, policy_version_id, signature, now
            )
            old = s.get(
                RequestApprovalRow,
                (tenant, request_id, approver, decision.value),
                with_for_update=True,
            )
            if old is None:
                s.add(
                    RequestApprovalRow(
                        tenant=tenant,
                        request_id=request_id,
                        approver=approver,
                        decision=decision.value,
                        expires_at=expires_at,
                        policy_version_id=policy_version_id,
                        signature=signature,
                    )
                )
            elif (old.policy_version_id, old.expires_at) != (policy_version_id, expires_at):
                old.expires_at, old.policy_version_id = expires_at, policy_version_id
                old.signature = signature
            s.flush()
            self.store.audit(
                AuditKind.APPROVAL,
                {
                    "tenant": tenant,
                    "request_id": request_id,
                    "request_digest": approval.request_digest.hex(),
                    "approver": approver,
                    "decision": decision.value,
                    "expires_at": expires_at,
                    "policy_version_id": policy_version_id.hex(),
                },
                session=s,
            )
            status = self._status(s, row, now)
        if self.on_request_changed is not None:
            self.on_request_changed(status)
        return status

    def _check(
        self,
        row: PendingRequestRow,
        approver: str,
        decision: ApprovalDecision,
        expires_at: int,
        policy_version_id: bytes,
        signature: bytes,
        now: int,
    ) -> Approval:
        state = self.chain.active()
        doc = state.policy.document
        if policy_version_id != state.version_id:
            raise GovernanceRefused(
                "APPROVAL_POLICY_MISMATCH", Fault.CONFLICT, f"the active version is {state.number}"
            )
        raw = doc.approvers.get(approver)
        if raw is None:
            raise GovernanceRefused("APPROVER_UNKNOWN", Fault.FORBIDDEN, approver)
        try:
            approval = Approval(
                approver=approver,
                request_digest=row.request_digest,
                decision=decision,
                expires_at=expires_at,
                policy_version_id=policy_version_id,
                signature=signature,
            )
        except ValueError as e:
            raise GovernanceRefused("APPROVAL_INVALID", Fault.INVALID, str(e)) from None
        if not approval.verify(state.policy.approver_verifiers[approver]):
            raise GovernanceRefused("APPROVAL_SIGNATURE_INVALID", Fault.INVALID, approver)
        initiator = doc.initiators.get(row.initiator)
        if approver == row.initiator or (initiator is not None and raw == initiator.public_key):
            raise GovernanceRefused("SELF_APPROVAL", Fault.FORBIDDEN, approver)
        if expires_at <= now:
            raise GovernanceRefused("APPROVAL_EXPIRED", Fault.INVALID, f"expired at {expires_at}")
        return approval
