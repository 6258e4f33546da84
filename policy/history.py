"""A node's own signing history: the entries velocity rules sum over, an index that
answers sliding-window queries in O(log n), and the hash chain that commits to it.

Window semantics (exact, documented in ``docs/policy-format.md``): at evaluation time
``now`` a velocity window of ``W`` seconds contains every entry with
``timestamp > now - W``. An entry exactly ``W`` seconds old has left the window; entries
dated after ``now`` (a peer's clock ahead of ours) are inside it, which errs on the side
of refusing.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from policy._codec import ZERO_HASH, hash_tagged, i64, lps, uint_var
from policy.document import VelocityScope
from policy.request import SigningRequest, request_digest, valid_identifier

_ALL_ASSETS = ""  # never a valid asset identifier, so usable as the "any asset" index key


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One request this node contributed a signature share to (or learned of from a
    verified peer report). ``timestamp`` is the signing node's clock at signing time."""

    request_id: str
    request_digest: bytes
    key_id: str
    initiator: str
    tenant: str
    asset: str
    amount: int
    timestamp: int

    def __post_init__(self) -> None:
        for name in ("request_id", "key_id", "initiator", "tenant", "asset"):
            if not valid_identifier(getattr(self, name)):
                raise ValueError(f"{name}: not a valid identifier")
        if len(self.request_digest) != 32:
            raise ValueError("request_digest: 32 bytes")
        if isinstance(self.amount, bool) or not 0 <= self.amount < 1 << 256:
            raise ValueError("amount: an integer in [0, 2^256)")
        if isinstance(self.timestamp, bool) or not 0 <= self.timestamp < 1 << 62:
            raise ValueError("timestamp: unix seconds")

    @property
    def identity(self) -> tuple[bytes, str, str, str, str, int]:
        """Everything but the timestamp: what every copy of one signature agrees on (each
        recorder dates it by its own clock). Two copies of a request id that differ here
        are two different requests, even under the same digest (the fields are not
        derived from the digest by the receiver, so a copy with the digest and another
        amount would otherwise replace the real one)."""
        return (
            self.request_digest,
            self.key_id,
            self.initiator,
            self.tenant,
            self.asset,
            self.amount,
        )

    @classmethod
    def for_request(cls, request: SigningRequest, timestamp: int) -> HistoryEntry:
        return cls(
            request_id=request.request_id,
            request_digest=request_digest(request),
            key_id=request.key_id,
            initiator=request.initiator,
            tenant=request.tenant,
            asset=request.asset,
            amount=request.amount,
            timestamp=timestamp,
        )

    def encode(self) -> bytes:
        return b"".join(
            (
                lps(self.request_id),
                self.request_digest,
                lps(self.key_id),
                lps(self.initiator),
                lps(self.tenant),
                lps(self.asset),
                uint_var(self.amount),
                i64(self.timestamp),
            )
        )

    def scope_value(self, scope: VelocityScope) -> str:
        if scope is VelocityScope.KEY:
            return self.key_id
        if scope is VelocityScope.INITIATOR:
            return self.initiator
        return self.tenant


class History:
    """An immutable set of history entries, unique by ``request_id``, indexed for
    sliding-window sums and counts per (scope, scope value, asset)."""

    __slots__ = ("_by_id", "_index")

    def __init__(self, entries: Iterable[HistoryEntry] = ()) -> None:
        by_id: dict[str, HistoryEntry] = {}
        for e in entries:
            old = by_id.get(e.request_id)
            if old is not None:
                if old.identity != e.identity:
                    raise ValueError(f"two different requests with id {e.request_id!r}")
                if old.timestamp >= e.timestamp:
                    continue  # keep the latest timestamp: it stays longest in the windows
            by_id[e.request_id] = e
        self._by_id = by_id
        buckets: dict[tuple[VelocityScope, str, str], list[tuple[int, int]]] = {}
        for e in by_id.values():
            for scope in VelocityScope:
                value = e.scope_value(scope)
                for asset in (e.asset, _ALL_ASSETS):
                    buckets.setdefault((scope, value, asset), []).append((e.timestamp, e.amount))
        index: dict[tuple[VelocityScope, str, str], tuple[list[int], list[int]]] = {}
        for k, rows in buckets.items():
            rows.sort()
            prefix = [0]
            for _, amount in rows:
                prefix.append(prefix[-1] + amount)
            index[k] = ([t for t, _ in rows], prefix)
        self._index = index

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(self._by_id.values())

    def get(self, request_id: str) -> HistoryEntry | None:
        return self._by_id.get(request_id)

    def extended(self, entries: Iterable[HistoryEntry]) -> History:
        """This history with ``entries`` added, exactly as the constructor would index
        the union: an entry whose id is present keeps the later timestamp, and a
        different digest under the same id raises ``ValueError``. The receiver is
        unchanged. Costs a copy of the touched series (C-speed list copies) and work
        proportional to how far from the newest end an entry lands, instead of
        re-indexing every entry: a log that grows by recent signatures stays cheap."""
        by_id: dict[str, HistoryEntry] | None = None  # copies, made at the first change
        index: dict[tuple[VelocityScope, str, str], tuple[list[int], list[int]]] = {}
        copied: set[tuple[VelocityScope, str, str]] = set()

        def series(k: tuple[VelocityScope, str, str]) -> tuple[list[int], list[int]]:
            if k not in copied:
                times, prefix = index.get(k, ([], [0]))
                index[k] = (list(times), list(prefix))
                copied.add(k)
            return index[k]

        for e in entries:
            current = self._by_id if by_id is None else by_id
            old = current.get(e.request_id)
            if old is not None:
                if old.identity != e.identity:
                    raise ValueError(f"two different requests with id {e.request_id!r}")
                if old.timestamp >= e.timestamp:
                    continue
            if by_id is None:
                by_id, index = dict(self._by_id), dict(self._index)
            by_id[e.request_id] = e
            for scope in VelocityScope:
                if old is not None:  # the same request, seen later: move it
                    for asset in (old.asset, _ALL_ASSETS):
                        times, prefix = series((scope, old.scope_value(scope), asset))
                        _remove(times, prefix, old.timestamp, old.amount)
                for asset in (e.asset, _ALL_ASSETS):
                    times, prefix = series((scope, e.scope_value(scope), asset))
                    _insert(times, prefix, e.timestamp, e.amount)
        if by_id is None:
            return self
        out = History.__new__(History)
        out._by_id = by_id
        out._index = index
        return out

    def without(self, request_id: str) -> History:
        return History(e for e in self._by_id.values() if e.request_id != request_id)

    def series(
        self, scope: VelocityScope, value: str, asset: str | None
    ) -> tuple[list[int], list[int]] | None:
        """Sorted timestamps and prefix sums of amounts for one (scope, value, asset) —
        the raw index behind :meth:`window`; callers must not mutate the lists."""
        return self._index.get((scope, value, _ALL_ASSETS if asset is None else asset))

    def window(
        self, scope: VelocityScope, value: str, asset: str | None, after: int
    ) -> tuple[int, int]:
        """``(count, sum of amounts)`` of entries in ``scope``/``value`` (and ``asset``, or
        any asset for ``None``) with ``timestamp > after``."""
        found = self._index.get((scope, value, _ALL_ASSETS if asset is None else asset))
        if found is None:
            return 0, 0
        times, prefix = found
        i = bisect_right(times, after)
        return len(times) - i, prefix[-1] - prefix[i]


def _insert(times: list[int], prefix: list[int], timestamp: int, amount: int) -> None:
    i = bisect_right(times, timestamp)
    times.insert(i, timestamp)
    prefix.insert(i + 1, prefix[i] + amount)
    for j in range(i + 2, len(prefix)):
        prefix[j] += amount


def _remove(times: list[int], prefix: list[int], timestamp: int, amount: int) -> None:
    """Remove one element ``(timestamp, amount)``; which of several equal ones does not
    matter: windows are bounded by timestamps only."""
    i, end = bisect_left(times, timestamp), bisect_right(times, timestamp)
    while i < end and prefix[i + 1] - prefix[i] != amount:
        i += 1
    if i == end:
        raise AssertionError("history index out of step with its entries")
    del times[i]
    del prefix[i + 1]
    for j in range(i + 1, len(prefix)):
        prefix[j] -= amount


@lru_cache(maxsize=1 << 16)
def chain_step(prev: bytes, entry: HistoryEntry) -> bytes:
    """``head_k = SHA-256(tag("history") || head_{k-1} || encode(entry_k))``. Memoized: a
    peer's report repeats the same chain for every request of a velocity window."""
    return hash_tagged("history", prev, entry.encode())


class NodeHistory:
    """The append-only, hash-chained log of what one node signed, in signing order.

    ``heads[k]`` commits to the first ``k`` entries (``heads[0]`` is 32 zero bytes), so a
    node can later prove that a report it sends is a contiguous suffix of its log and a
    peer that remembers an earlier head can check the log was only extended, never
    rewritten (:mod:`policy.exchange`).
    """

    __slots__ = ("_entries", "_heads", "_history", "_latest")

    def __init__(self, entries: Iterable[HistoryEntry] = ()) -> None:
        self._entries: list[HistoryEntry] = []
        self._heads: list[bytes] = [ZERO_HASH]
        # _latest[k]: the largest timestamp among the first k + 1 entries (non-decreasing,
        # so first_index_after is a binary search even if the clock stepped back).
        self._latest: list[int] = []
        for e in entries:
            self._append(e)
        self._history: History | None = None

    def _append(self, entry: HistoryEntry) -> None:
        self._entries.append(entry)
        self._heads.append(chain_step(self._heads[-1], entry))
        self._latest.append(
            max(self._latest[-1], entry.timestamp) if self._latest else entry.timestamp
        )

    def append(self, entry: HistoryEntry) -> NodeHistory:
        """A new log with ``entry`` appended (the receiver is unchanged; its velocity
        index, if built, is extended rather than rebuilt)."""
        out = NodeHistory.__new__(NodeHistory)
        out._entries, out._heads, out._latest = (
            self._entries.copy(),
            self._heads.copy(),
            self._latest.copy(),
        )
        out._append(entry)
        out._history = None if self._history is None else self._history.extended([entry])
        return out

    @property
    def count(self) -> int:
        return len(self._entries)

    @property
    def head(self) -> bytes:
        return self._heads[-1]

    def head_at(self, count: int) -> bytes:
        return self._heads[count]

    @property
    def entries(self) -> tuple[HistoryEntry, ...]:
        return tuple(self._entries)

    def suffix_from(self, start: int) -> tuple[HistoryEntry, ...]:
        return tuple(self._entries[start:])

    def between(self, first: int, last: int) -> tuple[HistoryEntry, ...]:
        """Entries ``first + 1 .. last`` (counts, as in :attr:`count`)."""
        return tuple(self._entries[first:last])

    def first_index_after(self, after: int) -> int:
        """The smallest ``k`` such that every entry from ``k`` on has ``timestamp > after``
        as far as the log order goes: the start of the suffix a report must include so
        that it contains every entry newer than ``after``."""
        # The first entry newer than ``after`` is where the running maximum first
        # exceeds it.
        return bisect_right(self._latest, after)

    def as_history(self) -> History:
        if self._history is None:
            self._history = History(self._entries)
        return self._history
