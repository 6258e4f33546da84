"""The books at a cut-off (custody/por/ledger.py) on SQLite and PostgreSQL.

Entries get their creation time from the ledger; the tests then set it to chosen
instants (a clock that dips included) so the cut-off height can be checked exactly:
the longest prefix of the journal created at or before the cut-off.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from custody.ledger import LedgerStore
from custody.ledger.models import EntryRow
from custody.por.errors import SnapshotCode, SnapshotError
from custody.por.ledger import books_at, cutoff_height
from custody.por.snapshot import load_liabilities
from proofs.errors import PorInputError, ReasonCode

T0 = dt.datetime(2024, 6, 30, 10, 0, 0, tzinfo=dt.UTC)
GWEI = 10**9


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _stamp(seconds: float) -> str:
    return _at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def ledger(db_url: str) -> LedgerStore:
    """Four deposits at 10:00:00.5, 10:00:01 sharp, 10:00:03, and 10:00:02 (a clock dip)."""
    store = LedgerStore(db_url)
    store.deposit("d1", "acme", "alice", "ETH", 18 * 10**18 + 1, "w-eth")
    store.deposit("d2", "acme", "bob", "ETH", 1, "w-eth")
    store.deposit("d3", "acme", "alice", "ETH", 10**18, "w-eth")  # made after the cut-off
    store.deposit("d4", "globex", "carol", "BTC", 5, "w-btc")
    with store.transaction() as s:
        for entry_id, seconds in (("d1", 0.5), ("d2", 1), ("d3", 3), ("d4", 2)):
            s.execute(
                update(EntryRow)
                .where(EntryRow.entry_id == entry_id)
                .values(created_at=_at(seconds))
            )
    return store


@pytest.mark.parametrize(
    ("seconds", "height"),
    [
        (0, 0),  # before everything: the empty books
        (1, 2),  # an entry made exactly at the cut-off counts
        (2, 2),  # d4 is stamped 10:00:02 but comes after d3 (10:00:03): not a prefix
        (3, 4),
    ],
)
def test_cutoff_height_is_the_longest_prefix_made_by_then(
    ledger: LedgerStore, seconds: int, height: int
) -> None:
    assert cutoff_height(ledger, _stamp(seconds)) == height


def test_books_at_the_cutoff(ledger: LedgerStore) -> None:
    cut = books_at(ledger, _stamp(1))
    assert cut.height == 2
    assert cut.rows == (("acme/alice", "ETH", 18 * 10**18 + 1), ("acme/bob", "ETH", 1))
    table = load_liabilities(cut.rows, ("acme", "globex"))
    assert table.customer_ids == ("acme/alice", "acme/bob")
    assert table.balances.tolist() == [[18 * GWEI + 1], [1]]  # wei rounded up to gwei
    later = books_at(ledger, _stamp(3))
    assert dict(((c, a), n) for c, a, n in later.rows) == {
        ("acme/alice", "ETH"): 19 * 10**18 + 1,
        ("acme/bob", "ETH"): 1,
        ("globex/carol", "BTC"): 5,
    }


def test_empty_books_at_the_cutoff_publish_nothing(ledger: LedgerStore) -> None:
    cut = books_at(ledger, _stamp(0))
    assert cut.rows == ()
    with pytest.raises(PorInputError) as info:
        load_liabilities(cut.rows, ("acme", "globex"))
    assert info.value.code is ReasonCode.EMPTY


def test_a_cutoff_in_the_future_is_refused(ledger: LedgerStore) -> None:
    future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    with pytest.raises(SnapshotError) as info:
        cutoff_height(ledger, future.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert info.value.code is SnapshotCode.CUTOFF_IN_FUTURE
