"""``History.extended`` indexes exactly what the constructor indexes (property test):
the coordinator keeps a tenant's signed history current one signature at a time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.document import VelocityScope
from policy.history import History, HistoryEntry, NodeHistory

ROW = st.tuples(
    st.integers(0, 20),  # request id (repeats: retries and replacements)
    st.integers(0, 50),  # timestamp
    st.integers(0, 10**6),  # amount
    st.sampled_from(["k1", "k2"]),
    st.sampled_from(["BTC", "ETH"]),
)


def entry(rid: int, ts: int, amount: int, key: str, asset: str) -> HistoryEntry:
    return HistoryEntry(
        request_id=f"t:r{rid}",
        request_digest=bytes([rid % 256]) * 32,  # one digest per id: same request, new time
        key_id=key,
        initiator="alice",
        tenant="t",
        asset=asset,
        amount=amount,
        timestamp=ts,
    )


def same(a: History, b: History) -> None:
    assert {e.request_id: e for e in a} == {e.request_id: e for e in b}
    for scope in VelocityScope:
        for value in ("k1", "k2", "alice", "t", "other"):
            for asset in ("BTC", "ETH", None):
                for after in range(-1, 52, 3):
                    assert a.window(scope, value, asset, after) == b.window(
                        scope, value, asset, after
                    )


@settings(max_examples=200, deadline=None)
@given(st.lists(ROW, max_size=30), st.integers(0, 30), st.integers(0, 30))
def test_extended_matches_constructor(rows: list, split: int, second: int) -> None:
    # Copies of one request differ only in their date (HistoryEntry.identity): the rest
    # comes from the id's first row.
    first_seen: dict[int, tuple] = {}
    for rid, _ts, *fields in rows:
        first_seen.setdefault(rid, tuple(fields))
    entries = [entry(rid, ts, *first_seen[rid]) for rid, ts, *_ in rows]
    first, rest = entries[:split], entries[split:]
    stepwise = History(first)
    for e in rest[:second]:
        stepwise = stepwise.extended([e])
    stepwise = stepwise.extended(rest[second:])
    same(stepwise, History(entries))


def test_extended_leaves_the_receiver_unchanged() -> None:
    base = History([entry(1, 10, 5, "k1", "BTC")])
    grown = base.extended([entry(2, 5, 7, "k1", "BTC")])
    assert base.window(VelocityScope.KEY, "k1", "BTC", 0) == (1, 5)
    assert grown.window(VelocityScope.KEY, "k1", "BTC", 0) == (2, 12)
    assert base.extended([]) is base


def test_extended_refuses_a_reused_id() -> None:
    base = History([entry(1, 10, 5, "k1", "BTC")])
    clash = HistoryEntry(
        request_id="t:r1",
        request_digest=b"\x09" * 32,
        key_id="k1",
        initiator="alice",
        tenant="t",
        asset="BTC",
        amount=1,
        timestamp=11,
    )
    with pytest.raises(ValueError, match="two different requests"):
        base.extended([clash])


def test_a_copy_with_the_same_digest_and_another_amount_is_another_request() -> None:
    """The receiver cannot derive the fields from the digest: a copy that keeps the digest
    but carries another amount (and a later date, so it would win) is refused, never used
    in place of the real entry."""
    base = History([entry(1, 10, 5, "k1", "BTC")])
    for lie in (entry(1, 99, 0, "k1", "BTC"), entry(1, 99, 5, "k2", "BTC")):
        with pytest.raises(ValueError, match="two different requests"):
            base.extended([lie])
        with pytest.raises(ValueError, match="two different requests"):
            History([entry(1, 10, 5, "k1", "BTC"), lie])


@settings(max_examples=200, deadline=None)
@given(st.lists(ROW, max_size=30), st.integers(-1, 52))
def test_node_log_index_and_suffix_start_match_the_definitions(rows: list, after: int) -> None:
    """``NodeHistory.append`` keeps its velocity index equal to a fresh one, and
    ``first_index_after`` is the first entry newer than ``after`` (timestamps may step
    back: the log is in signing order, not time order)."""
    entries = [entry(i, *r[1:]) for i, r in enumerate(rows)]
    log = NodeHistory()
    log.as_history()
    for e in entries:
        log = log.append(e)
    same(log.as_history(), History(entries))
    expected = next((i for i, e in enumerate(entries) if e.timestamp > after), len(entries))
    assert log.first_index_after(after) == expected
    assert NodeHistory(entries).first_index_after(after) == expected
