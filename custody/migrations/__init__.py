"""Alembic migrations of the two database roles (``docs/migrations.md``).

``coordinator/`` and ``node/`` are one Alembic environment each, whose target
metadata is every table of that role (:mod:`custody.migrations.models`).
:mod:`custody.migrations.runner` applies them under a lock; every store does so
when it opens its database (:class:`signer_nodes.db.TransactionalStore`), and
``python -m custody.migrations upgrade --data-dir D`` does so explicitly.
"""
