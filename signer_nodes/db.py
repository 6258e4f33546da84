"""The database plumbing every process shares: engines for SQLite (WAL, full
sync, foreign keys) or PostgreSQL, short explicit transactions, and the schema
of each database *role* kept by Alembic migrations (``docs/migrations.md``).

There are two roles: the coordinator's database and each signer node's database.
A store names its role; opening it brings the database to the role's head
revision (once per process and URL) instead of ``create_all``, so a database
made by an older release is upgraded in place and one made by a newer release
is refused (``SCHEMA_TOO_NEW``) rather than written with a schema it does not
have.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Role(enum.StrEnum):
    """A database role: which tables a database holds and which Alembic
    environment (``custody.migrations.<role>``) migrates it."""

    COORDINATOR = "coordinator"
    NODE = "node"

    @property
    def package(self) -> str:
        """The package holding the role's ``env.py`` and ``versions/``."""
        return f"custody.migrations.{self.value}"


RoleName = Role | Literal["coordinator", "node"]


class SchemaError(Exception):
    """The database's schema cannot be brought to what this software needs.

    ``code`` is stable: ``SCHEMA_TOO_NEW`` (written by a newer release),
    ``SCHEMA_UNVERSIONED`` (tables without a revision that differ from the
    models), ``SCHEMA_FOREIGN_KEYS`` (a migration left dangling references)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def make_engine(url: str, *, sqlite_timeout: float | None = None) -> Engine:
    """An engine with the pragmas every SQLite connection needs; ``sqlite_timeout``
    (seconds) is how long a connection waits for another one's lock."""
    connect_args: dict[str, float] = {}
    sqlite = make_url(url).get_backend_name() == "sqlite"
    if sqlite_timeout is not None and sqlite:
        connect_args["timeout"] = sqlite_timeout
    # A server connection can drop (PostgreSQL restarts): ping it before use. A SQLite
    # connection is a file handle in this process; pinging it costs a query per
    # transaction and finds nothing.
    engine = create_engine(url, pool_pre_ping=not sqlite, connect_args=connect_args)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


def upgrade(url: str, role: RoleName, revision: str = "head") -> tuple[str, ...]:
    """Migrate the database at ``url`` to ``revision`` of ``role`` (always runs; see
    :func:`custody.migrations.runner.upgrade`). Returns the revisions reached."""
    from custody.migrations import runner  # the migrations import this module

    return runner.upgrade(url, _role(role), revision)


def ensure_schema(url: str, role: RoleName) -> None:
    """:func:`upgrade` to head, once per process for each ``(role, url)``."""
    from custody.migrations import runner

    runner.ensure_schema(url, _role(role))


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a database role (coordinator or node; docs/migrations.md)"
        ) from None


class TransactionalStore:
    """A store over one database of ``role``; every method runs in its own
    transaction. The schema is migrated to head before the store is usable."""

    def __init__(self, url: str, role: RoleName) -> None:
        ensure_schema(url, role)
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def joined(self, session: Session | None) -> Iterator[Session]:
        """The caller's session if given (its transaction, possibly another store's on
        the same database), else a new transaction."""
        if session is not None:
            yield session
        else:
            with self.transaction() as s:
                yield s
