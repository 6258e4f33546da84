"""Fixed Core statements run straight on the DBAPI cursor of the caller's connection.

The signing path runs a few dozen short statements per request in every process.
For each, SQLAlchemy's execution (execution context, parameter and result
metadata, events) costs three times what SQLite itself spends: a primary-key
SELECT takes 17-19 µs through a session or connection and 4 µs in the driver
(``python -m bench.sql_statements``; 6 µs through :func:`run`). These statements
never change, so :func:`run` compiles each once per dialect and set of parameter
names (as SQLAlchemy's own compiled cache does) and then only converts values:

- bind values go through the dialect's bind processors, result values through its
  result processors, exactly the conversions SQLAlchemy applies (a SQLite
  ``DateTime`` is stored and read as SQLAlchemy's text format, for instance);
- a statement whose execution needs more than that (Python-side column defaults
  to compute, ``RETURNING`` of generated keys, several parameter sets) is passed
  to SQLAlchemy unchanged;
- it runs on the connection's own DBAPI connection, so inside the caller's
  transaction, which SQLAlchemy still begins, commits or rolls back;
- a driver error is raised as SQLAlchemy raises it (``IntegrityError``,
  ``OperationalError``...), and a lost server connection is invalidated, so
  callers catch the same exceptions either way;
- unlike ``Session.execute`` it does not autoflush: callers pass it a session with
  no pending ORM changes to the tables it reads.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Delete, Insert, Select, Update

Statement = Select[Any] | Insert | Update | Delete
_Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    # positional dialects (SQLite's qmark): the parameter names in order; else None
    order: tuple[str, ...] | None
    names: tuple[str, ...]  # every parameter name
    defaults: Mapping[str, Any]  # values bound in the statement itself
    bind: Mapping[str, _Processor]
    row: type | None  # None: the statement returns no rows
    result: tuple[_Processor | None, ...]
    statement: Statement  # keeps the statement (and so its id) alive


class Rows:
    """What :func:`run` returns: the rows (named tuples) and the row count."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any | None:
        if len(self._rows) > 1:
            raise sa_exc.MultipleResultsFound("more than one row where at most one was expected")
        return self.first()

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise (sa_exc.NoResultFound if not self._rows else sa_exc.MultipleResultsFound)(
                f"{len(self._rows)} rows where exactly one was expected"
            )
        return self._rows[0]

    def scalar_one_or_none(self) -> Any | None:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def mappings(self) -> Rows:
        """The rows as dicts, column name to value."""
        return Rows([_mapping(row) for row in self._rows], self.rowcount)


def _mapping(row: Any) -> dict[str, Any]:
    if hasattr(row, "_mapping"):  # a SQLAlchemy Row (a statement SQLAlchemy ran)
        return dict(row._mapping)
    return dict(zip(row.KEYS, row, strict=True))


_plans: dict[tuple[int, type, str, frozenset[str]], _Plan | None] = {}
_plans_lock = threading.Lock()


def run(
    on: Connection | Session, statement: Statement, params: Mapping[str, Any] | None = None
) -> Rows:
    """Execute ``statement`` with ``params`` in ``on``'s transaction; see the module."""
    conn = on.connection() if isinstance(on, Session) else on
    params = params or {}
    dialect = conn.dialect
    # drivers of one database differ in parameter style and casts: the key names both
    key = (id(statement), type(dialect), dialect.paramstyle, frozenset(params))
    plan = _plans.get(key, _MISSING)
    if plan is _MISSING:
        plan = _compile(statement, dialect, params)
        with _plans_lock:
            _plans[key] = plan
    if plan is None:  # needs SQLAlchemy's execution context
        result = conn.execute(statement, dict(params))
        rows = list(result) if result.returns_rows else []
        return Rows(rows, result.rowcount if not result.returns_rows else len(rows))
    assert isinstance(plan, _Plan)
    values = {n: params[n] if n in params else plan.defaults[n] for n in plan.names}
    try:
        for name, process in plan.bind.items():
            values[name] = process(values[name])
    except Exception as exc:  # a value its column's type cannot take, as SQLAlchemy reports it
        raise sa_exc.StatementError(str(exc), plan.sql, values, exc) from exc
    bound: Sequence[Any] | Mapping[str, Any] = (
        values if plan.order is None else tuple(values[n] for n in plan.order)
    )
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(plan.sql, bound)
        if plan.row is None:
            return Rows([], cursor.rowcount)
        fetched = cursor.fetchall()
    except dialect.loaded_dbapi.Error as exc:
        invalidated = dialect.is_disconnect(exc, dbapi_conn, cursor)
        if invalidated:
            conn.invalidate(exc)
        raise sa_exc.DBAPIError.instance(
            plan.sql,
            bound,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=invalidated,
            dialect=dialect,
        ) from exc
    finally:
        cursor.close()
    make, processors = plan.row, plan.result
    if any(processors):
        rows = [
            make(*(v if p is None else p(v) for p, v in zip(processors, raw, strict=True)))
            for raw in fetched
        ]
    else:
        rows = [make(*raw) for raw in fetched]
    return Rows(rows, len(rows))


_MISSING: Any = object()


def _compile(statement: Statement, dialect: Dialect, params: Mapping[str, Any]) -> _Plan | None:
    compiled: Any = statement.compile(dialect=dialect, column_keys=sorted(params))
    if (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.effective_returning
        or compiled.escaped_bind_names
        or compiled.literal_execute_params
        or compiled.post_compile_params
    ):
        return None
    defaults: dict[str, Any] = {}
    bind: dict[str, _Processor] = {}
    for name, bp in compiled.binds.items():
        if name not in params:
            if bp.required:
                return None  # SQLAlchemy raises its own error for the missing value
            defaults[name] = bp.effective_value
        process = bp.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            bind[name] = process
    row: type | None = None
    result: tuple[_Processor | None, ...] = ()
    if isinstance(statement, Select):
        columns = list(statement.selected_columns)
        names = [c.key or f"c{i}" for i, c in enumerate(columns)]
        row = namedtuple("Row", names, rename=True)  # type: ignore[misc,no-redef]
        row.KEYS = tuple(names)  # type: ignore[union-attr]  # the names, also those renamed
        result = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        )
    order = tuple(compiled.positiontup) if dialect.positional else None
    return _Plan(
        compiled.string, order, tuple(compiled.binds), defaults, bind, row, result, statement
    )
