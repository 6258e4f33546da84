"""Apply the migrations of a database role, safely from any number of processes.

Every run happens in one transaction that first takes the database's migration
lock: ``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN EXCLUSIVE`` on SQLite
(both DDL-transactional, so a failed migration leaves nothing behind). Inside
it, the recorded revision is checked before Alembic runs:

- a revision this release does not know is refused: ``SCHEMA_TOO_NEW`` (or
  ``SCHEMA_WRONG_ROLE`` if it belongs to the other role's history);
- a database with tables but no revision (made by ``create_all`` before
  migrations existed) is adopted when every table it has matches the models:
  missing tables are created and the head is recorded; otherwise it is refused
  with ``SCHEMA_UNVERSIONED``.

On SQLite, foreign keys are off during the run and, when the revision changed,
checked at its end (``PRAGMA foreign_key_check``), as section 7 of
https://www.sqlite.org/lang_altertable.html prescribes for the table rebuilds of
batch migrations.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, cast

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url

from custody.migrations.models import target_metadata
from signer_nodes.db import Role, SchemaError, make_engine

# How long a process waits for another one's migration (SQLite busy timeout).
LOCK_TIMEOUT_SECONDS = 120.0
# The advisory lock id of migrations: any 64-bit value no other code uses.
ADVISORY_LOCK_ID = int.from_bytes(
    hashlib.sha256(b"custody.migrations").digest()[:8], "big", signed=True
)

_done: set[tuple[Role, str]] = set()
_done_lock = threading.Lock()


def config(role: Role, connection: Connection | None = None) -> Config:
    """An Alembic config for ``role`` (no ``alembic.ini``: everything is here)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(role.package)))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.attributes["connection"] = connection
    return cfg


def script(role: Role) -> ScriptDirectory:
    return ScriptDirectory.from_config(config(role))


def head(role: Role) -> str:
    """The role's single head revision (two heads are a merge to do, not a state)."""
    heads = script(role).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"{role} migrations have {len(heads)} heads: {heads}")
    return heads[0]


def ensure_schema(url: str, role: Role) -> None:
    """:func:`upgrade` to head once per process for ``(role, url)``; thread-safe."""
    with _done_lock:
        if (role, url) in _done:
            return
        upgrade(url, role)
        _done.add((role, url))


def upgrade(url: str, role: Role, revision: str = "head") -> tuple[str, ...]:
    """Migrate up to ``revision``; returns the revisions the database is at."""
    return _migrate(url, role, lambda cfg: command.upgrade(cfg, revision))


def downgrade(url: str, role: Role, revision: str) -> tuple[str, ...]:
    """Migrate down to ``revision`` (``"base"``: no tables). Loses data."""
    return _migrate(url, role, lambda cfg: command.downgrade(cfg, revision))


def _migrate(url: str, role: Role, action: Callable[[Config], None]) -> tuple[str, ...]:
    with locked(url) as conn:
        before = current(conn)
        _check_revisions(conn, role)
        action(config(role, conn))
        after = current(conn)
        if after != before and conn.dialect.name == "sqlite":
            _check_foreign_keys(conn)
        return after


def revisions(url: str) -> tuple[str, ...]:
    """The revisions recorded in the database at ``url`` (empty: none)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return current(conn)
    finally:
        engine.dispose()


def current(conn: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(conn).get_current_heads())


@contextmanager
def locked(url: str) -> Iterator[Connection]:
    """A connection in a transaction holding the database's migration lock;
    committed when the body returns, rolled back when it raises."""
    engine = _engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            yield conn
    finally:
        engine.dispose()


def _check_foreign_keys(conn: Connection) -> None:
    dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if dangling:
        raise SchemaError(
            "SCHEMA_FOREIGN_KEYS",
            f"migrating would leave {len(dangling)} rows with dangling references "
            f"(first in table {dangling[0][0]!r}); nothing was changed",
        )


def _engine(url: str) -> Engine:
    """A private engine for one run: the store engines keep their own pools and events."""
    engine = make_engine(url, sqlite_timeout=LOCK_TIMEOUT_SECONDS)
    if engine.dialect.name == "sqlite":
        # pysqlite starts transactions itself and not before DDL; take over so the
        # whole run is one exclusive transaction (SQLAlchemy's documented recipe).
        @event.listens_for(engine, "connect")
        def _manual(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA foreign_keys=OFF")

        @event.listens_for(engine, "begin")
        def _exclusive(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")

    return engine


def _check_revisions(conn: Connection, role: Role) -> None:
    recorded = current(conn)
    if not recorded:
        _adopt_unversioned(conn, role)
        return
    known = {s.revision for s in script(role).walk_revisions()}
    unknown = [r for r in recorded if r not in known]
    if not unknown:
        return
    for other in Role:
        if other is not role and unknown[0] in {s.revision for s in script(other).walk_revisions()}:
            raise SchemaError(
                "SCHEMA_WRONG_ROLE",
                f"this is a {other} database (revision {unknown[0]}), not a {role} database",
            )
    raise SchemaError(
        "SCHEMA_TOO_NEW",
        f"the {role} database is at revision {', '.join(unknown)}, which this release "
        f"does not know (its newest is {head(role)}): it was migrated by a newer "
        "release; run that release or restore a backup taken before the upgrade",
    )


def _adopt_unversioned(conn: Connection, role: Role) -> None:
    names = set(inspect(conn).get_table_names()) - {"alembic_version"}
    if not names:
        return  # empty: Alembic creates everything
    found = differences(conn, role)
    missing = {d[1].name for d in found if isinstance(d, tuple) and d[0] == "add_table"}
    changed = [d for d in found if not _part_of_missing_table(d, missing)]
    if changed:
        raise SchemaError(
            "SCHEMA_UNVERSIONED",
            f"the {role} database has tables but no migration revision, and they "
            f"differ from this release's models ({_summary(changed)}); "
            "see docs/migrations.md",
        )
    for metadata in target_metadata(role):
        metadata.create_all(conn)
    command.stamp(config(role, conn), "head")


def _part_of_missing_table(change: Any, missing: set[str]) -> bool:
    if not isinstance(change, tuple):
        return False  # column changes come as lists
    if change[0] == "add_table":
        return True
    return bool(change[0] == "add_index" and change[1].table.name in missing)


def differences(conn: Connection, role: Role) -> list[Any]:
    """What autogenerate would change to make the database match the models
    (empty: it matches)."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    # Alembic's autogenerate takes a sequence of metadata (as target_metadata), though
    # compare_metadata is annotated with one.
    return list(compare_metadata(context, cast(MetaData, target_metadata(role))))


def describe(change: Any) -> str:
    """One autogenerate difference in a line: ``add_table keys``, ``add_column t c``..."""
    first = change[0] if isinstance(change, list) else change  # column changes: a list
    return " ".join(str(getattr(x, "name", x)) for x in first[:4] if x is not None)


def _summary(changes: list[Any]) -> str:
    shown = "; ".join(describe(c) for c in changes[:5])
    more = len(changes) - 5
    return shown + (f"; and {more} more" if more > 0 else "")


def display(url: str) -> str:
    """``url`` without its password, for messages and the CLI."""
    return make_url(url).render_as_string(hide_password=True)
