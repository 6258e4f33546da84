"""Writing and checking revisions (for developers; ``docs/migrations.md``).

Both work on a scratch SQLite database brought to head, so they compare the
models with what the revisions create, not with some deployment's database:
:func:`check` lists the differences (none is the invariant the tests keep),
:func:`new_revision` writes them as the role's next revision.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext

from custody.migrations import runner
from signer_nodes.db import Role, make_engine

REVISION_PREFIX = {Role.COORDINATOR: "c", Role.NODE: "n"}


@contextmanager
def scratch_at_head(role: Role) -> Iterator[str]:
    """The URL of a temporary SQLite database migrated to the role's head."""
    with tempfile.TemporaryDirectory(prefix=f"custody-{role}-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.db'}"
        runner.upgrade(url, role)
        yield url


def check(role: Role) -> list[Any]:
    """What autogenerate would put in a new revision (empty: head matches the models)."""
    with scratch_at_head(role) as url:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                return runner.differences(conn, role)
        finally:
            engine.dispose()


def next_revision_id(role: Role) -> str:
    """``c0001``, ``c0002``, ... (``n`` for nodes): ordered, and valid module names."""
    count = sum(1 for _ in runner.script(role).walk_revisions())
    return f"{REVISION_PREFIX[role]}{count + 1:04d}"


def new_revision(role: Role, message: str) -> Path | None:
    """Autogenerate the next revision of ``role``; ``None`` if nothing changed."""

    def skip_empty(_context: MigrationContext, _revision: Any, directives: list[Any]) -> None:
        script = directives[0]
        assert isinstance(script, MigrationScript)
        if all(ops.is_empty() for ops in script.upgrade_ops_list):
            directives[:] = []

    with scratch_at_head(role) as url, runner.locked(url) as conn:
        written = command.revision(
            runner.config(role, conn),
            message,
            autogenerate=True,
            rev_id=next_revision_id(role),
            process_revision_directives=skip_empty,
        )
    if written is None or isinstance(written, list):
        return None
    path = Path(written.path)
    _tidy(path)
    return path


def _tidy(path: Path) -> None:
    """Format the generated file like the rest of the code, when ruff is installed."""
    if importlib.util.find_spec("ruff") is None:
        return
    for args in (["check", "--fix", "--quiet"], ["format", "--quiet"]):
        subprocess.run([sys.executable, "-m", "ruff", *args, str(path)], check=False)
