"""No overdraft when threads and processes withdraw from one customer at once
(SQLite: BEGIN IMMEDIATE; PostgreSQL: the head row and account rows locked FOR UPDATE)."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter

from custody.ledger import Entry, LedgerError, LedgerStore, Leg, customer, equity, fees, pending
from custody.payments import PaymentStore
from custody.payments.spec import wallet_id
from tests.ledger import workers
from tests.ledger.conftest import key_of

ETHER = 10**18
MAX_FEE = 21_000 * 30 * 10**9  # default gas * default max fee per gas


def _spawn():
    return multiprocessing.get_context("spawn")


def test_threads_never_overdraw(db_url) -> None:
    store = LedgerStore(db_url)
    store.deposit("dep", "acme", "alice", "BTC", 10, "bitcoin/k/m")
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(3):
            entry = Entry(
                f"t{n}-{i}",
                "reserve",
                (Leg(customer("acme", "alice", "BTC"), pending("acme", "alice", "BTC"), 1),),
            )
            try:
                store.post(entry)
                outcomes.append("ok")
            except LedgerError as exc:
                outcomes.append(exc.code.value)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(outcomes) == {"ok": 10, "INSUFFICIENT_FUNDS": 8}
    assert store.balance(customer("acme", "alice", "BTC")) == 0
    assert store.balance(pending("acme", "alice", "BTC")) == 10
    assert store.height() == 11  # gapless: one deposit and ten reservations


def test_processes_never_overdraw(db_url) -> None:
    store = LedgerStore(db_url)
    store.deposit("dep", "acme", "alice", "BTC", 7, "bitcoin/k/m")
    with _spawn().Pool(3) as pool:
        results = pool.starmap(workers.reserve_many, [(db_url, n, 4) for n in range(3)])
    outcomes = Counter(o for r in results for o in r)
    assert outcomes == {"ok": 7, "INSUFFICIENT_FUNDS": 5}
    assert store.balance(customer("acme", "alice", "BTC")) == 0
    assert store.balance(pending("acme", "alice", "BTC")) == 7


def test_withdrawals_from_processes_never_overdraw(db_url, provider) -> None:
    """Whole payments (reserve, DKLs23 signing, settle) from three processes, each
    charging the customer 1 ETH and the network fee: the customer holds four of them
    and 1 ETH (no fee) more; six are attempted."""
    key = key_of(provider, "ecdsa-secp256k1")
    _, shares = provider.keys[key]
    blobs = {i: s.to_bytes() for i, s in shares.items()}
    store = PaymentStore(db_url)
    w = wallet_id("ethereum", key, "m/0/7")
    store.deposit("dep", "acme", "alice", "ETH", 4 * (ETHER + MAX_FEE) + ETHER, w)
    with _spawn().Pool(3) as pool:
        results = pool.starmap(
            workers.withdraw_many, [(db_url, n, key, blobs, 2, ETHER) for n in range(3)]
        )
    outcomes = [o for r in results for o in r]
    settled = sorted(o for o in outcomes if o.startswith("SETTLED"))
    assert settled == [f"SETTLED:{n}" for n in range(4)]  # four payments, nonces 0..3
    assert Counter(outcomes)["INSUFFICIENT_FUNDS"] == 2
    assert store.balance(customer("acme", "alice", "ETH")) == ETHER
    assert store.balance(pending("acme", "alice", "ETH")) == 0
    assert store.balance(fees("acme", "ETH")) == 0
    assert len(store.outbox()) == 4


def test_operator_fee_funds_are_never_overdrawn_by_processes(db_url, provider) -> None:
    """The operator pays: its fee funds cover three fees and one wei less than a fourth,
    while the customers could pay for six withdrawals."""
    key = key_of(provider, "ecdsa-secp256k1")
    _, shares = provider.keys[key]
    blobs = {i: s.to_bytes() for i, s in shares.items()}
    store = PaymentStore(db_url)
    w = wallet_id("ethereum", key, "m/0/7")
    for who in ("alice", "bob"):
        store.deposit(f"dep-{who}", "acme", who, "ETH", 3 * ETHER, w)
    store.fund("fund", "acme", "ETH", 4 * MAX_FEE - 1, w)
    with _spawn().Pool(3) as pool:
        results = pool.starmap(
            workers.withdraw_many,
            [(db_url, n, key, blobs, 2, ETHER, "operator", ("alice", "bob")) for n in range(3)],
        )
    outcomes = [o for r in results for o in r]
    assert sorted(o for o in outcomes if o.startswith("SETTLED")) == [
        f"SETTLED:{n}" for n in range(3)
    ]
    assert Counter(outcomes)["INSUFFICIENT_FUNDS"] == 3
    assert store.balance(fees("acme", "ETH")) == 3 * MAX_FEE
    assert store.balance(equity("acme", "ETH")) - store.balance(fees("acme", "ETH")) == MAX_FEE - 1
    paid = store.balance(customer("acme", "alice", "ETH")) + store.balance(
        customer("acme", "bob", "ETH")
    )
    assert paid == 6 * ETHER - 3 * ETHER  # customers were charged the amounts only
