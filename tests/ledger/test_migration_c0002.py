"""Revision c0002 on data (SQLite and PostgreSQL): payments written before it keep their
meaning (operator-paid), its checks refuse what the models never write, and going back
to c0001 turns CANCELLED into RELEASED."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from custody.migrations import runner
from custody.payments import PaymentStore
from signer_nodes.db import Role

ROW = {
    "tenant": "acme",
    "payment_id": "old-1",
    "params_hash": "0" * 64,
    "customer_id": "alice",
    "key_id": "k",
    "path": "m",
    "chain": "ethereum",
    "asset": "ETH",
    "destination": "0x52908400098527886E0F7030069857D2E4169EE7",
    "fee_asset": "ETH",
    "wallet_id": "ethereum/k/m",
    "from_address": "0x0000000000000000000000000000000000000001",
    "nonce": 0,
    "state": "RESERVED",
    "created_unix": 1,
    "created_at": "2026-01-01 00:00:00+00:00",
    "updated_at": "2026-01-01 00:00:00+00:00",
}


def _amount(url: str, n: int) -> str | int:
    return f"{n:078d}" if url.startswith("sqlite") else n


def _insert(url: str, **over: object) -> None:
    row = ROW | {"amount": _amount(url, 10), "fee": _amount(url, 5)} | over
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO payments ({', '.join(row)}) VALUES "
                    f"({', '.join(':' + k for k in row)})"
                ),
                row,
            )
    finally:
        engine.dispose()


def _execute(url: str, sql: str, **params: object) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


def test_older_payments_are_operator_paid_and_checks_hold(db_url: str) -> None:
    runner.upgrade(db_url, Role.COORDINATOR, "c0001")
    _insert(db_url)
    assert runner.upgrade(db_url, Role.COORDINATOR, "c0002") == ("c0002",)
    store = PaymentStore(db_url)
    try:
        old = store.get("acme", "old-1")
        assert (old.fee_payer, old.fee_paid, old.amount, old.fee) == ("operator", None, 10, 5)
    finally:
        store.engine.dispose()
    for sql, params in (
        ("UPDATE payments SET fee_payer = 'nobody'", {}),
        ("UPDATE payments SET fee_paid = :n", {"n": _amount(db_url, 1)}),  # not settled
        ("UPDATE payments SET state = 'LOST'", {}),
    ):
        with pytest.raises(IntegrityError):
            _execute(db_url, sql, **params)
    settled = {"state": "SETTLED", "raw_transaction": b"\x02", "txid": "0x01"}
    _insert(db_url, payment_id="old-2", **settled)
    with pytest.raises(IntegrityError):  # more than the fee booked
        _execute(
            db_url,
            "UPDATE payments SET fee_paid = :n WHERE payment_id = 'old-2'",
            n=_amount(db_url, 6),
        )
    _execute(
        db_url,
        "UPDATE payments SET fee_paid = :n WHERE payment_id = 'old-2'",
        n=_amount(db_url, 5),
    )
    _insert(db_url, payment_id="new-1", state="CANCELLED", fee_payer="customer")


def test_downgrade_turns_cancelled_into_released(db_url: str) -> None:
    runner.upgrade(db_url, Role.COORDINATOR)
    _insert(db_url, state="CANCELLED", fee_payer="customer", error_code="PAYMENT_CANCELLED")
    assert runner.downgrade(db_url, Role.COORDINATOR, "c0001") == ("c0001",)
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            state, code = conn.execute(text("SELECT state, error_code FROM payments")).one()
    finally:
        engine.dispose()
    assert (state, code) == ("RELEASED", "PAYMENT_CANCELLED")
    with pytest.raises(IntegrityError):  # c0001's check is back
        _execute(db_url, "UPDATE payments SET state = 'CANCELLED'")
