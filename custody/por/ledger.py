"""Customer liabilities from the cluster's ledger, as the books stood at the cut-off.

A snapshot states what customers were owed at ``cutoff`` (``docs/por-format.md``
section 5): the balances after exactly the journal entries made at or before that
instant, none made after it. The ledger (``custody/ledger``, in the coordinator's
database) numbers its entries with gapless heights in commit order and stamps each
with ``created_at`` while it holds the ledger's write lock, so:

* the **cut-off height** is the greatest ``h`` such that every entry at a height
  ``<= h`` was created at or before the cut-off: one less than the first entry
  created after it, or the head if there is none. It is a prefix of the journal,
  i.e. a state the books really were in, even if clocks made ``created_at`` dip;
* it is found while holding the ledger's write lock (:meth:`LedgerStore.write`), so
  no entry can still be in flight with a creation time at or before the cut-off:
  every entry committed later is stamped later than the moment the lock was taken,
  which is after the cut-off. A cut-off in the future is refused
  (``POR_CUTOFF_IN_FUTURE``): the books at that instant are not known yet;
* the balances at that height come from :meth:`LedgerStore.liabilities`: per
  customer and asset, available plus pending (funds reserved for a withdrawal are
  owed until it settles), in the asset's minor unit, customer ids ``tenant/customer``.

Assumption: the clocks of the processes that post to the ledger and of the one
taking the snapshot agree (NTP); their skew bounds the precision of the cut-off.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select

from custody.config import ClusterConfig
from custody.ledger import LedgerStore
from custody.ledger.journal import lock_head
from custody.ledger.models import EntryRow
from custody.por.errors import SnapshotCode, SnapshotError
from signer_nodes.db import utcnow


@dataclass(frozen=True, slots=True)
class LedgerCut:
    """The books at a cut-off: the journal height and ``(customer_id, asset, amount)`` rows."""

    cutoff: str
    height: int
    rows: tuple[tuple[str, str, int], ...]


def parse_cutoff(cutoff: str) -> dt.datetime:
    """``YYYY-MM-DDTHH:MM:SSZ`` as an aware UTC instant."""
    return dt.datetime.strptime(cutoff, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def cutoff_height(store: LedgerStore, cutoff: str) -> int:
    """The journal height of the books at ``cutoff`` (see the module docstring)."""
    at = parse_cutoff(cutoff)
    with store.write() as s:  # the ledger's write lock: no entry is in flight
        if at > utcnow():
            raise SnapshotError(
                SnapshotCode.CUTOFF_IN_FUTURE,
                f"cut-off {cutoff} is in the future; the books at that time are not known yet",
            )
        head = lock_head(s).height
        first_after = s.execute(
            select(func.min(EntryRow.height)).where(EntryRow.created_at > at)
        ).scalar_one_or_none()
    return head if first_after is None else int(first_after) - 1


def books_at(store: LedgerStore, cutoff: str) -> LedgerCut:
    """Customer liabilities of ``store`` at ``cutoff``."""
    height = cutoff_height(store, cutoff)
    return LedgerCut(cutoff, height, tuple(store.liabilities(height=height)))


def ledger_at_cutoff(config: ClusterConfig, cutoff: str) -> LedgerCut:
    """The cluster's books (in the coordinator database) at ``cutoff``."""
    store = LedgerStore(config.coordinator_database_url())
    try:
        return books_at(store, cutoff)
    finally:
        store.engine.dispose()
