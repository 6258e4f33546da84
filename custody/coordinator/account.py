"""The coordinator's account of each tenant's signatures, as an append-only sequence that
the signers hold (policy/seen.py; docs/policy-format.md section 8, "Each decision builds
on the last").

With every request the coordinator sends each signer its account of the tenant's
signatures in the velocity window (``coordinator_view``, policy.exchange step 2). Sent
whole, that is O(window) per request on every hop. Here the account of a tenant is a
sequence, numbered from when the coordinator first read it (its *epoch*): entries are
only appended, so a signer that holds positions up to ``end`` (it says so in
``GetHistoryReportResponse.account``) is sent the entries after ``end`` alone. A signer
that holds nothing, another epoch (the coordinator restarted) or a part that was pruned
is sent the whole account in the window, which replaces what it holds.

What goes in: every committed signature (from governance's record, loaded once per
tenant) and every entry of a signer's report (signatures in flight on another thread,
or never recorded), as they arrive. The account is not trusted by the signers: an entry
it leaves out that a signer knows is ``HISTORY_HIDDEN``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from custody._pb.custody.node.v1 import node_pb2
from policy.history import HistoryEntry
from policy.seen import AccountPart

# A tenant's sequence drops its leading entries older than every window once it holds
# more than this many entries (they can no longer count; positions stay).
PRUNE_SLACK = 1024


@dataclass(slots=True)
class _Sequence:
    after: int  # loaded with every committed entry newer than this
    base: int = 0  # the position of entries[0]
    epoch: bytes = field(default_factory=lambda: os.urandom(16))
    entries: list[HistoryEntry] = field(default_factory=list)
    ids: dict[str, HistoryEntry] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.base + len(self.entries)

    def append(self, entry: HistoryEntry) -> bool:
        """Append ``entry`` unless its request is there; False if it is there as
        another request (same id, other fields)."""
        held = self.ids.get(entry.request_id)
        if held is not None:
            return held.identity == entry.identity
        self.ids[entry.request_id] = entry
        self.entries.append(entry)
        return True

    def prune(self, after: int) -> None:
        """Drop the leading entries with ``timestamp <= after`` when there are many."""
        if len(self.entries) <= PRUNE_SLACK:
            return
        k = 0
        while k < len(self.entries) - PRUNE_SLACK // 2 and self.entries[k].timestamp <= after:
            k += 1
        if k:
            for e in self.entries[:k]:
                self.ids.pop(e.request_id, None)
            del self.entries[:k]
            self.base += k


class CoordinatorAccount:
    """Per tenant, the sequence of signatures the coordinator knows (thread-safe).

    ``committed(tenant, after)``: the recorded signatures newer than ``after`` (read when
    a tenant is first used); ``reported()``: the entries the coordinator holds of the
    signers' logs (custody/coordinator/relay.py), for the same first read."""

    def __init__(
        self,
        committed: Callable[[str, int], Iterable[HistoryEntry]],
        reported: Callable[[], Iterable[HistoryEntry]],
    ) -> None:
        self._committed = committed
        self._reported = reported
        self._lock = threading.Lock()
        self._tenants: dict[str, _Sequence] = {}

    def note(self, entries: Iterable[HistoryEntry], *, committed: bool = False) -> None:
        """Signatures the coordinator learned of (recorded: ``committed``, or in a
        report): appended to their tenants' sequences when those are held (else the first
        read finds them). A recorded signature whose request id the sequence holds as
        another request (a report that lied) drops the sequence: it is read again, from
        the record first, under a new epoch, and every signer is sent it whole."""
        with self._lock:
            for e in entries:
                seq = self._tenants.get(e.tenant)
                if seq is not None and not seq.append(e) and committed:
                    del self._tenants[e.tenant]

    def part(
        self, tenant: str, held: node_pb2.HeldAccount | None, after: int
    ) -> tuple[AccountPart, tuple[HistoryEntry, ...]]:
        """What to send a signer that holds ``held`` of ``tenant``'s account: the entries
        after it, or the whole account newer than ``after`` (``start == 0``). A lookback
        older than the sequence was read for (a longer window) reads it again."""
        with self._lock:
            seq = self._tenants.get(tenant)
            if seq is None or after < seq.after:
                seq = _Sequence(after)
                for e in self._committed(tenant, after):
                    seq.append(e)
                for e in self._reported():  # a report's copy never displaces the record
                    if e.tenant == tenant and e.timestamp > after:
                        seq.append(e)
                self._tenants[tenant] = seq
            seq.prune(after)
            end = seq.end
            if (
                held is not None
                and held.epoch == seq.epoch
                and 0 < held.end <= end
                and held.end >= seq.base
            ):
                return AccountPart(seq.epoch, held.end, end), tuple(
                    seq.entries[held.end - seq.base :]
                )
            whole = tuple(e for e in seq.entries if e.timestamp > after)
            return AccountPart(seq.epoch, 0, end), whole
