"""Deterministic policy evaluation: ``evaluate(policy, request, history, now) -> Decision``.

Rules are tried in document order; the first rule whose every condition holds decides;
when none does, the request is blocked (default deny). Evaluation is a pure function of
its arguments: no clock, no I/O, no randomness, no dependence on dict or set iteration
order, so every node with the same policy, request, history and time reaches the same
decision.

Speed: :class:`Policy` compiles the document once. For each exact-match field (tenant,
initiator, key, asset, chain, request type, destination) it keeps, per value, a bitmask of
the rules that accept that value; a request's candidate rules are the AND of seven masks,
visited lowest bit first (= document order). Only candidates are checked for the
remaining conditions (amount, time of day, velocity), so a decision costs a few dict
lookups plus work proportional to the candidates, not to all rules.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policy._codec import load_public_key
from policy.document import (
    ActionKind,
    AllOf,
    AnyOf,
    ApprovalExpr,
    GroupRequirement,
    PolicyDocument,
    Rule,
    TimeWindow,
    VelocityScope,
    describe_requirement,
    parse_policy,
)
from policy.errors import ReasonCode
from policy.history import History
from policy.request import (
    Approval,
    ApprovalDecision,
    SigningRequest,
    normalize_address,
    request_digest,
)

_SECONDS_PER_DAY = 86_400


class Outcome(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True, slots=True)
class Reason:
    """A stable code, and the rule it is about (``None`` for the default block)."""

    code: ReasonCode
    rule_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of :func:`evaluate`. ``rule_id`` is the matched rule (``None`` when the
    default block applied); ``reasons`` lists, in rule order, the rules skipped only because
    their velocity limit was exhausted, then the deciding reason; ``required_approvals`` is
    set iff ``outcome`` is ``needs_approval``."""

    outcome: Outcome
    rule_id: str | None
    reasons: tuple[Reason, ...]
    required_approvals: ApprovalExpr | None = None

    @property
    def approvals_description(self) -> str | None:
        if self.required_approvals is None:
            return None
        return describe_requirement(self.required_approvals)

    @property
    def velocity_exceeded(self) -> bool:
        return any(r.code is ReasonCode.VELOCITY_EXCEEDED for r in self.reasons)


_OUTCOME = {
    ActionKind.ALLOW: (Outcome.ALLOW, ReasonCode.RULE_ALLOW),
    ActionKind.BLOCK: (Outcome.BLOCK, ReasonCode.RULE_BLOCK),
    ActionKind.REQUIRE_APPROVAL: (Outcome.NEEDS_APPROVAL, ReasonCode.RULE_REQUIRES_APPROVAL),
}


def _in_time_window(tw: TimeWindow, now: int) -> bool:
    local = now + tw.utc_offset_minutes * 60
    minute = (local // 60) % 1440
    day = (local // _SECONDS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    if tw.start_minute < tw.end_minute:
        inside = tw.start_minute <= minute < tw.end_minute
    elif minute >= tw.start_minute:
        inside = True
    elif minute < tw.end_minute:
        inside, day = True, (day - 1) % 7  # the window opened yesterday
    else:
        inside = False
    return inside and (tw.days is None or day in tw.days)


_NO_MAX = 1 << 257  # above every amount (amounts are < 2^256)
_SCOPES = (VelocityScope.KEY, VelocityScope.INITIATOR, VelocityScope.TENANT)


def _compile_rule(rule: Rule) -> tuple[Any, ...]:
    """A flat tuple, read by one unpacking in :func:`evaluate` (attribute chains cost more
    than the checks themselves at this scale)."""
    m = rule.match
    outcome, reason = _OUTCOME[rule.action.kind]
    residual = m.amount is not None or m.velocity is not None or m.time_of_day is not None
    lo = m.amount.min if m.amount is not None and m.amount.min is not None else 0
    hi = m.amount.max if m.amount is not None and m.amount.max is not None else _NO_MAX
    v = m.velocity
    # velocity over the rule's asset when it names exactly one, else over all assets
    asset = next(iter(m.assets)) if m.assets is not None and len(m.assets) == 1 else None
    return (
        rule,
        outcome,
        reason,
        residual,
        lo,
        hi,
        m.time_of_day,
        -1 if v is None else _SCOPES.index(v.scope),
        0 if v is None else v.window_seconds,
        _NO_MAX if v is None or v.max_amount is None else v.max_amount,
        _NO_MAX if v is None or v.max_count is None else v.max_count,
        asset,
    )


class Policy:
    """A parsed, compiled policy document, ready for :func:`evaluate`. Immutable."""

    __slots__ = (
        "_compiled",
        "_dest_addr",
        "_dest_chain",
        "_dest_wild",
        "_masks",
        "approver_verifiers",
        "document",
        "initiator_verifiers",
    )

    def __init__(self, document: PolicyDocument) -> None:
        self.document = document
        self.initiator_verifiers: Mapping[str, Ed25519PublicKey] = MappingProxyType(
            {k: load_public_key(i.public_key) for k, i in document.initiators.items()}
        )
        self.approver_verifiers: Mapping[str, Ed25519PublicKey] = MappingProxyType(
            {k: load_public_key(raw) for k, raw in document.approvers.items()}
        )
        rules = document.rules
        self._compiled = tuple(_compile_rule(r) for r in rules)
        fields: list[tuple[dict[str, int], int]] = []
        selectors = (
            lambda r: r.match.tenants,
            lambda r: r.match.initiators,
            self._keys_of,
            lambda r: r.match.assets,
            lambda r: r.match.chains,
            lambda r: (
                None if r.match.request_types is None else {t.value for t in r.match.request_types}
            ),
        )
        for select in selectors:
            masks: dict[str, int] = {}
            wild = 0
            for i, rule in enumerate(rules):
                values = select(rule)
                if values is None:
                    wild |= 1 << i
                else:
                    for v in values:
                        masks[v] = masks.get(v, 0) | 1 << i
            fields.append(({v: m | wild for v, m in masks.items()}, wild))
        self._masks = tuple(fields)
        dest_addr: dict[str, int] = {}
        dest_chain: dict[tuple[str, str], int] = {}
        dest_wild = 0
        for i, rule in enumerate(rules):
            m = rule.match
            if m.destination_addresses is None and m.destination_whitelists is None:
                dest_wild |= 1 << i
                continue
            for a in m.destination_addresses or ():
                dest_addr[a] = dest_addr.get(a, 0) | 1 << i
            for wid in sorted(m.destination_whitelists or ()):
                wl = document.whitelists[wid]
                for a in wl.addresses:
                    k = (wl.chain, a)
                    dest_chain[k] = dest_chain.get(k, 0) | 1 << i
        self._dest_addr = dest_addr
        self._dest_chain = dest_chain
        self._dest_wild = dest_wild

    def _keys_of(self, rule: Rule) -> set[str] | None:
        m = rule.match
        if m.keys is None and m.key_groups is None:
            return None
        out = set(m.keys or ())
        for g in m.key_groups or ():
            out |= self.document.key_groups[g]
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Policy:
        return cls(parse_policy(data))

    def candidates(self, request: SigningRequest) -> int:
        """Bitmask of the rules whose exact-match conditions accept ``request``."""
        (t, tw), (i, iw), (k, kw), (a, aw), (c, cw), (r, rw) = self._masks
        dest = normalize_address(request.destination)
        return (
            t.get(request.tenant, tw)
            & i.get(request.initiator, iw)
            & k.get(request.key_id, kw)
            & a.get(request.asset, aw)
            & c.get(request.chain, cw)
            & r.get(request.request_type.value, rw)
            & (
                self._dest_wild
                | self._dest_addr.get(dest, 0)
                | self._dest_chain.get((request.chain, dest), 0)
            )
        )


def evaluate(policy: Policy, request: SigningRequest, history: History, now: int) -> Decision:
    """Decide ``request`` at time ``now`` (unix seconds) given the signing ``history``
    (requests already signed; must not contain ``request`` itself)."""
    mask = policy.candidates(request)
    compiled = policy._compiled
    skipped: list[str] = []
    amount = request.amount
    scope_values = (request.key_id, request.initiator, request.tenant)
    series: dict[tuple[int, str | None], tuple[list[int], list[int]] | None] = {}
    while mask:
        low = mask & -mask
        mask ^= low
        rule, outcome, reason, residual, lo, hi, tod, vscope, window, vmax, vcount, vasset = (
            compiled[low.bit_length() - 1]
        )
        if residual:
            if amount < lo or amount > hi:
                continue
            if tod is not None and not _in_time_window(tod, now):
                continue
            if vscope >= 0:
                k = (vscope, vasset)
                if k in series:
                    found = series[k]
                else:
                    found = series[k] = history.series(
                        _SCOPES[vscope], scope_values[vscope], vasset
                    )
                if found is None:
                    count = total = 0
                else:
                    times, prefix = found
                    i = bisect_right(times, now - window)
                    count, total = len(times) - i, prefix[-1] - prefix[i]
                if count + 1 > vcount or total + amount > vmax:
                    skipped.append(rule.id)
                    continue
        reasons = tuple(Reason(ReasonCode.VELOCITY_EXCEEDED, r) for r in skipped)
        return Decision(
            outcome, rule.id, (*reasons, Reason(reason, rule.id)), rule.action.approvals
        )
    reasons = tuple(Reason(ReasonCode.VELOCITY_EXCEEDED, r) for r in skipped)
    return Decision(Outcome.BLOCK, None, (*reasons, Reason(ReasonCode.DEFAULT_BLOCK)))


# --------------------------------------------------------------------------- approvals


def requirement_met(expr: ApprovalExpr, approved: frozenset[str], policy: Policy) -> bool:
    """Whether the approvers in ``approved`` satisfy ``expr``. An approver who belongs to
    several groups counts towards each (use disjoint groups to require distinct people)."""
    if isinstance(expr, GroupRequirement):
        members = policy.document.approver_groups[expr.group].members
        return sum(1 for m in members if m in approved) >= expr.quorum
    if isinstance(expr, AllOf):
        return all(requirement_met(i, approved, policy) for i in expr.items)
    assert isinstance(expr, AnyOf)
    return any(requirement_met(i, approved, policy) for i in expr.items)


@dataclass(frozen=True, slots=True)
class ApprovalCheck:
    """Outcome of :func:`check_approvals`: ``code`` is ``None`` iff the approvals are
    acceptable; ``approvers`` are the distinct, valid, unexpired approvers (sorted)."""

    code: ReasonCode | None
    approvers: tuple[str, ...]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.code is None


def check_approvals(
    policy: Policy,
    decision: Decision,
    request: SigningRequest,
    approvals: Iterable[Approval],
    now: int,
    *,
    policy_version_id: bytes,
) -> ApprovalCheck:
    """Verify every supplied approval and whether they meet ``decision``'s requirement.

    Every approval must be by a registered approver, for this exact request digest and
    policy version, with a valid signature; otherwise the whole set is refused (a
    coordinator that forges or misdirects approvals is caught, not silently ignored).
    The initiator may not approve its own request (same id or same public key). Any valid
    rejection refuses the request, expired or not. Approvals count while
    ``now < expires_at``. Problems are reported in a fixed order over the approvals sorted
    by approver id, so the code does not depend on the order they arrived in.
    """
    doc = policy.document
    digest = request_digest(request)
    initiator = doc.initiators.get(request.initiator)
    initiator_key = initiator.public_key if initiator is not None else None
    items = sorted(
        approvals, key=lambda a: (a.approver, a.decision.value, a.expires_at, a.signature)
    )
    verifiers = policy.approver_verifiers
    for a in items:
        raw = doc.approvers.get(a.approver)
        if raw is None:
            return ApprovalCheck(ReasonCode.APPROVER_UNKNOWN, (), a.approver)
        if a.request_digest != digest:
            return ApprovalCheck(ReasonCode.APPROVAL_REQUEST_MISMATCH, (), a.approver)
        if a.policy_version_id != policy_version_id:
            return ApprovalCheck(ReasonCode.APPROVAL_POLICY_MISMATCH, (), a.approver)
        if not a.verify(verifiers[a.approver]):
            return ApprovalCheck(ReasonCode.APPROVAL_SIGNATURE_INVALID, (), a.approver)
        if a.approver == request.initiator or raw == initiator_key:
            return ApprovalCheck(ReasonCode.SELF_APPROVAL, (), a.approver)
    for a in items:
        if a.decision is ApprovalDecision.REJECT:
            return ApprovalCheck(ReasonCode.APPROVAL_REJECTED, (), a.approver)
    live = frozenset(a.approver for a in items if now < a.expires_at)
    approvers = tuple(sorted(live))
    if decision.outcome is not Outcome.NEEDS_APPROVAL or decision.required_approvals is None:
        return ApprovalCheck(None, approvers)
    expr = decision.required_approvals
    if requirement_met(expr, live, policy):
        return ApprovalCheck(None, approvers)
    with_expired = frozenset(a.approver for a in items)
    code = (
        ReasonCode.APPROVAL_EXPIRED
        if requirement_met(expr, with_expired, policy)
        else ReasonCode.APPROVAL_MISSING
    )
    return ApprovalCheck(code, approvers, describe_requirement(expr))
