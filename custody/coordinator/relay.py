"""What the coordinator keeps of the signers' history logs, so that a report carries
only what is new (policy/exchange.py, "Reports carry what is new"; docs/policy-format.md
section 8).

Two hops are trimmed:

- a signer's report to the coordinator leaves out the entries the coordinator already
  holds of its log (``held_end`` in the request); :meth:`ReportRelay.absorb` puts the
  whole suffix back together from what it holds and checks that it chains to the signed
  head;
- the report the coordinator passes to another signer leaves out what that signer says
  it holds (``GetHistoryReportResponse.held``), :meth:`ReportRelay.for_receiver`.

The coordinator is not trusted with this: every receiver checks the signed head and the
hash chain itself, with its own held entries. What the coordinator holds only saves it
asking for the whole suffix again. A gap or a fork in what it holds (a node restored from
a backup, a node that lies) makes :meth:`absorb` fail and the coordinator ask again for
the whole suffix.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from custody._pb.custody.node.v1 import node_pb2
from policy.exchange import (
    ExchangeFailure,
    HistoryReport,
    VerifiedSuffix,
    report_suffix,
    to_hold,
)
from policy.history import HistoryEntry


@dataclass(frozen=True, slots=True)
class Held:
    """What a receiver says it holds of one peer's log: entries after ``start`` up to
    ``end``."""

    start: int
    end: int


def held_by(response: node_pb2.GetHistoryReportResponse) -> dict[int, Held]:
    return {h.node_id: Held(h.start, h.end) for h in response.held}


class ReportRelay:
    """Per signer, the suffix of its log the coordinator last put together (thread-safe:
    requests of different tenants report concurrently)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[int, VerifiedSuffix] = {}

    def held_end(self, node_id: int) -> int:
        """What to send as ``held_end`` when asking ``node_id`` for a report."""
        with self._lock:
            suffix = self._logs.get(node_id)
        return 0 if suffix is None else suffix.end

    def absorb(self, node_id: int, report: HistoryReport) -> VerifiedSuffix | None:
        """The report's whole suffix (anchor to head), kept for the next request; None when
        the left-out entries are not held here or do not chain (ask for the whole
        suffix)."""
        with self._lock:
            held = self._logs.get(node_id)
        suffix = report_suffix(report, held)
        if isinstance(suffix, ExchangeFailure):
            with self._lock:
                if self._logs.get(node_id) is held:
                    self._logs.pop(node_id, None)
            return None
        with self._lock:
            current = self._logs.get(node_id)
            if current is None or current.end <= suffix.end:
                self._logs[node_id] = to_hold(current, suffix)
        return suffix

    def entries(self) -> list[HistoryEntry]:
        """Every entry held of every signer's log."""
        with self._lock:
            logs = list(self._logs.values())
        return [e for suffix in logs for e in suffix.entries]

    def forget(self, node_id: int) -> None:
        with self._lock:
            self._logs.pop(node_id, None)


def for_receiver(
    report: HistoryReport, entries: tuple[HistoryEntry, ...], held: Mapping[int, Held]
) -> HistoryReport:
    """``report`` (made whole: ``entries`` from its anchor) without the entries its
    receiver holds: from the end of what the receiver holds of the reporter, when that
    covers the anchor."""
    whole = HistoryReport(report.head, entries)
    have = held.get(report.head.node_id)
    if have is None or not have.start <= report.head.anchor_count <= have.end:
        return whole
    return whole.after(have.end)
