"""The coordinator's account of what was signed, kept in memory per tenant.

Every signature request reads its tenant's velocity window twice in the coordinator:
governance pre-evaluates it (:meth:`RequestApprovals.register`) and the nodes receive the
coordinator's account with it (``coordinator_view``, :mod:`policy.exchange` step 2).
Reading the window from the database each time costs O(window) rows per request. The
coordinator process is the only writer of ``governance_signed_entries``, so the window is
read once per tenant and then kept current from the writes themselves: an entry joins
the memory when the transaction that stored it commits (a session ``after_commit`` hook),
never before, so a rolled-back signature is never counted.

The account is advisory (the nodes decide on their own logs and the signing set's
reports), but it must not miss committed signatures: it only grows between reloads,
and a read older than what is held reloads from the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.orm import Session

from policy.history import History, HistoryEntry

# Entries older than every window are dropped once the held floor lags this far behind,
# keeping PRUNE_MARGIN seconds more than asked: readers ask for slightly different
# lookbacks (the coordinator's view reaches a minute further back than governance's
# pre-evaluation), and a read older than the floor reloads from the database.
PRUNE_SECONDS = 600
PRUNE_MARGIN = 300

_PENDING = "custody.signed_history.pending"


@dataclass(slots=True)
class _Tenant:
    floor: int  # holds every committed entry with timestamp > floor
    history: History


class SignedHistory:
    """Per-tenant committed signatures (thread-safe). ``load(tenant, after)`` reads the
    entries with ``timestamp > after`` from the database."""

    def __init__(self, load: Callable[[str, int], Sequence[HistoryEntry]]) -> None:
        self._load = load
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()

    def history(self, tenant: str, after: int) -> History:
        """A history holding every committed signature of ``tenant`` newer than ``after``
        (and possibly older ones, which no window ending now can count)."""
        with self._lock:
            held = self._tenants.get(tenant)
            if held is None or held.floor > after:
                held = _Tenant(after, History(self._load(tenant, after)))
                self._tenants[tenant] = held
            elif after - held.floor > PRUNE_SECONDS:
                floor = after - PRUNE_MARGIN
                held.history = History(e for e in held.history if e.timestamp > floor)
                held.floor = floor
            return held.history

    def entries(self, tenant: str, after: int) -> tuple[HistoryEntry, ...]:
        """The committed signatures of ``tenant`` with ``timestamp > after``."""
        return tuple(e for e in self.history(tenant, after) if e.timestamp > after)

    def stored(self, session: Session, entry: HistoryEntry) -> None:
        """``entry`` was written in ``session``: it joins the account when that
        transaction commits, and never if it rolls back."""
        pending = session.info.get(_PENDING)
        if pending is None:
            pending = session.info[_PENDING] = []
            event.listen(session, "after_commit", self._committed)
            event.listen(session, "after_rollback", self._dropped)
        pending.append(entry)

    def _committed(self, session: Session) -> None:
        if session.in_nested_transaction():  # a savepoint released: not committed yet
            return
        entries = session.info.pop(_PENDING, [])
        with self._lock:
            for e in entries:
                held = self._tenants.get(e.tenant)
                if held is not None:  # not held: the next read loads it from the database
                    held.history = held.history.extended([e])

    @staticmethod
    def _dropped(session: Session) -> None:
        # A savepoint rolled back leaves the outer transaction (and what it recorded
        # outside the savepoint) to commit or roll back; an entry recorded inside a
        # rolled-back savepoint of a committed transaction is still counted (an
        # over-count: this account is advisory, and no caller records in savepoints).
        if session.in_nested_transaction():
            return
        session.info.pop(_PENDING, None)
