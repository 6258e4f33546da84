"""What both ``env.py`` files run: Alembic on the connection the runner opened
and locked (``config.attributes["connection"]``), in the runner's transaction,
with the role's metadata as the autogenerate target. Offline mode writes the SQL
for ``config.attributes["dialect"]`` instead (``python -m custody.migrations sql``).

A connection is required online: migrating through a bare URL would bypass the
lock and the version checks of :mod:`custody.migrations.runner`.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from custody.migrations.models import target_metadata
from custody.migrations.render import render_item
from signer_nodes.db import Role


def run(role: Role) -> None:
    config = context.config
    if context.is_offline_mode():
        _configure(role, dialect_name=config.attributes["dialect"], literal_binds=True)
    else:
        connection = config.attributes.get("connection")
        if connection is None:
            raise RuntimeError(
                "custody migrations run through custody.migrations.runner "
                "(python -m custody.migrations), which supplies a locked connection"
            )
        _configure(role, connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def _configure(role: Role, **where: Any) -> None:
    context.configure(
        target_metadata=target_metadata(role),
        render_item=render_item,
        render_as_batch=True,  # SQLite alters a table by copying it (batch mode)
        compare_type=True,
        **where,
    )
