"""History reports at the node's wire edge (signer_nodes/node/authorization.py): the
entries' messages are memoized across reports, and that must never show: every report
is its own message, equal to a fresh conversion, and round-trips to the same report."""

from __future__ import annotations

from policy.exchange import make_report
from policy.history import HistoryEntry, NodeHistory
from signer_nodes.node.authorization import entry_to_proto, report_from_proto, report_to_proto
from tests.policy.helpers import T0, key


def entry(i: int) -> HistoryEntry:
    return HistoryEntry(
        request_id=f"r-{i}",
        request_digest=bytes([i]) * 32,
        key_id="key-hot-1",
        initiator="acme-bot",
        tenant="acme",
        asset="ETH",
        amount=10**30 + i,
        timestamp=T0 + i,
    )


def test_reports_are_independent_messages_equal_to_a_fresh_conversion() -> None:
    log = NodeHistory(entry(i) for i in range(1, 6))
    first = make_report(key("node-1"), 1, log, b"\x01" * 32, T0)
    message = report_to_proto(first)
    assert list(message.entries) == [entry_to_proto(e) for e in first.entries]
    assert report_from_proto(message) == first
    message.entries[0].amount = "7"  # a caller changing its report...
    del message.entries[1:]
    later = make_report(key("node-1"), 1, log.append(entry(6)), b"\x02" * 32, T0 + 2)
    again = report_to_proto(later)  # ...changes no later report
    assert list(again.entries) == [entry_to_proto(e) for e in later.entries]
    assert report_from_proto(again) == later
    assert report_from_proto(report_to_proto(first)) == first
