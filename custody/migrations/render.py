"""How autogenerate writes what its defaults get wrong for these models, so that
a revision is plain SQLAlchemy and means the same DDL on both databases:

- :class:`custody.ledger.amounts.Amount` becomes ``String(78)`` with a
  ``NUMERIC(78, 0)`` variant on PostgreSQL (what its ``load_dialect_impl``
  chooses), instead of an import of the application's type;
- a ``CheckConstraint`` limited to one dialect with ``ddl_if`` keeps that limit
  (Alembic drops it, which would create the SQLite text checks on PostgreSQL).

Any other ``TypeDecorator`` is refused: teach this module its DDL first.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic.autogenerate.api import AutogenContext
from sqlalchemy import CheckConstraint, MetaData
from sqlalchemy.types import TypeDecorator

from custody.ledger.amounts import WIDTH, Amount


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    if type_ == "type" and isinstance(obj, Amount):
        return f"sa.String({WIDTH}).with_variant(sa.Numeric({WIDTH}, 0), 'postgresql')"
    if type_ == "type" and isinstance(obj, TypeDecorator):
        raise ValueError(
            f"autogenerate: {type(obj).__qualname__} is a TypeDecorator; add its DDL "
            "to custody/migrations/render.py"
        )
    if type_ == "check" and isinstance(obj, CheckConstraint):
        original = _model_checks(autogen_context).get(str(obj.name))
        if original is not None and original._ddl_if is not None:
            return _check_for_dialect(original)
    return False


def _model_checks(autogen_context: AutogenContext) -> dict[str, CheckConstraint]:
    """The models' named check constraints: autogenerate renders copies, and copying
    a constraint loses its ``ddl_if``."""
    found = autogen_context.metadata
    metadatas = [] if found is None else [found] if isinstance(found, MetaData) else found
    return {
        str(c.name): c
        for metadata in metadatas
        for table in metadata.tables.values()
        for c in table.constraints
        if isinstance(c, CheckConstraint) and c.name is not None
    }


def _check_for_dialect(constraint: CheckConstraint) -> str:
    condition = constraint._ddl_if
    assert condition is not None
    if condition.callable_ is not None or not isinstance(condition.dialect, str):
        raise ValueError(
            f"autogenerate: check constraint {constraint.name!r} has a ddl_if that "
            "is not a single dialect name"
        )
    return (
        f"sa.CheckConstraint({str(constraint.sqltext)!r}, name={constraint.name!r})"
        f".ddl_if(dialect={condition.dialect!r})"
    )
