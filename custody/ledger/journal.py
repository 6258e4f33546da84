"""Double-entry postings on a SQLAlchemy session: account references, entries, and
:func:`post`, which callers run inside a write transaction (:meth:`LedgerStore.write`).

Conventions (``docs/ledger.md``):

* amounts are integers in minor units of one asset (satoshi, wei...), ``[1, 2^256)``;
* an entry is a tuple of legs; a leg debits one account and credits another with one
  amount, both accounts of the same tenant and asset;
* every account has a normal side: wallets and fees are debit-normal (assets and
  expenses), customers, pending withdrawals and equity credit-normal (liabilities and
  the operator's funds). An account's *natural balance* (debits minus credits for a
  debit-normal account, the reverse otherwise) may never become negative: that single
  rule is "no overdraft" for customers and "no spending coins the wallet does not
  have" for wallets;
* an entry id is an idempotency key: posting the same id with the same content returns
  the original posting; with different content it is refused (``ENTRY_ID_REUSED``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from custody.ledger.amounts import MAX_AMOUNT
from custody.ledger.errors import LedgerCode, LedgerError
from custody.ledger.models import ACCOUNT_KINDS, AccountRow, EntryRow, LedgerHeadRow, LegRow
from policy.request import valid_identifier

DEBIT_NORMAL = frozenset({"wallet", "fees"})
OWNED = frozenset({"customer", "pending", "wallet"})


@dataclass(frozen=True, slots=True, order=True)
class Account:
    """A reference to one account; the row is created when first posted to."""

    kind: str
    tenant: str
    owner: str
    asset: str

    def __post_init__(self) -> None:
        if self.kind not in ACCOUNT_KINDS:
            raise LedgerError(LedgerCode.ACCOUNT_INVALID, f"unknown account kind {self.kind!r}")
        for name in ("tenant", "asset"):
            if not valid_identifier(getattr(self, name)):
                raise LedgerError(LedgerCode.ACCOUNT_INVALID, f"{name}: not a valid identifier")
        if self.kind in OWNED:
            if not valid_identifier(self.owner) and not (
                self.kind == "wallet" and _wallet_id_ok(self.owner)
            ):
                raise LedgerError(LedgerCode.ACCOUNT_INVALID, "owner: not a valid identifier")
        elif self.owner:
            raise LedgerError(LedgerCode.ACCOUNT_INVALID, f"{self.kind} accounts have no owner")

    @property
    def normal(self) -> str:
        return "debit" if self.kind in DEBIT_NORMAL else "credit"

    def label(self) -> str:
        owner = f":{self.owner}" if self.owner else ""
        return f"{self.kind}:{self.tenant}{owner}:{self.asset}"


def _wallet_id_ok(owner: str) -> bool:
    return 0 < len(owner) <= 256 and all(valid_identifier(p) for p in owner.split("/"))


def customer(tenant: str, customer_id: str, asset: str) -> Account:
    return Account("customer", tenant, customer_id, asset)


def pending(tenant: str, customer_id: str, asset: str) -> Account:
    """Funds of ``customer_id`` reserved for withdrawals being signed or broadcast."""
    return Account("pending", tenant, customer_id, asset)


def wallet(tenant: str, wallet_id: str, asset: str) -> Account:
    """What the custody wallet ``wallet_id`` (a key and derivation path) holds on chain."""
    return Account("wallet", tenant, wallet_id, asset)


def fees(tenant: str, asset: str) -> Account:
    """Network fees the operator paid (an expense)."""
    return Account("fees", tenant, "", asset)


def equity(tenant: str, asset: str) -> Account:
    """The operator's own funds in the wallets (to pay network fees from)."""
    return Account("equity", tenant, "", asset)


@dataclass(frozen=True, slots=True)
class Leg:
    debit: Account
    credit: Account
    amount: int
    memo: str = ""

    def __post_init__(self) -> None:
        if self.debit.asset != self.credit.asset or self.debit.tenant != self.credit.tenant:
            raise LedgerError(
                LedgerCode.ENTRY_INVALID, "a leg joins accounts of one tenant and asset"
            )
        if self.debit == self.credit:
            raise LedgerError(LedgerCode.ENTRY_INVALID, "a leg needs two different accounts")
        if (
            isinstance(self.amount, bool)
            or not isinstance(self.amount, int)
            or not 0 < self.amount <= MAX_AMOUNT
        ):
            raise LedgerError(LedgerCode.AMOUNT_INVALID, "amounts are integers in [1, 2^256)")
        if len(self.memo) > 512:
            raise LedgerError(LedgerCode.ENTRY_INVALID, "memo: at most 512 characters")

    @property
    def asset(self) -> str:
        return self.debit.asset


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str
    kind: str
    legs: tuple[Leg, ...]
    memo: str = ""

    def __post_init__(self) -> None:
        if len(self.entry_id) > 160 or not all(
            valid_identifier(p) for p in self.entry_id.split("/")
        ):
            raise LedgerError(LedgerCode.ENTRY_INVALID, "entry_id: not a valid identifier")
        if not self.kind.isidentifier() or len(self.kind) > 32:
            raise LedgerError(LedgerCode.ENTRY_INVALID, "kind: a short identifier")
        if not self.legs:
            raise LedgerError(LedgerCode.ENTRY_INVALID, "an entry has at least one leg")
        if len({leg.debit.tenant for leg in self.legs}) != 1:
            raise LedgerError(LedgerCode.ENTRY_INVALID, "an entry belongs to one tenant")
        if len(self.memo) > 1024:
            raise LedgerError(LedgerCode.ENTRY_INVALID, "memo: at most 1024 characters")

    @property
    def tenant(self) -> str:
        return self.legs[0].debit.tenant

    def content_hash(self) -> str:
        """SHA-256 over canonical JSON of everything but the id: what "same entry" means."""
        body = {
            "kind": self.kind,
            "memo": self.memo,
            "legs": [
                [leg.debit.label(), leg.credit.label(), str(leg.amount), leg.memo]
                for leg in self.legs
            ],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Posted:
    entry_id: str
    height: int
    replayed: bool = False
    balances: dict[Account, int] = field(default_factory=dict, compare=False)
    """Natural balances of the touched accounts after the entry (empty on replay)."""


def lock_head(session: Session) -> LedgerHeadRow:
    """Lock the journal head for this transaction (PostgreSQL ``SELECT ... FOR
    UPDATE``; SQLite already holds its write lock from ``BEGIN IMMEDIATE``)."""
    head = session.execute(
        select(LedgerHeadRow).where(LedgerHeadRow.id == 1).with_for_update()
    ).scalar_one()
    return head


def _account_row(session: Session, account: Account, create: bool) -> AccountRow | None:
    query = select(AccountRow).where(
        AccountRow.kind == account.kind,
        AccountRow.tenant == account.tenant,
        AccountRow.owner == account.owner,
        AccountRow.asset == account.asset,
    )
    row = session.execute(query.with_for_update() if create else query).scalar_one_or_none()
    if row is None and create:
        row = AccountRow(
            kind=account.kind,
            tenant=account.tenant,
            owner=account.owner,
            asset=account.asset,
            normal=account.normal,
            balance=0,
            height=0,
        )
        session.add(row)
        session.flush()
    return row


def post(session: Session, entry: Entry) -> Posted:
    """Append ``entry`` in the caller's transaction, or return the original posting of
    its id. Raises :class:`LedgerError` (and writes nothing) on reuse or overdraft."""
    head = lock_head(session)
    existing = session.get(EntryRow, entry.entry_id)
    if existing is not None:
        if existing.content_hash != entry.content_hash():
            raise LedgerError(
                LedgerCode.ENTRY_ID_REUSED, f"entry {entry.entry_id} was posted with other content"
            )
        return Posted(entry.entry_id, existing.height, replayed=True)
    accounts = sorted({a for leg in entry.legs for a in (leg.debit, leg.credit)})
    rows: dict[Account, AccountRow] = {}
    for account in accounts:  # a fixed order: concurrent writers lock rows alike
        row = _account_row(session, account, create=True)
        assert row is not None
        rows[account] = row
    balance = {a: rows[a].balance for a in accounts}
    height = head.height + 1
    legs: list[LegRow] = []
    for i, leg in enumerate(entry.legs):
        for account, side in ((leg.debit, "debit"), (leg.credit, "credit")):
            delta = leg.amount if account.normal == side else -leg.amount
            new = balance[account] + delta
            if new < 0:
                raise LedgerError(
                    LedgerCode.INSUFFICIENT_FUNDS,
                    f"{account.label()} holds {balance[account]}, entry needs {-delta}",
                )
            if new > MAX_AMOUNT:
                raise LedgerError(LedgerCode.AMOUNT_INVALID, f"{account.label()} would overflow")
            balance[account] = new
        legs.append(
            LegRow(
                entry_id=entry.entry_id,
                leg=i,
                height=height,
                asset=leg.asset,
                debit_account=rows[leg.debit].id,
                credit_account=rows[leg.credit].id,
                amount=leg.amount,
                debit_balance=balance[leg.debit],
                credit_balance=balance[leg.credit],
                memo=leg.memo,
            )
        )
    _check_balanced(entry, {a: rows[a].balance for a in accounts}, balance)
    session.add(
        EntryRow(
            entry_id=entry.entry_id,
            height=height,
            tenant=entry.tenant,
            kind=entry.kind,
            memo=entry.memo,
            content_hash=entry.content_hash(),
        )
    )
    session.flush()
    session.add_all(legs)
    for account, row in rows.items():
        row.balance = balance[account]
        row.height = height
    head.height = height
    session.flush()
    return Posted(entry.entry_id, height, balances=dict(balance))


def _check_balanced(entry: Entry, before: dict[Account, int], after: dict[Account, int]) -> None:
    """The code-level invariant, on the balances actually computed: per asset, the
    debits applied (debit-normal increases, credit-normal decreases) equal the credits."""
    net: dict[str, int] = defaultdict(int)
    for account, old in before.items():
        change = after[account] - old
        net[account.asset] += change if account.normal == "debit" else -change
    if any(net.values()):  # pragma: no cover - would be a bug in post()
        raise LedgerError(LedgerCode.ENTRY_INVALID, f"entry {entry.entry_id} does not balance")


def balance_at(session: Session, account: Account, height: int | None = None) -> int:
    """Natural balance of ``account`` after the entry at ``height`` (now if ``None``)."""
    row = _account_row(session, account, create=False)
    if row is None:
        return 0
    if height is None or height >= row.height:
        return row.balance
    latest = session.execute(
        select(
            LegRow.height,
            LegRow.leg,
            LegRow.debit_account,
            LegRow.debit_balance,
            LegRow.credit_balance,
        )
        .where(
            or_(LegRow.debit_account == row.id, LegRow.credit_account == row.id),
            LegRow.height <= height,
        )
        .order_by(LegRow.height.desc(), LegRow.leg.desc())
        .limit(1)
    ).first()
    if latest is None:
        return 0
    return int(latest.debit_balance if latest.debit_account == row.id else latest.credit_balance)


def account_balances(
    session: Session, *, tenant: str | None = None, height: int | None = None
) -> list[tuple[Account, int]]:
    """Every account (of ``tenant``) with its natural balance at ``height``."""
    query = select(AccountRow).order_by(AccountRow.id)
    if tenant is not None:
        query = query.where(AccountRow.tenant == tenant)
    out = []
    for row in session.execute(query).scalars():
        account = Account(row.kind, row.tenant, row.owner, row.asset)
        out.append((account, balance_at(session, account, height)))
    return out


__all__ = [
    "Account",
    "Entry",
    "Leg",
    "Posted",
    "account_balances",
    "balance_at",
    "customer",
    "equity",
    "fees",
    "lock_head",
    "pending",
    "post",
    "wallet",
]
