"""Velocity under a lying coordinator (docs/policy-format.md, same section name).

An in-process simulation of ``n`` honest signer-node gates and a coordinator the test
controls. Assumption (A): any two signing sets share an honest node (``2t - n > f``;
here f = 0, so ``2t > n``)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.authorize import Authorization, Refusal, authorize, authorize_with_peers
from policy.errors import ReasonCode
from policy.exchange import HistoryHead, HistoryReport, make_report
from policy.governance import ChainState
from policy.history import HistoryEntry, NodeHistory
from policy.request import SigningRequest
from tests.policy.helpers import T0, isig, key, req, state_for, with_rules

LIMIT = 100
WINDOW = 3600


def velocity_state() -> ChainState:
    return state_for(
        with_rules(
            {
                "id": "daily-eth",
                "match": {
                    "assets": ["ETH"],
                    "velocity": {
                        "scope": "tenant",
                        "window_seconds": WINDOW,
                        "max_amount": str(LIMIT),
                    },
                },
                "action": "allow",
            }
        )
    )


@dataclasses.dataclass
class Node:
    node_id: int
    state: ChainState
    log: NodeHistory = dataclasses.field(default_factory=NodeHistory)
    heads: dict[int, HistoryHead] = dataclasses.field(default_factory=dict)


ReportFilter = Callable[[int, int, HistoryReport], HistoryReport | None]


class Cluster:
    def __init__(self, n: int) -> None:
        state = velocity_state()
        self.nodes = {i: Node(i, state) for i in range(1, n + 1)}
        self.keys: dict[int, Ed25519PublicKey] = {
            i: key(f"node-{i}").public_key() for i in self.nodes
        }
        self.signed: list[HistoryEntry] = []  # what the coordinator really got signed
        self.seq = 0

    def request(self, amount: int, now: int) -> SigningRequest:
        self.seq += 1
        return req(request_id=f"r-{self.seq}", amount=amount, created_at=now)

    def sign(
        self,
        signers: Sequence[int],
        r: SigningRequest,
        now: int,
        *,
        view: Sequence[HistoryEntry] | None = None,
        deliver: ReportFilter | None = None,
    ) -> dict[int, Authorization | Refusal]:
        """One signing attempt: reports, then every member's gate; a signature exists iff
        all members authorize, and then all of them record it."""
        state = self.nodes[signers[0]].state
        digest = r.digest()
        lookback = now - state.policy.document.max_velocity_window
        reports = {
            i: make_report(key(f"node-{i}"), i, self.nodes[i].log, digest, lookback)
            for i in signers
        }
        honest_view = [e for e in self.signed if e.timestamp > lookback]
        results: dict[int, Authorization | Refusal] = {}
        for i in signers:
            delivered = {}
            for j, rep in reports.items():
                got = deliver(i, j, rep) if deliver else rep
                if got is not None:
                    delivered[j] = got
            results[i] = authorize_with_peers(
                self.nodes[i].state,
                node_id=i,
                request=r,
                initiator_signature=isig(r),
                approvals=[],
                policy_version_id=state.version_id,
                key_tenant="acme",
                own_log=self.nodes[i].log,
                signing_set=frozenset(signers),
                reports=delivered,
                node_keys=self.keys,
                coordinator_view=honest_view if view is None else view,
                remembered_heads=self.nodes[i].heads,
                now=now,
            )
        if all(isinstance(x, Authorization) for x in results.values()):
            for i, x in results.items():
                assert isinstance(x, Authorization) and x.peer_heads is not None
                self.nodes[i].log = self.nodes[i].log.append(x.entry)
                self.nodes[i].heads = dict(x.peer_heads)
            self.signed.append(HistoryEntry.for_request(r, now))
        return results


def codes(results: dict[int, Authorization | Refusal]) -> set[ReasonCode | None]:
    return {x.code if isinstance(x, Refusal) else None for x in results.values()}


def two_partial_histories() -> Cluster:
    """n = 3, t = 2: 60 signed by {1, 2}, then 30 by {2, 3}. Node 1 knows only the 60,
    node 3 only the 30; the next set {1, 3} must still see 90."""
    c = Cluster(3)
    assert codes(c.sign([1, 2], c.request(60, T0), T0)) == {None}
    assert codes(c.sign([2, 3], c.request(30, T0 + 10), T0 + 10)) == {None}
    return c


def test_honest_coordinator_velocity_spans_signing_sets() -> None:
    c = two_partial_histories()
    assert codes(c.sign([1, 3], c.request(20, T0 + 20), T0 + 20)) == {ReasonCode.VELOCITY_EXCEEDED}
    assert codes(c.sign([1, 3], c.request(10, T0 + 20), T0 + 20)) == {None}  # exactly 100


def test_own_history_alone_is_not_enough() -> None:
    """Why the exchange exists: each member of {1, 3} checking only its own log allows 110."""
    c = two_partial_histories()
    r = c.request(20, T0 + 20)
    for i in (1, 3):
        out = authorize(
            c.nodes[i].state,
            request=r,
            initiator_signature=isig(r),
            approvals=[],
            policy_version_id=c.nodes[i].state.version_id,
            key_tenant="acme",
            history=c.nodes[i].log.as_history(),
            now=T0 + 20,
        )
        assert isinstance(out, Authorization)


def test_coordinator_hiding_past_signatures_is_caught() -> None:
    c = two_partial_histories()
    r = c.request(20, T0 + 20)
    # it claims nothing was signed in the window
    assert codes(c.sign([1, 3], r, T0 + 20, view=[])) == {ReasonCode.HISTORY_HIDDEN}
    # it admits only what node 1 already knows
    only_first = [e for e in c.signed if e.amount == 60]
    out = c.sign([1, 3], r, T0 + 20, view=only_first)
    assert codes(out) == {ReasonCode.HISTORY_HIDDEN}
    assert isinstance(out[1], Refusal) and "r-2" in out[1].detail
    # it also withholds node 3's report from node 1 (and vice versa)
    dropped = c.sign(
        [1, 3], r, T0 + 20, view=[], deliver=lambda to, frm, rep: None if frm != to else rep
    )
    assert codes(dropped) == {ReasonCode.HISTORY_REPORT_MISSING}
    assert len(c.signed) == 2


def test_coordinator_cannot_edit_or_replay_reports() -> None:
    c = two_partial_histories()
    old = c.request(1, T0 + 15)
    stale: dict[int, HistoryReport] = {}

    def keep(to: int, frm: int, rep: HistoryReport) -> HistoryReport:
        stale[frm] = rep
        return rep

    c.sign([1, 3], old, T0 + 15, deliver=keep)  # succeeds (91), reports kept
    r = c.request(5, T0 + 20)

    def replay(to: int, frm: int, rep: HistoryReport) -> HistoryReport:
        return stale[frm] if frm != to else rep

    assert codes(c.sign([1, 3], r, T0 + 20, deliver=replay)) == {ReasonCode.HISTORY_REPORT_INVALID}

    def strip(to: int, frm: int, rep: HistoryReport) -> HistoryReport:
        return HistoryReport(rep.head, rep.entries[:-1]) if frm != to else rep

    assert codes(c.sign([1, 3], r, T0 + 20, deliver=strip)) == {ReasonCode.HISTORY_CHAIN_INVALID}
    assert codes(c.sign([1, 3], r, T0 + 20)) == {None}  # 96 <= 100


def test_a_peer_that_rewrites_its_log_is_caught() -> None:
    c = two_partial_histories()
    assert codes(c.sign([1, 3], c.request(1, T0 + 15), T0 + 15)) == {None}
    # node 3 (now dishonest) forgets the 30 and rebuilds its log; node 1 remembers its head
    c.nodes[3].log = NodeHistory(e for e in c.nodes[3].log.entries if e.amount != 30)
    out = c.sign([1, 3], c.request(5, T0 + 20), T0 + 20)
    assert isinstance(out[1], Refusal) and out[1].code is ReasonCode.HISTORY_ROLLBACK


def test_without_overlap_the_limit_cannot_be_enforced() -> None:
    """2t <= n (n = 4, t = 2): disjoint signing sets {1,2} and {3,4} never meet, so a
    coordinator that hides the first from the second gets 160 signed. This is why (A)."""
    c = Cluster(4)
    assert codes(c.sign([1, 2], c.request(80, T0), T0)) == {None}
    assert codes(c.sign([3, 4], c.request(80, T0 + 1), T0 + 1, view=[])) == {None}
    assert sum(e.amount for e in c.signed) == 160 > LIMIT


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    shape=st.sampled_from([(3, 2), (4, 3), (5, 3)]),
    steps=st.lists(
        st.tuples(st.integers(1, 60), st.integers(0, 900), st.booleans()), min_size=1, max_size=10
    ),
)
def test_velocity_holds_whatever_the_coordinator_hides(data, shape, steps) -> None:
    """With 2t > n, whatever signing sets and views the coordinator picks, what gets signed
    within any window never exceeds the limit."""
    n, t = shape
    c = Cluster(n)
    now = T0
    sets = list(itertools.combinations(range(1, n + 1), t))
    for amount, advance, lie in steps:
        now += advance
        signers = list(data.draw(st.sampled_from(sets)))
        view = None
        if lie:
            view = (
                data.draw(st.lists(st.sampled_from(c.signed), unique_by=lambda e: e.request_id))
                if c.signed
                else []
            )
        c.sign(signers, c.request(amount, now), now, view=view)
        for e in c.signed:
            in_window = [x for x in c.signed if e.timestamp - WINDOW < x.timestamp <= e.timestamp]
            assert sum(x.amount for x in in_window) <= LIMIT


def test_own_signatures_after_the_report_are_counted_but_not_required_in_the_view() -> None:
    """Concurrent requests: node 2 reports for r, then signs s; the coordinator built r's
    view from the reports, so s is missing from it. With the report-time length of its own
    log node 2 does not call that hiding, yet still counts s against the limit."""
    c = Cluster(3)
    r = c.request(30, T0)
    digest = r.digest()
    lookback = T0 - c.nodes[2].state.policy.document.max_velocity_window
    reports = {
        i: make_report(key(f"node-{i}"), i, c.nodes[i].log, digest, lookback) for i in (1, 2)
    }
    reported = c.nodes[2].log.count
    assert codes(c.sign([2, 3], c.request(60, T0 + 1), T0 + 1)) == {None}  # s, on node 2 only

    def gate(amount_of_r: int, own_reported_count: int | None) -> Authorization | Refusal:
        request = dataclasses.replace(r, amount=amount_of_r)
        return authorize_with_peers(
            c.nodes[2].state,
            node_id=2,
            request=request,
            initiator_signature=isig(request),
            approvals=[],
            policy_version_id=c.nodes[2].state.version_id,
            key_tenant="acme",
            own_log=c.nodes[2].log,
            signing_set=frozenset({1, 2}),
            reports={1: make_report(key("node-1"), 1, c.nodes[1].log, request.digest(), lookback)},
            node_keys=c.keys,
            coordinator_view=[],  # built before s was signed
            remembered_heads={},
            now=T0 + 2,
            own_reported_count=own_reported_count,
        )

    assert reports[2].head.count == reported
    # without the report-time length, s looks hidden
    refused = gate(30, None)
    assert isinstance(refused, Refusal) and refused.code is ReasonCode.HISTORY_HIDDEN
    # with it, r is judged with s counted: 60 + 30 fits, 60 + 50 does not
    assert isinstance(gate(30, reported), Authorization)
    over = gate(50, reported)
    assert isinstance(over, Refusal) and over.code is ReasonCode.VELOCITY_EXCEEDED
