"""signer_nodes.prepared.run gives what SQLAlchemy's own execution gives."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    exc,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from signer_nodes.db import make_engine, utcnow
from signer_nodes.prepared import run

md = MetaData()
items = Table(
    "items",
    md,
    Column("item_id", String(16), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("blob", LargeBinary, nullable=True),
    Column("from", String(8), nullable=True),  # a Python keyword as a column name
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)
ADD = insert(items)
READ = select(items).where(items.c.item_id == bindparam("b_id"))
BUMP = (
    update(items)
    .where(items.c.item_id == bindparam("b_id"), items.c.count < bindparam("b_limit"))
    .values(count=items.c.count + 1, blob=None)
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    md.create_all(engine)
    yield engine
    engine.dispose()


WHEN = dt.datetime(2026, 11, 21, 17, 0, 0, 123456, tzinfo=dt.UTC)
ROW = {"item_id": "a", "count": 1, "blob": b"\x00\x01", "from": "x", "created_at": WHEN}


def test_rows_and_values_match_sqlalchemy(engine: Engine) -> None:
    with engine.begin() as conn:
        run(conn, ADD, ROW)
    with engine.connect() as conn:
        ours = run(conn, READ, {"b_id": "a"}).one()
        theirs = conn.execute(READ, {"b_id": "a"}).one()
        assert tuple(ours) == tuple(theirs)
        assert ours.created_at == theirs.created_at and ours.blob == b"\x00\x01"
        # the text SQLAlchemy stores for a SQLite DateTime, not the driver's own format
        stored = conn.exec_driver_sql("SELECT created_at FROM items").scalar_one()
        assert stored == "2026-11-21 17:00:00.123456"
        assert run(conn, READ, {"b_id": "a"}).mappings().one() == dict(theirs._mapping)
        assert run(conn, READ, {"b_id": "nope"}).one_or_none() is None


def test_updates_report_their_row_count_with_values_bound_in_the_statement(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        run(conn, ADD, ROW)
        assert run(conn, BUMP, {"b_id": "a", "b_limit": 2}).rowcount == 1
        assert run(conn, BUMP, {"b_id": "a", "b_limit": 2}).rowcount == 0
        row = run(conn, READ, {"b_id": "a"}).one()
    assert (row.count, row.blob) == (2, None)


def test_it_runs_in_the_callers_transaction(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        run(conn, ADD, ROW)
        raise RuntimeError("roll back")
    with engine.connect() as conn:
        assert run(conn, READ, {"b_id": "a"}).first() is None


def test_driver_errors_are_sqlalchemys(engine: Engine) -> None:
    with engine.begin() as conn:
        run(conn, ADD, ROW)
    with pytest.raises(exc.IntegrityError), engine.begin() as conn:
        run(conn, ADD, ROW)


def test_a_statement_needing_python_defaults_is_left_to_sqlalchemy(engine: Engine) -> None:
    before = utcnow()
    with engine.begin() as conn:
        run(conn, ADD, {"item_id": "b", "count": 0})  # created_at: the column's default
        row = run(conn, READ, {"b_id": "b"}).one()
    assert row.created_at >= before.replace(tzinfo=None) and row.blob is None


def test_a_missing_required_value_is_refused(engine: Engine) -> None:
    with pytest.raises(exc.StatementError), engine.connect() as conn:
        run(conn, READ, {})


def test_a_value_its_type_cannot_take_is_a_statement_error(engine: Engine) -> None:
    with pytest.raises(exc.StatementError), engine.begin() as conn:
        run(conn, ADD, {**ROW, "created_at": "yesterday"})
    with engine.connect() as conn:
        assert run(conn, READ, {"b_id": "a"}).first() is None
