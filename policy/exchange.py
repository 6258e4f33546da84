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
    head: HistoryHead
    entries: tuple[HistoryEntry, ...]


def make_report(
    key: Ed25519PrivateKey,
    node_id: int,
    log: NodeHistory,
    request_digest: bytes,
    lookback_after: int,
) -> HistoryReport:
    """This node's report: every log entry from the first one newer than
    ``lookback_after`` (= ``now - max velocity window``) to the head."""
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
    return HistoryReport(head, log.suffix_from(start))


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The history to evaluate velocity over, and the heads to remember for next time."""

    history: History
    peer_heads: Mapping[int, HistoryHead]


@dataclass(frozen=True, slots=True)
class ExchangeFailure:
    code: ReasonCode
    detail: str


def _check_report(
    report: HistoryReport,
    key: Ed25519PublicKey,
    request_digest: bytes,
    remembered: HistoryHead | None,
) -> ExchangeFailure | None:
    h = report.head
    if h.request_digest != request_digest or not h.verify(key):
        return ExchangeFailure(ReasonCode.HISTORY_REPORT_INVALID, f"node {h.node_id}")
    if h.count != h.anchor_count + len(report.entries):
        return ExchangeFailure(ReasonCode.HISTORY_CHAIN_INVALID, f"node {h.node_id}: count")
    running = h.anchor_hash
    hashes = {h.anchor_count: running}
    for i, e in enumerate(report.entries):
        running = chain_step(running, e)
        hashes[h.anchor_count + i + 1] = running
    if running != h.head_hash:
        return ExchangeFailure(ReasonCode.HISTORY_CHAIN_INVALID, f"node {h.node_id}: head")
    if remembered is not None:
        if h.count < remembered.count:
            return ExchangeFailure(ReasonCode.HISTORY_ROLLBACK, f"node {h.node_id}: shorter log")
        seen = hashes.get(remembered.count)
        if seen is not None and seen != remembered.head_hash:
            return ExchangeFailure(ReasonCode.HISTORY_ROLLBACK, f"node {h.node_id}: forked log")
    return None


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
) -> Reconciled | ExchangeFailure:
    """Check the peers' reports and build the union history (see the module docstring).

    Refusal codes: ``HISTORY_REPORT_MISSING`` (a member of ``signing_set`` sent none),
    ``HISTORY_REPORT_INVALID`` (bad signature, unknown node, or bound to another request),
    ``HISTORY_CHAIN_INVALID``, ``HISTORY_ROLLBACK`` (does not extend the head this node saw
    before), ``HISTORY_CONFLICT`` (one request id, two digests), ``HISTORY_HIDDEN`` (an entry
    of ``tenant`` newer than ``lookback_after`` is missing from ``coordinator_view``).

    ``own_reported_count``: the length of this node's log when it gave its own report for
    this request. The coordinator built its view from the reports, so it cannot know what
    this node signed afterwards (concurrent requests): those entries are exempt from the
    ``HISTORY_HIDDEN`` evidence check, but still counted in the union like every entry.
    """
    view = tuple(coordinator_view)
    peers: list[tuple[str, tuple[HistoryEntry, ...]]] = []
    heads = dict(remembered_heads)
    for peer in sorted(signing_set):
        if peer == node_id:
            continue
        report = reports.get(peer)
        if report is None or report.head.node_id != peer:
            return ExchangeFailure(ReasonCode.HISTORY_REPORT_MISSING, f"node {peer}")
        key = node_keys.get(peer)
        if key is None:
            return ExchangeFailure(ReasonCode.HISTORY_REPORT_INVALID, f"unknown node {peer}")
        failure = _check_report(report, key, request_digest, remembered_heads.get(peer))
        if failure is not None:
            return failure
        heads[peer] = report.head
        peers.append((f"node {peer}", report.entries))
    # The node's whole log is indexed once and kept current as it grows (NodeHistory):
    # a request costs work in the window's size, not the log's.
    mine = own.as_history()
    known: dict[str, bytes] = {}
    for where, entries in [*peers, ("coordinator", view)]:
        for e in entries:
            logged = mine.get(e.request_id)
            first = (
                logged.request_digest
                if logged is not None
                else known.setdefault(e.request_id, e.request_digest)
            )
            if first != e.request_digest:
                return ExchangeFailure(
                    ReasonCode.HISTORY_CONFLICT, f"{where}: request {e.request_id!r}"
                )
    claimed = {e.request_id for e in view}
    # Own entries older than the lookback cannot be missing from the account: check from
    # the first newer one (up to what this node had reported, see above).
    recent = own.first_index_after(lookback_after)
    own_checked = own.suffix_from(recent)
    if own_reported_count is not None:
        own_checked = own_checked[: max(0, own_reported_count - recent)]
    for where, entries in [(f"node {node_id}", own_checked), *peers]:
        for e in entries:
            if e.tenant == tenant and e.timestamp > lookback_after and e.request_id not in claimed:
                return ExchangeFailure(
                    ReasonCode.HISTORY_HIDDEN,
                    f"coordinator omitted request {e.request_id!r} known to {where}",
                )
    # The union: the same history History(own + reports + view) builds from scratch.
    others = [e for _, entries in peers for e in entries]
    others.extend(view)
    return Reconciled(mine.extended(others), heads)
