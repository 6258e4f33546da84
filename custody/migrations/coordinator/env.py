"""Alembic environment of the coordinator database; see :mod:`custody.migrations.environment`."""

from custody.migrations.environment import run
from signer_nodes.db import Role

run(Role.COORDINATOR)
