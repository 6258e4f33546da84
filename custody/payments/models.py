"""Tables of the payments state machine (next to the ledger's, in the same database).

``payments`` is the withdrawal (RESERVED -> SETTLED | RELEASED | CANCELLED), with who
pays its network fee (``fee_payer``) and, once the broadcaster reports it, the fee the
chain actually took (``fee_paid``); ``payment_inputs`` one
signing request each (one per Bitcoin input, one for Ethereum), ``wallet_utxos`` the
coins of Bitcoin wallets, ``wallet_nonces`` the next Ethereum nonce per sending
address, and ``payment_outbox`` the signed transactions waiting for a broadcaster
(the boundary: no chain is reachable from the service).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from custody.ledger.amounts import Amount, amount_checks
from signer_nodes.db import utcnow

STATES = ("RESERVED", "SETTLED", "RELEASED", "CANCELLED")
FEE_PAYERS = ("customer", "operator")


class PaymentsBase(DeclarativeBase):
    pass


class PaymentRow(PaymentsBase):
    __tablename__ = "payments"
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    params_hash: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(256))
    chain: Mapped[str] = mapped_column(String(64))
    asset: Mapped[str] = mapped_column(String(128))
    destination: Mapped[str] = mapped_column(String(256))
    amount: Mapped[int] = mapped_column(Amount())
    fee: Mapped[int] = mapped_column(Amount())
    fee_asset: Mapped[str] = mapped_column(String(128))
    fee_payer: Mapped[str] = mapped_column(String(16), server_default="operator")
    """``customer``: the customer is charged ``fee`` on top of ``amount``; ``operator``:
    the operator's funds pay it. Rows from before the choice existed were operator-paid."""
    fee_paid: Mapped[int | None] = mapped_column(Amount(), nullable=True)
    """The fee the chain took (``confirm``); at most ``fee``, the one booked at settlement."""
    wallet_id: Mapped[str] = mapped_column(String(256), index=True)
    from_address: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="RESERVED")
    created_unix: Mapped[int] = mapped_column(BigInteger)
    raw_transaction: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    txid: Mapped[str | None] = mapped_column(String(66), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    __table_args__ = (
        CheckConstraint(
            "state IN ('RESERVED', 'SETTLED', 'RELEASED', 'CANCELLED')", name="ck_payments_state"
        ),
        CheckConstraint("fee_payer IN ('customer', 'operator')", name="ck_payments_fee_payer"),
        CheckConstraint(
            "fee_paid IS NULL OR (state = 'SETTLED' AND fee_paid <= fee)",
            name="ck_payments_fee_paid",
        ),
        CheckConstraint(
            "(state = 'SETTLED') = (raw_transaction IS NOT NULL)", name="ck_payments_signed"
        ),
        *amount_checks("amount", positive=True, name="payments_amount"),
        *amount_checks("fee", positive=False, name="payments_fee"),
        *amount_checks("fee_paid", positive=False, name="payments_fee_paid"),
        Index("ix_payments_wallet_state", "wallet_id", "state"),
    )


class PaymentInputRow(PaymentsBase):
    __tablename__ = "payment_inputs"
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    input_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    recovery_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    __table_args__ = (
        ForeignKeyConstraint(["tenant", "payment_id"], ["payments.tenant", "payments.payment_id"]),
    )


class UtxoRow(PaymentsBase):
    __tablename__ = "wallet_utxos"
    txid: Mapped[str] = mapped_column(String(64), primary_key=True)
    vout: Mapped[int] = mapped_column(Integer, primary_key=True)
    chain: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(128))
    wallet_id: Mapped[str] = mapped_column(String(256))
    amount: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="unspent")
    payment_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    __table_args__ = (
        CheckConstraint("state IN ('unspent', 'reserved', 'spent')", name="ck_utxo_state"),
        CheckConstraint("amount > 0 AND vout >= 0", name="ck_utxo_amount"),
        CheckConstraint("(state = 'unspent') = (payment_id IS NULL)", name="ck_utxo_owner"),
        Index("ix_wallet_utxos_wallet", "tenant", "wallet_id", "state"),
    )


class NonceRow(PaymentsBase):
    __tablename__ = "wallet_nonces"
    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int] = mapped_column(BigInteger, default=0)


class OutboxRow(PaymentsBase):
    __tablename__ = "payment_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    payment_id: Mapped[str] = mapped_column(String(100))
    chain: Mapped[str] = mapped_column(String(64))
    txid: Mapped[str] = mapped_column(String(66))
    raw_transaction: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default="PENDING")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (
        UniqueConstraint("tenant", "payment_id", name="uq_outbox_payment"),
        CheckConstraint("state IN ('PENDING', 'SENT')", name="ck_outbox_state"),
    )
