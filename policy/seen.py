"""What a node carries from one history exchange to the next, so that a request costs
work in what is new since the last one and not in the velocity window's size
(docs/policy-format.md section 8, "Each decision builds on the last").

:func:`policy.exchange.reconcile` without a :class:`Seen` checks every report, the whole
coordinator's account and the node's own log from scratch. With one, it keeps:

- ``union``: every history entry the node has verified: its own log, each peer's entries
  from reports it accepted (whatever the signing set they came with), and every entry of
  the coordinator's accounts. Velocity is evaluated over it. It is a superset of the union
  a fresh exchange builds for the current signing set, and a larger history can only
  refuse more: each entry in it was signed by a peer's key (or claimed by the
  coordinator), so counting it is what the section 8 argument already allows;
- ``accounts``: per tenant, the coordinator's account as far as the node holds it, so the
  coordinator sends only entries it appended since (:class:`AccountPart`);
- ``checked``: per (tenant, node), how far into that node's log the tenant's entries are
  known to be in the coordinator's account. The account only grows, so an entry found
  there once is there at every later check: ``HISTORY_HIDDEN`` is checked exactly as a
  fresh exchange checks it, for the entries added since.

Nothing here is trusted input: every entry entered ``union`` through the same checks a
fresh exchange makes. The memory is in RAM; after a restart a node starts empty and the
coordinator sends whole accounts again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from policy.history import History, HistoryEntry

# Entries older than every window are dropped when the union has doubled since its last
# pruning (amortized O(1) per entry); PRUNE_MARGIN seconds more than asked are kept.
PRUNE_FLOOR = 4096
PRUNE_MARGIN = 300


@dataclass(frozen=True, slots=True)
class AccountPart:
    """Where the entries of a coordinator's account sent with a request sit in the
    account of ``epoch`` (one coordinator process): positions ``start .. end`` of the
    tenant's append-only account. ``start == 0``: the whole account in the window (the
    receiver replaces what it holds)."""

    epoch: bytes
    start: int
    end: int

    @property
    def whole(self) -> bool:
        return self.start == 0


@dataclass(frozen=True, slots=True)
class HeldAccount:
    """The part of a tenant's coordinator account a node holds: up to ``end`` of
    ``epoch``; ``claimed``: request id to the entry (the latest-dated copy)."""

    epoch: bytes
    end: int
    claimed: Mapping[str, HistoryEntry]


@dataclass(frozen=True, slots=True)
class Seen:
    """A node's memory between exchanges (module docstring). ``own_count``: how much of
    the node's own log is in ``union``; ``folded``: per peer, up to which count of its
    log; ``prune_at``: the union size at which old entries are dropped next. The positions
    in ``folded`` and ``checked`` skip entries that were older than the lookback then, so
    the memory serves only lookbacks from ``covers_after`` on."""

    union: History
    own_count: int
    folded: Mapping[int, int] = field(default_factory=dict)
    accounts: Mapping[str, HeldAccount] = field(default_factory=dict)
    checked: Mapping[tuple[str, int], int] = field(default_factory=dict)
    prune_at: int = PRUNE_FLOOR
    # Complete for entries newer than this (the lookback it started at, raised by
    # pruning): a longer window or a clock stepped back needs a fresh start.
    covers_after: int = 0

    def covers(self, lookback_after: int) -> bool:
        return lookback_after >= self.covers_after

    def held_account(self, tenant: str) -> HeldAccount | None:
        return self.accounts.get(tenant)

    def pruned(self, after: int) -> Seen:
        """Without entries no window ending now can count (``timestamp <= after`` minus
        a margin), once the union has grown past ``prune_at``."""
        if len(self.union) < self.prune_at:
            return self
        floor = after - PRUNE_MARGIN
        union = History(e for e in self.union if e.timestamp > floor)
        accounts = {
            t: HeldAccount(
                a.epoch, a.end, {r: e for r, e in a.claimed.items() if e.timestamp > floor}
            )
            for t, a in self.accounts.items()
        }
        return Seen(
            union,
            self.own_count,
            self.folded,
            accounts,
            self.checked,
            max(PRUNE_FLOOR, 2 * len(union)),
            max(self.covers_after, floor),
        )


def entries_claimed(
    held: Mapping[str, HistoryEntry], entries: tuple[HistoryEntry, ...]
) -> dict[str, HistoryEntry]:
    """``held`` with ``entries`` added (a copy: a refused exchange leaves ``held`` as it
    was)."""
    claimed = dict(held)
    for e in entries:
        old = claimed.get(e.request_id)
        if old is None or old.timestamp < e.timestamp:
            claimed[e.request_id] = e
    return claimed
