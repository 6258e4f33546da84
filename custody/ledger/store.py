"""The ledger's database: :class:`LedgerStore` over SQLite or PostgreSQL.

Writes are serialised, which is what makes "no overdraft under concurrency" hold
across threads and processes: on PostgreSQL every write transaction first locks the
``ledger_head`` row (``SELECT ... FOR UPDATE``) and then the touched account rows in a
fixed order; on SQLite it starts with ``BEGIN IMMEDIATE``, taking the database's
single write lock before it reads anything (a deferred transaction that reads, then
writes, can neither see a concurrent debit nor upgrade its lock safely). A
withdrawal's balance check and its debit therefore see the same balance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from custody.config import ClusterConfig
from custody.ledger import journal
from custody.ledger.journal import Account, Entry, Posted
from custody.ledger.models import AccountRow, EntryRow, LedgerHeadRow, LegRow
from signer_nodes.db import TransactionalStore

SQLITE_BUSY_TIMEOUT_MS = 30_000


class LedgerStore(TransactionalStore):
    """Double-entry books in one database (``docs/ledger.md``). The tables are the
    coordinator role's: opening the store migrates the database to that role's head
    (``docs/migrations.md``); nothing here creates tables."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "coordinator")
        self._writes = self._sessions
        if self.engine.dialect.name == "sqlite":
            _serialize_sqlite_writes(self.engine)
            self._writes = sessionmaker(
                self.engine.execution_options(ledger_write=True), expire_on_commit=False
            )
        try:
            with self._writes.begin() as s:
                if s.get(LedgerHeadRow, 1) is None:
                    s.add(LedgerHeadRow(id=1, height=0))
        except IntegrityError:  # another process created it first
            pass

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction holding the ledger's write lock from its first statement."""
        with self._writes.begin() as session:
            journal.lock_head(session)
            yield session

    # -- postings ------------------------------------------------------------------

    def post(self, entry: Entry) -> Posted:
        with self.write() as s:
            return journal.post(s, entry)

    def deposit(
        self, entry_id: str, tenant: str, customer_id: str, asset: str, amount: int, wallet_id: str
    ) -> Posted:
        """Funds arrived in ``wallet_id`` for ``customer_id``: debit the wallet, credit
        the customer."""
        return self.post(
            Entry(
                entry_id,
                "deposit",
                (
                    journal.Leg(
                        journal.wallet(tenant, wallet_id, asset),
                        journal.customer(tenant, customer_id, asset),
                        amount,
                    ),
                ),
            )
        )

    def fund(self, entry_id: str, tenant: str, asset: str, amount: int, wallet_id: str) -> Posted:
        """The operator's own funds arrived in ``wallet_id`` (to pay network fees)."""
        return self.post(
            Entry(
                entry_id,
                "fund",
                (
                    journal.Leg(
                        journal.wallet(tenant, wallet_id, asset),
                        journal.equity(tenant, asset),
                        amount,
                    ),
                ),
            )
        )

    # -- reads ---------------------------------------------------------------------

    def height(self) -> int:
        with self.transaction() as s:
            head = s.get(LedgerHeadRow, 1)
            return 0 if head is None else head.height

    def balance(self, account: Account, height: int | None = None) -> int:
        with self.transaction() as s:
            return journal.balance_at(s, account, height)

    def balances(
        self, tenant: str | None = None, height: int | None = None
    ) -> list[tuple[Account, int]]:
        with self.transaction() as s:
            return journal.account_balances(s, tenant=tenant, height=height)

    def liabilities(
        self, height: int | None = None, tenant: str | None = None
    ) -> list[tuple[str, str, int]]:
        """``(customer_id, asset, amount)`` per customer and asset with a non-zero total,
        for Proof of Reserves: available plus pending (reserved funds are still owed
        until the withdrawal settles). Customer ids are namespaced ``tenant/customer``
        (:mod:`custody.por.customers`)."""
        totals: dict[tuple[str, str], int] = {}
        for account, amount in self.balances(tenant, height):
            if account.kind in ("customer", "pending"):
                key = (f"{account.tenant}/{account.owner}", account.asset)
                totals[key] = totals.get(key, 0) + amount
        return [(cid, asset, n) for (cid, asset), n in sorted(totals.items()) if n]

    def journal(
        self, tenant: str | None = None, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Entries above height ``after``, oldest first, with their legs."""
        with self.transaction() as s:
            query = select(EntryRow).where(EntryRow.height > after).order_by(EntryRow.height)
            if tenant is not None:
                query = query.where(EntryRow.tenant == tenant)
            entries = list(s.execute(query.limit(limit)).scalars())
            labels = {
                r.id: Account(r.kind, r.tenant, r.owner, r.asset).label()
                for r in s.execute(select(AccountRow)).scalars()
            }
            out = []
            for e in entries:
                legs = s.execute(
                    select(LegRow).where(LegRow.entry_id == e.entry_id).order_by(LegRow.leg)
                ).scalars()
                out.append(
                    {
                        "entry_id": e.entry_id,
                        "height": e.height,
                        "tenant": e.tenant,
                        "kind": e.kind,
                        "memo": e.memo,
                        "created_at": e.created_at.isoformat(),
                        "legs": [
                            {
                                "debit": labels[leg.debit_account],
                                "credit": labels[leg.credit_account],
                                "asset": leg.asset,
                                "amount": str(leg.amount),
                                "memo": leg.memo,
                            }
                            for leg in legs
                        ],
                    }
                )
            return out


def _serialize_sqlite_writes(engine: Any) -> None:
    """Let SQLAlchemy, not the sqlite3 module, issue ``BEGIN``: ``BEGIN IMMEDIATE`` for
    sessions made from the ``ledger_write`` engine, a plain ``BEGIN`` otherwise (the
    SQLAlchemy documentation's recipe for SQLite transaction control)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        immediate = conn.get_execution_options().get("ledger_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    engine.dispose()  # pooled connections were opened before these hooks


def liabilities_source(config: ClusterConfig) -> Callable[[], list[tuple[str, str, int]]]:
    """For ``custody.por.cli.make_por_app(ledger=liabilities_source)``: the current
    liabilities of the cluster's ledger (in the coordinator's database)."""

    def rows() -> list[tuple[str, str, int]]:
        store = LedgerStore(config.coordinator_database_url())
        try:
            return store.liabilities()
        finally:
            store.engine.dispose()

    return rows
