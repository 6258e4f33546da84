"""A node's memory between history exchanges (policy/seen.py; docs/policy-format.md
section 8, "Each decision builds on the last"): a held coordinator account is extended
only by the part that follows it, HISTORY_HIDDEN is found exactly where a fresh exchange
finds it, and the union a node evaluates is never smaller than a fresh one."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from custody._pb.custody.node.v1 import node_pb2
from custody.coordinator.account import PRUNE_SLACK, CoordinatorAccount
from policy.errors import ReasonCode
from policy.exchange import ExchangeFailure, Reconciled, make_report, reconcile
from policy.history import History, HistoryEntry, NodeHistory, VelocityScope
from policy.seen import PRUNE_FLOOR, PRUNE_MARGIN, AccountPart, HeldAccount, Seen
from tests.policy.helpers import T0, key

DIGEST = bytes(range(32))
KEYS = {3: key("node-3"), 4: key("node-4")}
EPOCH = b"e" * 16


def entry(k: int, tenant: str = "acme", digest: int | None = None) -> HistoryEntry:
    return HistoryEntry(
        request_id=f"{tenant}:r-{k}",
        request_digest=(k if digest is None else digest).to_bytes(32, "big"),
        key_id="k-1",
        initiator="alice",
        tenant=tenant,
        asset="ETH",
        amount=k,
        timestamp=T0 + k,
    )


def exchange(
    logs: dict[int, NodeHistory],
    view: list[HistoryEntry],
    account: AccountPart | None = None,
    seen: Seen | None = None,
    *,
    tenant: str = "acme",
    own: NodeHistory | None = None,
    lookback: int = T0,
) -> Reconciled | ExchangeFailure:
    """Node 1's exchange with the peers in ``logs`` (each reporting its whole log)."""
    return reconcile(
        node_id=1,
        own=own or NodeHistory(),
        tenant=tenant,
        request_digest=DIGEST,
        signing_set=[1, *logs],
        reports={p: make_report(KEYS[p], p, log, DIGEST, lookback) for p, log in logs.items()},
        node_keys={p: k.public_key() for p, k in KEYS.items()},
        coordinator_view=view,
        lookback_after=lookback,
        remembered_heads={},
        seen=seen,
        account=account,
    )


def ok(out: Reconciled | ExchangeFailure) -> Reconciled:
    assert isinstance(out, Reconciled), out
    return out


def code(out: Reconciled | ExchangeFailure) -> ReasonCode | None:
    return out.code if isinstance(out, ExchangeFailure) else None


def ids(history: History) -> set[str]:
    return {e.request_id for e in history}


def log(*entries: HistoryEntry) -> NodeHistory:
    return NodeHistory(entries)


def test_a_held_account_is_extended_by_the_part_after_it() -> None:
    first = ok(
        exchange(
            {3: log(*map(entry, (1, 2, 3)))},
            [entry(k) for k in (1, 2, 3)],
            AccountPart(EPOCH, 0, 3),
        )
    )
    assert first.seen is not None
    held = first.seen.held_account("acme")
    assert held is not None and (held.epoch, held.end) == (EPOCH, 3)
    grown = log(*map(entry, range(1, 6)))
    later = ok(exchange({3: grown}, [entry(4), entry(5)], AccountPart(EPOCH, 3, 5), first.seen))
    fresh = ok(exchange({3: grown}, [entry(k) for k in range(1, 6)]))
    assert ids(later.history) == ids(fresh.history)
    # a part that leaves out entry 5, which node 3 knows: the coordinator hid it
    hidden = exchange({3: grown}, [entry(4)], AccountPart(EPOCH, 3, 4), first.seen)
    assert code(hidden) is ReasonCode.HISTORY_HIDDEN
    assert "node 3" in hidden.detail  # type: ignore[union-attr]


def test_a_part_the_node_does_not_hold_is_incomplete_and_a_whole_account_replaces() -> None:
    first = ok(exchange({3: log(entry(1))}, [entry(1)], AccountPart(EPOCH, 0, 1))).seen
    grown = {3: log(entry(1), entry(2))}
    for account, seen in [
        (AccountPart(EPOCH, 1, 2), None),  # holds nothing (restarted)
        (AccountPart(b"x" * 16, 1, 2), first),  # another coordinator process
        (AccountPart(EPOCH, 2, 3), first),  # a gap after what it holds
    ]:
        assert code(exchange(grown, [entry(2)], account, seen)) is (
            ReasonCode.HISTORY_REPORT_INCOMPLETE
        )
    whole = ok(exchange(grown, [entry(1), entry(2)], AccountPart(b"x" * 16, 0, 9), first))
    assert whole.seen is not None
    assert whole.seen.held_account("acme") is not None
    assert whole.seen.held_account("acme").end == 9  # type: ignore[union-attr]


def test_account_positions_that_do_not_add_up_are_invalid() -> None:
    first = ok(exchange({3: log(entry(1))}, [entry(1)], AccountPart(EPOCH, 0, 1))).seen
    grown = {3: log(entry(1), entry(2))}
    short = exchange(grown, [entry(2)], AccountPart(EPOCH, 1, 3), first)
    assert code(short) is ReasonCode.HISTORY_REPORT_INVALID
    too_many = exchange(grown, [entry(1), entry(2)], AccountPart(EPOCH, 0, 1), first)
    assert code(too_many) is ReasonCode.HISTORY_REPORT_INVALID


def test_hidden_is_checked_per_tenant_from_where_it_stopped() -> None:
    """The peer's globex entry arrives with an acme request (not checked then); the next
    globex request finds it missing from globex's account."""
    mixed = log(entry(1), entry(2, "globex"))
    acme = ok(exchange({3: mixed}, [entry(1)], AccountPart(EPOCH, 0, 1))).seen
    again = log(entry(1), entry(2, "globex"), entry(3))
    acme2 = ok(exchange({3: again}, [entry(3)], AccountPart(EPOCH, 1, 2), acme)).seen
    hidden = exchange({3: again}, [], AccountPart(EPOCH, 0, 0), acme2, tenant="globex")
    assert code(hidden) is ReasonCode.HISTORY_HIDDEN
    shown = exchange(
        {3: again}, [entry(2, "globex")], AccountPart(EPOCH, 0, 1), acme2, tenant="globex"
    )
    assert ok(shown).seen is not None


def test_a_conflict_blocks_only_where_a_fresh_exchange_would_see_it() -> None:
    """Node 3 showed r-2. The coordinator then claims r-2 with another digest. With node 3
    in the set the conflict is current: HISTORY_CONFLICT. With node 4 alone a fresh
    exchange could not see it, so a remembered copy must not block the request either (a
    corrupt node outside the set could otherwise make honest nodes refuse a request for
    good): the current copy replaces the remembered one."""
    seen = ok(exchange({3: log(entry(1), entry(2))}, [entry(1), entry(2)])).seen
    forged = [entry(2, digest=99)]
    with_3 = exchange({3: log(entry(1), entry(2))}, forged, seen=seen)
    assert code(with_3) is ReasonCode.HISTORY_CONFLICT
    without_3 = ok(exchange({4: log()}, forged, seen=seen))
    assert without_3.history.get("acme:r-2") == forged[0]
    assert isinstance(exchange({4: log()}, forged), Reconciled)
    # a copy under the same digest with another amount is another request, not a copy
    cheaper = [replace(entry(2), amount=0, timestamp=T0 + 10**6)]
    same_set = exchange({3: log(entry(1), entry(2))}, cheaper, seen=seen)
    assert code(same_set) is ReasonCode.HISTORY_CONFLICT
    assert code(exchange({3: log(entry(1), entry(2))}, cheaper)) is ReasonCode.HISTORY_CONFLICT


def test_a_whole_account_replaces_the_claims_it_held() -> None:
    """The held account claimed r-2 as node 3 showed it. A whole account from another
    coordinator epoch claims another r-2, and node 3 is not in the set: the old claim is
    no longer part of the account, so (as in a fresh exchange) the current copy replaces
    the remembered one. Extending the held account instead keeps the old claim current:
    HISTORY_CONFLICT."""
    real = [entry(1), entry(2)]
    seen = ok(exchange({3: log(*real)}, real, AccountPart(EPOCH, 0, 2))).seen
    forged = [entry(2, digest=99)]
    whole = ok(exchange({4: log()}, forged, AccountPart(b"x" * 16, 0, 1), seen))
    assert whole.history.get("acme:r-2") == forged[0]
    assert isinstance(exchange({4: log()}, forged, AccountPart(b"x" * 16, 0, 1)), Reconciled)
    extended = exchange({4: log()}, forged, AccountPart(EPOCH, 2, 3), seen)
    assert code(extended) is ReasonCode.HISTORY_CONFLICT


def test_the_union_keeps_what_every_peer_showed() -> None:
    """Velocity counts what node 3 reported even when the next request goes through node
    4: a larger history can only refuse more (policy/seen.py)."""
    seen = ok(exchange({3: log(entry(5), entry(7))}, [entry(5), entry(7)])).seen
    later = ok(exchange({4: log()}, [], seen=seen))
    fresh = ok(exchange({4: log()}, []))
    scope = (VelocityScope.TENANT, "acme", "ETH", T0)
    assert later.history.window(*scope) == (2, 12)
    assert fresh.history.window(*scope) == (0, 0)


def test_pruning_drops_only_what_no_window_counts() -> None:
    entries = [entry(k) for k in range(1, 2001)]
    claimed = {e.request_id: e for e in entries}
    seen = Seen(
        History(entries), 0, accounts={"acme": HeldAccount(EPOCH, 2000, claimed)}, prune_at=1000
    )
    after = T0 + 1500
    pruned = seen.pruned(after)
    scope = (VelocityScope.TENANT, "acme", "ETH")
    for lookback in (after, after - PRUNE_MARGIN, T0 + 1999):
        assert pruned.union.window(*scope, lookback) == seen.union.window(*scope, lookback)
    assert len(pruned.union) == 2000 - (1500 - PRUNE_MARGIN)
    assert pruned.prune_at == max(PRUNE_FLOOR, 2 * len(pruned.union))
    kept = pruned.held_account("acme")
    assert (
        kept is not None and min(e.timestamp for e in kept.claimed.values()) > after - PRUNE_MARGIN
    )
    small = Seen(History(entries), 0)  # below prune_at: left as it is
    assert small.pruned(after) is small


def test_the_coordinator_account_sends_what_a_signer_lacks() -> None:
    account = CoordinatorAccount(lambda t, after: [entry(1), entry(2)], lambda: [entry(3)])
    part, sent = account.part("acme", None, T0)
    assert (part.start, part.end, sent) == (0, 3, (entry(1), entry(2), entry(3)))
    epoch = part.epoch
    account.note([entry(4), entry(2), entry(9, "globex")])  # dedup; globex is not held
    held = node_pb2.HeldAccount(epoch=epoch, end=3)
    part, sent = account.part("acme", held, T0)
    assert (part.start, part.end, sent) == (3, 4, (entry(4),))
    for stale in (
        node_pb2.HeldAccount(epoch=b"old", end=3),
        node_pb2.HeldAccount(epoch=epoch, end=7),
    ):
        part, sent = account.part("acme", stale, T0)
        assert part.whole and len(sent) == 4
    # old entries leave a long sequence; a signer that held them gets the whole account
    account.note(entry(k) for k in range(10, 10 + 2 * PRUNE_SLACK))
    part, sent = account.part("acme", held, T0 + 10 + PRUNE_SLACK)
    assert part.whole and all(e.timestamp > T0 + 10 + PRUNE_SLACK for e in sent)


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([3, 4]),
            st.sampled_from(["acme", "globex"]),
            st.integers(0, 3),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_memory_decides_as_a_fresh_exchange(steps: list[tuple[int, str, int, bool]]) -> None:
    """Whatever the order of signing sets and tenants, and whether the coordinator hides
    an entry: an exchange with memory refuses exactly when a fresh one does (same code),
    and its union holds the fresh one's."""
    logs = {3: NodeHistory(), 4: NodeHistory()}
    account = CoordinatorAccount(lambda t, after: (), lambda: ())
    for t in ("acme", "globex"):
        account.part(t, None, T0)
    seen: Seen | None = None
    k = 0
    for peer, tenant, grow, hide in steps:
        for _ in range(grow):  # the peer signs more (the coordinator learns, or hides one)
            k += 1
            e = entry(k, tenant)
            logs[peer] = logs[peer].append(e)
            if not hide:
                account.note([e])
        held = seen.held_account(tenant) if seen is not None else None
        wire = None if held is None else node_pb2.HeldAccount(epoch=held.epoch, end=held.end)
        part, sent = account.part(tenant, wire, T0)
        _, whole = account.part(tenant, None, T0)
        mine = exchange({peer: logs[peer]}, list(sent), part, seen, tenant=tenant)
        fresh = exchange({peer: logs[peer]}, list(whole), tenant=tenant)
        assert code(mine) is code(fresh)
        if isinstance(mine, Reconciled) and isinstance(fresh, Reconciled):
            assert ids(fresh.history) <= ids(mine.history)
            seen = mine.seen


def test_a_longer_window_starts_the_memory_again() -> None:
    """The memory skipped what was older than its lookback; a longer window (or a clock
    stepped back) must see those entries again: the held account is not used (the
    coordinator sends it whole) and the peer's older entries are counted."""
    peer = log(entry(5), entry(50), entry(60))
    short = ok(
        exchange({3: peer}, [entry(50), entry(60)], AccountPart(EPOCH, 0, 2), lookback=T0 + 40)
    ).seen
    assert short is not None and short.covers_after == T0 + 40
    part = exchange({3: peer}, [], AccountPart(EPOCH, 2, 2), short, lookback=T0)
    assert code(part) is ReasonCode.HISTORY_REPORT_INCOMPLETE
    hidden = exchange(
        {3: peer}, [entry(50), entry(60)], AccountPart(EPOCH, 0, 2), short, lookback=T0
    )
    assert code(hidden) is ReasonCode.HISTORY_HIDDEN  # entry 5 is in the longer window
    whole = ok(
        exchange(
            {3: peer}, [entry(k) for k in (5, 50, 60)], AccountPart(EPOCH, 0, 3), short, lookback=T0
        )
    )
    assert whole.history.window(VelocityScope.TENANT, "acme", "ETH", T0) == (3, 115)


def test_a_record_that_a_report_contradicted_resets_the_account() -> None:
    lie = replace(entry(2), amount=0)
    account = CoordinatorAccount(lambda t, after: [entry(1)], lambda: [])
    first, _ = account.part("acme", None, T0)
    account.note([lie])  # a report's copy arrived first
    account.note([entry(2)], committed=True)  # the record says otherwise
    held = node_pb2.HeldAccount(epoch=first.epoch, end=first.end)
    part, sent = account.part("acme", held, T0)
    assert part.whole and part.epoch != first.epoch and sent == (entry(1),)
    # a lookback older than the sequence was read for reads it again, under a new epoch
    longer, _ = account.part("acme", node_pb2.HeldAccount(epoch=part.epoch, end=1), T0 - 60)
    assert longer.whole and longer.epoch != part.epoch
