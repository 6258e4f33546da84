"""History-head exchange: velocity limits stay correct when the coordinator hides past
signatures from a signing set.

Assumption (A): every two signing sets share at least one honest node. With ``n`` nodes,
threshold ``t`` and at most ``f`` corrupted nodes this holds when ``2t - n > f``; with the
coordinator as the only liar (``f = 0``) it is ``2t > n``. Nodes cannot check (A); it is
a deployment condition (``docs/policy-format.md``, "Velocity under a lying coordinator").

Protocol, per signing request, before any node contributes:

1. every node ``i`` of the signing set ``S`` sends a :class:`HistoryReport`: the suffix of
   its hash-chained log (:class:`~policy.history.NodeHistory`) covering the policy's
   longest velocity window, with a :class:`HistoryHead` signed by ``i`` and bound to this
   request's digest (so it cannot be replayed into another request);
2. the coordinator also sends its own account of the tenant's signatures in that window
   (``coordinator_view``);
3. each node runs :func:`reconcile`: it requires a valid report from every other member
   of ``S``, checks each report's hash chain and that it extends the head it last saw
   from that peer, refuses if an entry known to any member is missing from the
   coordinator's account (``HISTORY_HIDDEN``: the coordinator lied, and the report is the
   evidence), and evaluates velocity over the union of its own entries, the reports and
   the coordinator's account.

Leases (docs/policy-format.md section 8, "Reports go stale"). A report describes the
reporter's log at one instant but is used later, when the other members sign. A
coordinator that asks for the reports of ``r`` early, then spends through other signing
sets, then presents the early reports could otherwise split a budget (with ``n = 3,
t = 2``: node 1 spends with node 2, node 3 spends with node 2, and nodes 1 and 3 each see
only their own half). So a report is given under a per-tenant *lease*: before it answers,
the reporter durably records that it holds its tenant's lease for ``r`` (for at most
:data:`LEASE_SECONDS`); while the lease is held it gives no report for, and signs no,
other request of that tenant; it contributes to ``r`` only while holding the lease (in the
transaction that records ``r``, which releases it). A lease that runs out is lost for
good: the node never contributes to ``r`` afterwards (its old report may be in use), so
the request must be submitted again. With the leases, each honest node's decisions for a
tenant occupy disjoint intervals ``[report, share]``, and a share needs every member's
report first; a cycle of requests each unseen by the next would need
``share_c(r) < report_c(x) < share_a(x) < report_a(y) < share_b(y) < report_b(r) <
share_c(r)``, so the requests of a tenant are linearizable and each decision counts every
request before it (tests/policy/test_leases.py).

Reports carry only what the receiver lacks (section 8, "Reports carry what is new"). A
node keeps, in memory, the suffix of each peer's log that it verified last time
(:class:`VerifiedSuffix`). The signed head is unchanged (it still names the anchor and the
head), but the entries before ``start`` may be left out of a report when the receiver
holds them: it checks that its held suffix hashes to the signed ``anchor_hash`` at
``anchor_count`` and chains the new entries from its held hash at ``start`` to the signed
head. A receiver that does not hold them refuses with ``HISTORY_REPORT_INCOMPLETE`` (the
coordinator sends the whole suffix next time). What a report proves is exactly what a
whole one proves: the hashes commit to every entry from the anchor to the head, and the
held part was itself verified against an earlier signed head of the same peer. So each
request costs work in what is new since the last one, not in the window's size.

A node also keeps what it verified from one exchange to the next (:mod:`policy.seen`): the
coordinator sends only the part of its account the node does not hold, and only what is
new is checked and added to the union (section 8, "Each decision builds on the last").

Why this is sound under (A): a signature needs all ``t`` members of its set, so each past
signature was recorded by every honest member of its set ``S'``. By (A) some honest
``h`` is in ``S ∩ S'``; ``h``'s report (or ``h``'s own log, if ``h`` is the evaluating
node) contains the entry, the coordinator cannot alter or forge it (signed by ``h``) nor
drop it (a missing report refuses), so every honest member of ``S`` evaluates velocity
over a superset of all past signatures in the window; over-counting (entries a corrupt
peer invents) can only cause refusals. Without the exchange, each node seeing only its
own log is not enough: two past signatures known to two different members of ``S`` add up
only in the union (``tests/policy/test_hidden_history.py`` shows both).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policy._codec import ed25519_ok, tag, u64
from policy.errors import ReasonCode
from policy.history import History, HistoryEntry, NodeHistory, chain_step
from policy.seen import AccountPart, HeldAccount, Seen, entries_claimed

# How long a report's lease lasts: the honest coordinator collects the shares within
# milliseconds of the reports; this bounds how long an abandoned request blocks its
# tenant at a node.
LEASE_SECONDS = 30


def head_message(
    node_id: int,
    count: int,
    head_hash: bytes,
    anchor_count: int,
    anchor_hash: bytes,
    request_digest: bytes,
) -> bytes:
    return (
        tag("history-head")
        + u64(node_id)
        + u64(count)
        + head_hash
        + u64(anchor_count)
        + anchor_hash
        + request_digest
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryHead:
    """Node ``node_id`` states: "my log has ``count`` entries with head ``head_hash``; its
    first ``anchor_count`` entries hash to ``anchor_hash``", for request ``request_digest``."""

    node_id: int
    count: int
    head_hash: bytes
    anchor_count: int
    anchor_hash: bytes
    request_digest: bytes
    signature: bytes = field(repr=False)

    def message(self) -> bytes:
        return head_message(
            self.node_id,
            self.count,
            self.head_hash,
            self.anchor_count,
            self.anchor_hash,
            self.request_digest,
        )

    def verify(self, key: Ed25519PublicKey) -> bool:
        return ed25519_ok(key, self.signature, self.message())


@dataclass(frozen=True, slots=True)
class HistoryReport:
    """A signed head and the log entries after ``start`` (``None``: after the anchor, the
    whole suffix). Entries from the anchor to ``start`` are left out when the receiver
    holds them (module docstring)."""

    head: HistoryHead
    entries: tuple[HistoryEntry, ...]
    start: int | None = None

    @property
    def first_count(self) -> int:
        return self.head.anchor_count if self.start is None else self.start

    def after(self, held_end: int) -> HistoryReport:
        """This report without the entries up to ``held_end`` (the end of what the
        receiver holds), when that lies in the part it carries; else unchanged."""
        first = self.first_count
        if not first < held_end <= self.head.count:
            return self
        return HistoryReport(self.head, self.entries[held_end - first :], held_end)


@dataclass(frozen=True, slots=True)
class VerifiedSuffix:
    """Entries ``start + 1 .. start + len(entries)`` of one node's log and the chain hash
    after each count from ``start`` (``hashes[k]`` is the hash at count ``start + k``), as
    verified against that node's signed head. Held by receivers so that a report can leave
    out what they already checked."""

    start: int
    hashes: tuple[bytes, ...]
    entries: tuple[HistoryEntry, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.entries)

    def covers(self, count: int) -> bool:
        return self.start <= count <= self.end

    def hash_at(self, count: int) -> bytes:
        return self.hashes[count - self.start]

    def between(self, first: int, last: int) -> tuple[HistoryEntry, ...]:
        return self.entries[first - self.start : last - self.start]

    def hashes_between(self, first: int, last: int) -> tuple[bytes, ...]:
        """The hashes at counts ``first .. last`` (both included)."""
        return self.hashes[first - self.start : last - self.start + 1]

    def merged(self, newer: VerifiedSuffix, keep: int) -> VerifiedSuffix:
        """``newer``, extended back over this one's entries (at most ``keep`` more) when
        the two agree where they meet; so a request that was reported a little earlier
        (another tenant's, signed in between) can still rely on what is held."""
        if not (self.start < newer.start <= self.end) or (
            self.hash_at(newer.start) != newer.hashes[0]
        ):
            return newer
        first = max(self.start, newer.start - keep)
        return VerifiedSuffix(
            first,
            self.hashes_between(first, newer.start) + newer.hashes[1:],
            self.between(first, newer.start) + newer.entries,
        )


def make_report(
    key: Ed25519PrivateKey,
    node_id: int,
    log: NodeHistory,
    request_digest: bytes,
    lookback_after: int,
    held_end: int = 0,
) -> HistoryReport:
    """This node's report: every log entry from the first one newer than
    ``lookback_after`` (= ``now - max velocity window``) to the head, without those up to
    ``held_end`` when the asker says it holds them (``HistoryReport.after``)."""
    start = log.first_index_after(lookback_after)
    anchor = log.head_at(start)
    msg = head_message(node_id, log.count, log.head, start, anchor, request_digest)
    head = HistoryHead(
        node_id=node_id,
        count=log.count,
        head_hash=log.head,
        anchor_count=start,
        anchor_hash=anchor,
        request_digest=request_digest,
        signature=key.sign(msg),
    )
    return HistoryReport(head, log.suffix_from(start)).after(held_end)


# Entries of a peer's log held beyond the newest report's anchor, so that a request
# reported a little before another one was signed still finds what it leaves out held.
HELD_SLACK = 256


def to_hold(held: VerifiedSuffix | None, newer: VerifiedSuffix) -> VerifiedSuffix:
    """What to hold of a peer's log after verifying ``newer``: it, reaching back over
    ``held`` by at most :data:`HELD_SLACK` entries where the two agree."""
    return newer if held is None else held.merged(newer, HELD_SLACK)


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The history to evaluate velocity over, the heads to remember for next time, each
    peer's suffix as verified now (to hold for the next report), and the memory to pass to
    the next exchange (:mod:`policy.seen`)."""

    history: History
    peer_heads: Mapping[int, HistoryHead]
    peer_logs: Mapping[int, VerifiedSuffix] = field(default_factory=dict)
    seen: Seen | None = None


@dataclass(frozen=True, slots=True)
class ExchangeFailure:
    code: ReasonCode
    detail: str


def report_suffix(
    report: HistoryReport, held: VerifiedSuffix | None
) -> VerifiedSuffix | ExchangeFailure:
    """The report's whole suffix, from the anchor to the head, with the left-out entries
    taken from ``held``, if the entries chain to the head it names. Checks counts and
    hashes only (not the head's signature: :func:`verify_report` does); the coordinator
    uses it to keep what it relays."""
    h = report.head
    who = f"node {h.node_id}"
    first = report.first_count
    if not h.anchor_count <= first <= h.count or h.count != first + len(report.entries):
        return ExchangeFailure(ReasonCode.HISTORY_CHAIN_INVALID, f"{who}: count")
    if first > h.anchor_count:
        if held is None or not (held.covers(h.anchor_count) and held.covers(first)):
            return ExchangeFailure(
                ReasonCode.HISTORY_REPORT_INCOMPLETE,
                f"{who}: entries {h.anchor_count}..{first} are not held here",
            )
        if held.hash_at(h.anchor_count) != h.anchor_hash:
            return ExchangeFailure(ReasonCode.HISTORY_ROLLBACK, f"{who}: forked log")
        hashes = list(held.hashes_between(h.anchor_count, first))
        entries = held.between(h.anchor_count, first) + report.entries
    else:
        hashes = [h.anchor_hash]
        entries = report.entries
    running = hashes[-1]
    for e in report.entries:
        running = chain_step(running, e)
        hashes.append(running)
    if running != h.head_hash:
        return ExchangeFailure(ReasonCode.HISTORY_CHAIN_INVALID, f"{who}: head")
    suffix = VerifiedSuffix(h.anchor_count, tuple(hashes), entries)
    if held is not None:  # one common count with the same hash: the same log up to there
        common = min(held.end, suffix.end)
        overlap = suffix.covers(common) and held.covers(common)
        if overlap and held.hash_at(common) != suffix.hash_at(common):
            return ExchangeFailure(ReasonCode.HISTORY_ROLLBACK, f"{who}: forked log")
    return suffix


def verify_report(
    report: HistoryReport,
    key: Ed25519PublicKey,
    request_digest: bytes,
    remembered: HistoryHead | None,
    held: VerifiedSuffix | None,
) -> VerifiedSuffix | ExchangeFailure:
    """Check one peer's report (step 3 of the protocol, without the coordinator's view)
    and return its whole verified suffix, from the anchor to the head. ``held``: what this
    receiver verified of that peer before; it supplies the entries the report leaves out
    and must agree with the report where the two overlap (else the peer forked its log)."""
    h = report.head
    if h.request_digest != request_digest or not h.verify(key):
        return ExchangeFailure(ReasonCode.HISTORY_REPORT_INVALID, f"node {h.node_id}")
    suffix = report_suffix(report, held)
    if isinstance(suffix, ExchangeFailure) or remembered is None:
        return suffix
    if h.count < remembered.count:
        return ExchangeFailure(ReasonCode.HISTORY_ROLLBACK, f"node {h.node_id}: shorter log")
    if suffix.covers(remembered.count) and (
        suffix.hash_at(remembered.count) != remembered.head_hash
    ):
        return ExchangeFailure(ReasonCode.HISTORY_ROLLBACK, f"node {h.node_id}: forked log")
    return suffix


def reconcile(
    *,
    node_id: int,
    own: NodeHistory,
    tenant: str,
    request_digest: bytes,
    signing_set: Collection[int],
    reports: Mapping[int, HistoryReport],
    node_keys: Mapping[int, Ed25519PublicKey],
    coordinator_view: Iterable[HistoryEntry],
    lookback_after: int,
    remembered_heads: Mapping[int, HistoryHead],
    own_reported_count: int | None = None,
    held_logs: Mapping[int, VerifiedSuffix] | None = None,
    seen: Seen | None = None,
    account: AccountPart | None = None,
) -> Reconciled | ExchangeFailure:
    """Check the peers' reports and build the union history (see the module docstring).

    Refusal codes: ``HISTORY_REPORT_MISSING`` (a member of ``signing_set`` sent none),
    ``HISTORY_REPORT_INVALID`` (bad signature, unknown node, bound to another request, or
    an account part whose positions do not add up), ``HISTORY_REPORT_INCOMPLETE``
    (entries left out that this node does not hold, see ``held_logs``: what it verified of
    each peer before, and ``seen``: what it holds of the coordinator's account),
    ``HISTORY_CHAIN_INVALID``, ``HISTORY_ROLLBACK`` (does not extend the head this node
    saw before), ``HISTORY_CONFLICT`` (one request id, two digests), ``HISTORY_HIDDEN``
    (an entry of ``tenant`` newer than ``lookback_after`` is missing from the coordinator's
    account).

    ``own_reported_count``: the length of this node's log when it gave its own report for
    this request. The coordinator built its view from the reports, so it cannot know what
    this node signed afterwards (concurrent requests): those entries are exempt from the
    ``HISTORY_HIDDEN`` evidence check, but still counted in the union like every entry.

    ``seen``: the memory the last exchange returned (:mod:`policy.seen`); ``None`` starts
    from nothing. ``account``: where ``coordinator_view`` sits in the coordinator's
    account of ``tenant`` (``None``: it is the whole account, not to be held).
    """
    view = tuple(coordinator_view)
    memory = (
        seen
        if seen is not None and seen.own_count <= own.count and seen.covers(lookback_after)
        else _fresh(own, lookback_after)
    )
    held = held_logs or {}
    heads = dict(remembered_heads)
    verified: dict[int, VerifiedSuffix] = {}
    for peer in sorted(signing_set):
        if peer == node_id:
            continue
        report = reports.get(peer)
        if report is None or report.head.node_id != peer:
            return ExchangeFailure(ReasonCode.HISTORY_REPORT_MISSING, f"node {peer}")
        key = node_keys.get(peer)
        if key is None:
            return ExchangeFailure(ReasonCode.HISTORY_REPORT_INVALID, f"unknown node {peer}")
        suffix = verify_report(
            report, key, request_digest, remembered_heads.get(peer), held.get(peer)
        )
        if isinstance(suffix, ExchangeFailure):
            return suffix
        heads[peer] = report.head
        verified[peer] = suffix
    claims = _claims(memory, tenant, view, account)
    if isinstance(claims, ExchangeFailure):
        return claims
    claimed, checked, kept = claims
    # What is new to the union: the own log's growth, each peer's entries past what was
    # folded in before, and the account's entries. Each is checked against the union,
    # which holds every entry checked before (a conflict with any of them is found).
    own_new = own.between(memory.own_count, own.count)
    fresh: list[tuple[str, tuple[HistoryEntry, ...]]] = [(f"node {node_id}", own_new)]
    folded = dict(memory.folded)
    for peer, suffix in verified.items():
        start = max(folded.get(peer, 0), suffix.start)
        fresh.append((f"node {peer}", suffix.between(start, suffix.end)))
        folded[peer] = max(start, suffix.end)
    fresh.append(("coordinator", view))
    union = memory.union
    known: dict[str, HistoryEntry] = {}
    for where, entries in fresh:
        for e in entries:
            earlier = known.setdefault(e.request_id, e)
            logged = union.get(e.request_id)
            if logged is not None and logged.identity != e.identity:
                if _current(logged, own, verified.values(), view, kept):
                    return ExchangeFailure(
                        ReasonCode.HISTORY_CONFLICT, f"{where}: request {e.request_id!r}"
                    )
                # Only remembered (from a peer outside this set): a fresh exchange would
                # not see it, so it must not block this one. The current copy replaces it.
                union = union.without(e.request_id)
            if earlier.identity != e.identity:
                return ExchangeFailure(
                    ReasonCode.HISTORY_CONFLICT, f"{where}: request {e.request_id!r}"
                )
    # Every entry of the tenant in the window that a member knows must be in the account:
    # from where the last check of this tenant stopped in each member's log (own entries
    # up to what this node had reported, see above).
    own_end = own.count if own_reported_count is None else min(own.count, own_reported_count)
    own_first = max(checked.get((tenant, node_id), 0), own.first_index_after(lookback_after))
    sources = [(node_id, own_end, own.between(own_first, own_end))]
    for peer, suffix in verified.items():
        first = min(max(checked.get((tenant, peer), 0), suffix.start), suffix.end)
        sources.append((peer, suffix.end, suffix.between(first, suffix.end)))
    for source, end, entries in sources:
        for e in entries:
            if e.tenant == tenant and e.timestamp > lookback_after and e.request_id not in claimed:
                return ExchangeFailure(
                    ReasonCode.HISTORY_HIDDEN,
                    f"coordinator omitted request {e.request_id!r} known to node {source}",
                )
        checked[(tenant, source)] = max(checked.get((tenant, source), 0), end)
    union = union.extended(e for _, entries in fresh for e in entries)
    accounts = dict(memory.accounts)
    if account is not None:
        accounts[tenant] = HeldAccount(account.epoch, account.end, claimed)
    else:
        accounts.pop(tenant, None)
    remembered = Seen(
        union, own.count, folded, accounts, checked, memory.prune_at, memory.covers_after
    )
    return Reconciled(union, heads, verified, remembered.pruned(lookback_after))


def _current(
    entry: HistoryEntry,
    own: NodeHistory,
    suffixes: Iterable[VerifiedSuffix],
    view: tuple[HistoryEntry, ...],
    kept: Mapping[str, HistoryEntry],
) -> bool:
    """Whether ``entry`` (held in the union) is also among what a fresh exchange would
    check now: the own log, a current member's suffix or the tenant's account as this
    exchange has it (``kept``, the held part it extends, and ``view``). Only asked when a
    new entry conflicts with it (rare: scans are fine)."""
    rid, identity = entry.request_id, entry.identity

    def same(e: HistoryEntry | None) -> bool:
        return e is not None and e.request_id == rid and e.identity == identity

    if same(own.as_history().get(rid)):
        return True
    if any(same(e) for s in suffixes for e in s.entries) or any(same(e) for e in view):
        return True
    return same(kept.get(rid))


def _fresh(own: NodeHistory, lookback_after: int) -> Seen:
    return Seen(own.as_history(), own.count, covers_after=lookback_after)


def _claims(
    memory: Seen, tenant: str, view: tuple[HistoryEntry, ...], account: AccountPart | None
) -> (
    tuple[dict[str, HistoryEntry], dict[tuple[str, int], int], Mapping[str, HistoryEntry]]
    | ExchangeFailure
):
    """The request ids in the coordinator's account of ``tenant`` (what is held, extended
    by ``view``), the HIDDEN-check positions that still hold for it, and the held claims
    the account extends (still current: see :func:`_current`). A whole account replaces
    what is held (none are kept), and every position of the tenant starts again."""
    checked = dict(memory.checked)
    held = memory.held_account(tenant)
    if account is None or account.whole:
        if account is not None and account.end < len(view):
            return ExchangeFailure(ReasonCode.HISTORY_REPORT_INVALID, "coordinator's account")
        for k in [k for k in checked if k[0] == tenant]:
            del checked[k]
        return entries_claimed({}, view), checked, {}
    if account.end - account.start != len(view):
        return ExchangeFailure(ReasonCode.HISTORY_REPORT_INVALID, "coordinator's account")
    if held is None or held.epoch != account.epoch or held.end != account.start:
        return ExchangeFailure(
            ReasonCode.HISTORY_REPORT_INCOMPLETE,
            f"coordinator's account: entries before {account.start} are not held here",
        )
    return entries_claimed(held.claimed, view), checked, held.claimed
