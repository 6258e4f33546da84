"""Tables of the ledger: accounts, journal entries, and their legs (debit/credit pairs).

**Balance by construction.** A leg is one row naming a debit account, a credit account
and one amount: it moves the same amount out of one account and into another, so an
entry made of legs balances per asset whatever the code above does. The database holds
this shape, not a convention: ``amount`` is checked positive, the two accounts differ,
and both foreign keys are composite ``(account_id, asset)`` so a leg cannot join
accounts of different assets. An unbalanced entry cannot be stored.

**Heights.** Every entry gets the next journal height from the single
``ledger_head`` row, which each write transaction locks first; heights are
therefore gapless and in commit order, and "the books at height h" is a stable
snapshot. Each leg stores the natural-sign balance both its accounts had after it,
so a balance at any height is one indexed read.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from custody.ledger.amounts import Amount, amount_checks
from signer_nodes.db import utcnow

ACCOUNT_KINDS = ("customer", "pending", "wallet", "fees", "equity")


class LedgerBase(DeclarativeBase):
    pass


class LedgerHeadRow(LedgerBase):
    """One row (id 1): the current journal height. Locked by every write."""

    __tablename__ = "ledger_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    height: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (CheckConstraint("id = 1", name="ck_ledger_head_single"),)


class AccountRow(LedgerBase):
    __tablename__ = "ledger_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(256))
    asset: Mapped[str] = mapped_column(String(128))
    normal: Mapped[str] = mapped_column(String(6))
    balance: Mapped[int] = mapped_column(Amount(), default=0)
    """Natural-sign balance (debits minus credits for a debit-normal account, the
    reverse for a credit-normal one); never negative."""
    height: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (
        UniqueConstraint("kind", "tenant", "owner", "asset", name="uq_ledger_account"),
        UniqueConstraint("id", "asset", name="uq_ledger_account_asset"),
        CheckConstraint(
            "kind IN ('customer', 'pending', 'wallet', 'fees', 'equity')",
            name="ck_ledger_account_kind",
        ),
        CheckConstraint(
            "(normal = 'debit' AND kind IN ('wallet', 'fees'))"
            " OR (normal = 'credit' AND kind IN ('customer', 'pending', 'equity'))",
            name="ck_ledger_account_normal",
        ),
        *amount_checks("balance", positive=False, name="ledger_account_balance"),
    )


class EntryRow(LedgerBase):
    __tablename__ = "ledger_entries"
    entry_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    height: Mapped[int] = mapped_column(BigInteger, unique=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    memo: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (CheckConstraint("height > 0", name="ck_ledger_entry_height"),)


class LegRow(LedgerBase):
    __tablename__ = "ledger_legs"
    entry_id: Mapped[str] = mapped_column(
        String(160), ForeignKey("ledger_entries.entry_id"), primary_key=True
    )
    leg: Mapped[int] = mapped_column(Integer, primary_key=True)
    height: Mapped[int] = mapped_column(BigInteger)
    asset: Mapped[str] = mapped_column(String(128))
    debit_account: Mapped[int] = mapped_column(Integer)
    credit_account: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Amount())
    debit_balance: Mapped[int] = mapped_column(Amount())
    """The debit account's natural balance after this leg."""
    credit_balance: Mapped[int] = mapped_column(Amount())
    """The credit account's natural balance after this leg."""
    memo: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (
        ForeignKeyConstraint(
            ["debit_account", "asset"], ["ledger_accounts.id", "ledger_accounts.asset"]
        ),
        ForeignKeyConstraint(
            ["credit_account", "asset"], ["ledger_accounts.id", "ledger_accounts.asset"]
        ),
        CheckConstraint("debit_account <> credit_account", name="ck_ledger_leg_two_accounts"),
        CheckConstraint("leg >= 0", name="ck_ledger_leg_index"),
        *amount_checks("amount", positive=True, name="ledger_leg_amount"),
        *amount_checks("debit_balance", positive=False, name="ledger_leg_debit_balance"),
        *amount_checks("credit_balance", positive=False, name="ledger_leg_credit_balance"),
        Index("ix_ledger_legs_debit", "debit_account", "height", "leg"),
        Index("ix_ledger_legs_credit", "credit_account", "height", "leg"),
    )
