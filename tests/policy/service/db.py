"""Database URLs for the governance store tests: a SQLite file, or a fresh PostgreSQL
database when ``CUSTODY_TEST_POSTGRES`` holds an admin URL (as in ``tests/service``)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def database_url(tmp_path: Path, name: str = "db") -> str:
    admin = os.environ.get("CUSTODY_TEST_POSTGRES")
    if not admin:
        return f"sqlite:///{tmp_path / (name + '.sqlite')}"
    import sqlalchemy

    db = f"custody_gov_{name}_{secrets.token_hex(4)}".replace("-", "_")
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))
    engine.dispose()
    return f"{admin.rsplit('/', 1)[0]}/{db}"
