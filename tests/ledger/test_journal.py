"""The journal: balance invariant under random operations, idempotent entry ids,
balances at every height, and the database refusing what the code would never write."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError, StatementError

from custody.ledger import (
    Account,
    Entry,
    LedgerCode,
    LedgerError,
    LedgerStore,
    Leg,
    customer,
    equity,
    fees,
    pending,
    wallet,
)
from custody.ledger.amounts import MAX_AMOUNT

_tenants = itertools.count()


@pytest.fixture
def store(db_url: str):
    s = LedgerStore(db_url)
    yield s
    s.engine.dispose()


def _code(fn) -> LedgerCode:
    with pytest.raises(LedgerError) as info:
        fn()
    return info.value.code


CUSTOMERS = ["alice", "bob"]
ASSETS = ["BTC", "ETH"]
amounts = st.one_of(st.integers(1, 50), st.integers(1, MAX_AMOUNT))
op = st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from(CUSTOMERS), st.sampled_from(ASSETS), amounts),
    st.tuples(st.just("fund"), st.just("alice"), st.sampled_from(ASSETS), amounts),
    st.tuples(st.just("reserve"), st.sampled_from(CUSTOMERS), st.sampled_from(ASSETS), amounts),
    st.tuples(st.just("release"), st.sampled_from(CUSTOMERS), st.sampled_from(ASSETS), amounts),
    st.tuples(st.just("settle"), st.sampled_from(CUSTOMERS), st.sampled_from(ASSETS), amounts),
    st.tuples(st.just("move"), st.sampled_from(CUSTOMERS), st.sampled_from(ASSETS), amounts),
    st.tuples(st.just("replay"), st.just(""), st.just(""), st.integers(0, 10**6)),
)


def _entry(tenant: str, n: int, kind: str, who: str, asset: str, amount: int) -> Entry:
    w = wallet(tenant, "bitcoin/key/m", asset)
    c, p = customer(tenant, who, asset), pending(tenant, who, asset)
    legs = {
        "deposit": (Leg(w, c, amount),),
        "fund": (Leg(w, equity(tenant, asset), amount),),
        "reserve": (Leg(c, p, amount),),
        "release": (Leg(p, c, amount),),
        # pending -> wallet outflow, plus a network fee paid by the operator
        "settle": (Leg(p, w, amount), Leg(fees(tenant, asset), w, max(1, amount // 10))),
        "move": (Leg(c, customer(tenant, "bob" if who == "alice" else "alice", asset), amount),),
    }[kind]
    return Entry(f"{tenant}-e{n}", kind, legs)


def _apply(model: dict[Account, int], entry: Entry) -> dict[Account, int] | None:
    """The reference semantics: natural balances, none below zero."""
    new = dict(model)
    for leg in entry.legs:
        for account, side in ((leg.debit, "debit"), (leg.credit, "credit")):
            delta = leg.amount if account.normal == side else -leg.amount
            new[account] = new.get(account, 0) + delta
            if new[account] < 0 or new[account] > MAX_AMOUNT:
                return None
    return new


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(op, min_size=1, max_size=14))
def test_journal_balances_under_random_operations(store, ops) -> None:
    tenant = f"t{next(_tenants)}"
    model: dict[Account, int] = {}
    history: dict[int, dict[Account, int]] = {0: {}}
    posted: list[Entry] = []
    for n, (kind, who, asset, amount) in enumerate(ops):
        if kind == "replay":
            if not posted:
                continue
            old = posted[amount % len(posted)]
            assert store.post(old).replayed  # same id, same content: a no-op
            changed = Entry(old.entry_id, old.kind, old.legs, memo="edited")
            assert _code(lambda e=changed: store.post(e)) is LedgerCode.ENTRY_ID_REUSED
            continue
        entry = _entry(tenant, n, kind, who, asset, amount)
        expected = _apply(model, entry)
        if expected is None:
            code = _code(lambda e=entry: store.post(e))
            assert code in (LedgerCode.INSUFFICIENT_FUNDS, LedgerCode.AMOUNT_INVALID)
            continue
        result = store.post(entry)
        assert not result.replayed
        model = expected
        history[result.height] = dict(model)
        posted.append(entry)
    balances = dict(store.balances(tenant))
    assert {a: v for a, v in balances.items() if v} == {a: v for a, v in model.items() if v}
    # the accounting equation per asset: debit-normal balances = credit-normal balances
    for asset in ASSETS:
        debit = sum(v for a, v in balances.items() if a.asset == asset and a.normal == "debit")
        credit = sum(v for a, v in balances.items() if a.asset == asset and a.normal == "credit")
        assert debit == credit
    # every past height reads back as it was
    for height, snapshot in history.items():
        for account in balances:
            assert store.balance(account, height) == snapshot.get(account, 0)
    # liabilities for Proof of Reserves: available + pending per customer and asset
    expected_liabilities = {}
    for account, value in model.items():
        if account.kind in ("customer", "pending") and value:
            key = (f"{tenant}/{account.owner}", account.asset)
            expected_liabilities[key] = expected_liabilities.get(key, 0) + value
    assert {
        (cid, asset): n for cid, asset, n in store.liabilities(tenant=tenant)
    } == expected_liabilities


def test_heights_are_gapless_and_the_journal_reads_back(store) -> None:
    store.deposit("d1", "acme", "alice", "ETH", 2**255, "ethereum/k/m")
    store.fund("f1", "acme", "ETH", 5, "ethereum/k/m")
    with pytest.raises(LedgerError):
        store.post(
            Entry(
                "r1",
                "reserve",
                (
                    Leg(
                        customer("acme", "alice", "ETH"),
                        pending("acme", "alice", "ETH"),
                        2**256 - 1,
                    ),
                ),
            )
        )
    assert store.height() == 2
    entries = store.journal("acme")
    assert [e["height"] for e in entries] == [1, 2]
    assert entries[0]["legs"] == [
        {
            "debit": "wallet:acme:ethereum/k/m:ETH",
            "credit": "customer:acme:alice:ETH",
            "asset": "ETH",
            "amount": str(2**255),
            "memo": "",
        }
    ]
    assert store.balance(wallet("acme", "ethereum/k/m", "ETH"), 1) == 2**255
    assert store.balance(wallet("acme", "ethereum/k/m", "ETH")) == 2**255 + 5
    assert store.liabilities() == [("acme/alice", "ETH", 2**255)]


def test_bad_entries_are_refused_by_the_code(store) -> None:
    c = customer("acme", "alice", "BTC")
    assert _code(lambda: Leg(c, c, 1)) is LedgerCode.ENTRY_INVALID
    assert _code(lambda: Leg(c, customer("acme", "alice", "ETH"), 1)) is LedgerCode.ENTRY_INVALID
    assert _code(lambda: Leg(c, customer("globex", "alice", "BTC"), 1)) is LedgerCode.ENTRY_INVALID
    assert _code(lambda: Leg(c, pending("acme", "alice", "BTC"), 0)) is LedgerCode.AMOUNT_INVALID
    assert _code(lambda: Leg(c, pending("acme", "alice", "BTC"), 2**256)) is (
        LedgerCode.AMOUNT_INVALID
    )
    assert _code(lambda: Entry("x", "reserve", ())) is LedgerCode.ENTRY_INVALID
    assert _code(
        lambda: Entry("bad id!", "reserve", (Leg(c, pending("acme", "alice", "BTC"), 1),))
    ) is (LedgerCode.ENTRY_INVALID)
    assert _code(lambda: Account("treasury", "acme", "", "BTC")) is LedgerCode.ACCOUNT_INVALID
    assert _code(lambda: Account("fees", "acme", "alice", "BTC")) is LedgerCode.ACCOUNT_INVALID


def test_the_database_refuses_unbalanced_or_negative_rows(store) -> None:
    """Writes that bypass the code still cannot break the books."""
    store.deposit("d1", "acme", "alice", "BTC", 10, "bitcoin/k/m")
    store.deposit("d2", "acme", "alice", "ETH", 10, "ethereum/k/m")
    with store.transaction() as s:
        ids = dict(
            s.execute(sqlalchemy.text("SELECT kind || ':' || asset, id FROM ledger_accounts")).all()
        )
    wide = "0" * 77
    bad_rows = [
        # a leg from an account to itself (no counter-posting)
        (ids["customer:BTC"], ids["customer:BTC"], "BTC", wide + "1"),
        # a leg joining a BTC account and an ETH account
        (ids["customer:BTC"], ids["customer:ETH"], "BTC", wide + "1"),
        # a zero amount
        (ids["customer:BTC"], ids["wallet:BTC"], "BTC", "0" * 78),
    ]
    pg = store.engine.dialect.name == "postgresql"

    class Rollback(Exception):
        pass

    def insert(debit: int, credit: int, asset: str, amount: str) -> None:
        value = str(int(amount)) if pg else amount
        zero = "0" if pg else repr("0" * 78)
        with store.transaction() as s:
            s.execute(
                sqlalchemy.text(
                    "INSERT INTO ledger_entries (entry_id, height, tenant, kind, memo,"
                    " content_hash, created_at)"
                    " VALUES ('raw', 99, 'acme', 'raw', '', '', CURRENT_TIMESTAMP)"
                )
            )
            s.execute(
                sqlalchemy.text(
                    "INSERT INTO ledger_legs (entry_id, leg, height, asset, debit_account,"
                    " credit_account, amount, debit_balance, credit_balance, memo)"
                    f" VALUES ('raw', 0, 99, :asset, :d, :c,"
                    f" {'CAST(:a AS NUMERIC)' if pg else ':a'}, {zero}, {zero}, '')"
                ),
                {"asset": asset, "d": debit, "c": credit, "a": value},
            )
            raise Rollback  # the statements went through; undo them

    # control: the same statements with a well-formed leg are accepted
    with pytest.raises(Rollback):
        insert(ids["customer:BTC"], ids["wallet:BTC"], "BTC", wide + "1")
    for row in bad_rows:
        with pytest.raises((IntegrityError, StatementError)):
            insert(*row)
    negative = "-1" if pg else "'-" + "0" * 76 + "1'"
    with pytest.raises((IntegrityError, StatementError)), store.transaction() as s:
        s.execute(
            sqlalchemy.text(f"UPDATE ledger_accounts SET balance = {negative} WHERE id = :i"),
            {"i": ids["customer:BTC"]},
        )
    assert store.balance(customer("acme", "alice", "BTC")) == 10
