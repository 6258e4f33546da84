"""Double-entry ledger: customers, pending withdrawals, custody wallets, fees, equity.

Integer minor units up to 2^256 - 1; entries made of debit/credit legs (balanced by
construction, and by the schema); idempotent entry ids; balances at any journal
height; no overdraft under concurrent writers. ``docs/ledger.md``.
"""

from custody.ledger.errors import LedgerCode, LedgerError
from custody.ledger.journal import (
    Account,
    Entry,
    Leg,
    Posted,
    customer,
    equity,
    fees,
    pending,
    wallet,
)
from custody.ledger.store import LedgerStore, liabilities_source

__all__ = [
    "Account",
    "Entry",
    "LedgerCode",
    "LedgerError",
    "LedgerStore",
    "Leg",
    "Posted",
    "customer",
    "equity",
    "fees",
    "liabilities_source",
    "pending",
    "wallet",
]
