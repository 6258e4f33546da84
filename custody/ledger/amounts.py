"""Integer amounts up to 2^256 - 1 (wei included) on PostgreSQL and SQLite.

PostgreSQL stores them as ``NUMERIC(78, 0)`` (exact, 78 decimal digits hold 2^256).
SQLite has no exact wide integer: a ``NUMERIC`` above 2^63 silently becomes a float.
There they are stored as 78-digit zero-padded decimal text, whose lexicographic order
is numeric order, so ``CHECK`` constraints and ``ORDER BY`` stay meaningful. Sums are
never taken in SQL: every posting carries the running balances it produced, so a
balance is read, not added up.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

MAX_AMOUNT = (1 << 256) - 1
WIDTH = 78


class Amount(TypeDecorator[int]):
    impl = String(WIDTH)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(WIDTH, 0, asdecimal=True))
        return dialect.type_descriptor(String(WIDTH))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
            raise ValueError("amount outside [0, 2^256)")
        if dialect.name == "postgresql":
            return Decimal(value)
        return f"{value:0{WIDTH}d}"

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value)


def amount_checks(column: str, *, positive: bool, name: str) -> list[CheckConstraint]:
    """The database's own range checks for ``column``, per dialect."""
    pg_low = f"{column} > 0" if positive else f"{column} >= 0"
    pg = CheckConstraint(f"{pg_low} AND {column} <= {MAX_AMOUNT}", name=f"ck_{name}_pg").ddl_if(
        dialect="postgresql"
    )
    lite_low = f" AND {column} > '{'0' * WIDTH}'" if positive else ""
    lite = CheckConstraint(
        f"length({column}) = {WIDTH} AND {column} NOT GLOB '*[^0-9]*'"
        f" AND {column} <= '{MAX_AMOUNT:0{WIDTH}d}'{lite_low}",
        name=f"ck_{name}_sqlite",
    ).ddl_if(dialect="sqlite")
    return [pg, lite]
