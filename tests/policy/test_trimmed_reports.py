"""Reports that leave out what the receiver holds (policy/exchange.py, "Reports carry what
is new"; docs/policy-format.md section 8): they prove exactly what whole reports prove,
and every way a coordinator or a peer could abuse the trimming is refused and named."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from custody.coordinator.relay import Held, ReportRelay, for_receiver
from policy.errors import ReasonCode
from policy.exchange import (
    ExchangeFailure,
    HistoryReport,
    VerifiedSuffix,
    make_report,
    reconcile,
    verify_report,
)
from policy.history import HistoryEntry, NodeHistory
from tests.policy.helpers import T0, key

DIGEST = bytes(range(32))
PEER = 3
PEER_KEY = key("node-3")


def entry(k: int, tenant: str = "acme") -> HistoryEntry:
    return HistoryEntry(
        request_id=f"{tenant}:r-{k}",
        request_digest=k.to_bytes(32, "big"),
        key_id="k-1",
        initiator="alice",
        tenant=tenant,
        asset="ETH",
        amount=k,
        timestamp=T0 + k,
    )


def log_of(n: int) -> NodeHistory:
    return NodeHistory(entry(k) for k in range(1, n + 1))


def report(log: NodeHistory, *, after: int = T0, held_end: int = 0) -> HistoryReport:
    return make_report(PEER_KEY, PEER, log, DIGEST, after, held_end)


def verified(log: NodeHistory, after: int = T0) -> VerifiedSuffix:
    out = verify_report(report(log, after=after), PEER_KEY.public_key(), DIGEST, None, None)
    assert isinstance(out, VerifiedSuffix)
    return out


def check(r: HistoryReport, held: VerifiedSuffix | None) -> VerifiedSuffix | ExchangeFailure:
    return verify_report(r, PEER_KEY.public_key(), DIGEST, None, held)


def code(out: VerifiedSuffix | ExchangeFailure) -> ReasonCode | None:
    return out.code if isinstance(out, ExchangeFailure) else None


def test_a_trimmed_report_proves_what_the_whole_one_proves() -> None:
    held = verified(log_of(10))
    later = log_of(13)
    whole = check(report(later), None)
    trimmed = report(later, held_end=10)
    assert trimmed.start == 10 and len(trimmed.entries) == 3
    out = check(trimmed, held)
    assert isinstance(out, VerifiedSuffix) and isinstance(whole, VerifiedSuffix)
    assert out == whole  # same entries, same hashes, from the anchor to the head


def test_a_receiver_that_does_not_hold_the_left_out_part_says_so() -> None:
    trimmed = report(log_of(13), held_end=10)
    assert code(check(trimmed, None)) is ReasonCode.HISTORY_REPORT_INCOMPLETE
    assert code(check(trimmed, verified(log_of(8)))) is ReasonCode.HISTORY_REPORT_INCOMPLETE
    # held from a later anchor only: entries after the report's anchor are missing
    assert (
        code(check(trimmed, verified(log_of(10), after=T0 + 5)))
        is ReasonCode.HISTORY_REPORT_INCOMPLETE
    )


def test_a_peer_whose_log_forked_from_what_the_receiver_holds_is_caught() -> None:
    held = verified(log_of(10))
    forked = NodeHistory([*log_of(9).entries, entry(99), entry(11), entry(12)])
    # trimmed from 10: the new entries chain from the held hash, not to the signed head
    assert code(check(report(forked, held_end=10), held)) is ReasonCode.HISTORY_CHAIN_INVALID
    # whole: it chains, but disagrees with what the receiver verified before
    assert code(check(report(forked), held)) is ReasonCode.HISTORY_ROLLBACK
    # trimmed from 5 (inside the fork-free part): disagrees at the held end
    assert code(check(report(forked, held_end=5), held)) is ReasonCode.HISTORY_ROLLBACK


def test_a_relay_that_tampers_with_the_trimming_is_caught() -> None:
    held = verified(log_of(10))
    good = report(log_of(13), held_end=10)
    # an entry dropped, or the start moved without dropping entries: counts do not add up
    dropped = HistoryReport(good.head, good.entries[1:], 10)
    assert code(check(dropped, held)) is ReasonCode.HISTORY_CHAIN_INVALID
    moved = HistoryReport(good.head, good.entries, 11)
    assert code(check(moved, held)) is ReasonCode.HISTORY_CHAIN_INVALID
    # a start before the anchor or after the head
    before = HistoryReport(good.head, log_of(13).entries, -1)
    assert code(check(before, held)) is ReasonCode.HISTORY_CHAIN_INVALID
    beyond = HistoryReport(good.head, (), 14)
    assert code(check(beyond, held)) is ReasonCode.HISTORY_CHAIN_INVALID
    # an entry changed in transit
    changed = HistoryReport(good.head, (entry(11), entry(77), entry(13)), 10)
    assert code(check(changed, held)) is ReasonCode.HISTORY_CHAIN_INVALID
    # a trimmed report of another request (the signed head binds the digest)
    other = make_report(PEER_KEY, PEER, log_of(13), bytes(32), T0, 10)
    assert code(check(other, held)) is ReasonCode.HISTORY_REPORT_INVALID


def test_reconcile_counts_the_left_out_entries() -> None:
    """The union built from a trimmed report holds every entry of the window, exactly as
    from the whole report."""
    own = NodeHistory([entry(100, "other")])
    held = verified(log_of(10))
    trimmed = report(log_of(13), held_end=10)
    view = [entry(k) for k in range(1, 14)]
    common = {
        "node_id": 1,
        "own": own,
        "tenant": "acme",
        "request_digest": DIGEST,
        "signing_set": [1, PEER],
        "node_keys": {PEER: PEER_KEY.public_key()},
        "coordinator_view": view,
        "lookback_after": T0,
        "remembered_heads": {},
    }
    out = reconcile(reports={PEER: trimmed}, held_logs={PEER: held}, **common)
    whole = reconcile(reports={PEER: report(log_of(13))}, **common)
    assert not isinstance(out, ExchangeFailure) and not isinstance(whole, ExchangeFailure)
    assert sorted(e.request_id for e in out.history) == sorted(e.request_id for e in whole.history)
    assert out.peer_logs[PEER] == whole.peer_logs[PEER]
    # without the held part the same report is refused, not silently counted short
    missing = reconcile(reports={PEER: trimmed}, **common)
    assert isinstance(missing, ExchangeFailure)
    assert missing.code is ReasonCode.HISTORY_REPORT_INCOMPLETE


def test_the_held_suffix_reaches_back_a_bounded_way() -> None:
    older = verified(log_of(10))
    newer = verified(log_of(14), after=T0 + 6)
    merged = older.merged(newer, keep=3)
    assert (merged.start, merged.end) == (3, 14)
    assert merged.between(3, 14) == log_of(14).entries[3:]
    assert merged.hash_at(3) == log_of(14).head_at(3)
    # suffixes that do not agree where they meet are not merged
    forked = verified(NodeHistory([*log_of(5).entries, entry(50), *log_of(14).entries[6:]]))
    assert older.merged(forked, keep=3) == forked


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 30),
    grow=st.integers(0, 10),
    anchor=st.integers(0, 40),
    held_end=st.integers(0, 45),
)
def test_relay_round_trip_matches_the_whole_report(
    n: int, grow: int, anchor: int, held_end: int
) -> None:
    """Whatever the coordinator holds and whatever the receiver holds, what the receiver
    verifies is the reporter's whole suffix (or a named refusal, never a short count)."""
    first, later = log_of(n), log_of(n + grow)
    relay = ReportRelay()
    assert relay.absorb(PEER, report(first)) is not None
    asked = report(later, after=T0 + anchor, held_end=relay.held_end(PEER))
    whole = relay.absorb(PEER, asked)
    assert whole is not None and whole.entries == later.suffix_from(asked.head.anchor_count)
    receiver = verified(first, after=T0)
    held = {PEER: Held(receiver.start, min(held_end, receiver.end))}
    sent = for_receiver(asked, whole.entries, held)
    out = check(sent, receiver)
    expected = check(HistoryReport(asked.head, whole.entries), None)
    assert out == expected
