"""Databases for the ledger and payments tests: a fresh SQLite file, and a fresh
PostgreSQL database when ``CUSTODY_TEST_POSTGRES`` holds an admin URL
(``postgresql+psycopg://user@host/postgres``, as ``scripts/test-postgres`` sets);
without it the PostgreSQL cases are skipped."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ledger.threshold import ThresholdProvider

BACKENDS = ["sqlite", "postgresql"]


def _postgres_database() -> tuple[str, Callable[[], None]]:
    admin = os.environ.get("CUSTODY_TEST_POSTGRES")
    if not admin:
        pytest.skip("CUSTODY_TEST_POSTGRES is not set")
    import sqlalchemy

    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    name = f"ledger_{secrets.token_hex(6)}"
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return f"{admin.rsplit('/', 1)[0]}/{name}", drop


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url, drop = _postgres_database()
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def provider() -> ThresholdProvider:
    """One ECDSA and one BIP340 threshold key (2-of-3), shared by the tests."""
    p = ThresholdProvider()
    p.create_key("ecdsa-secp256k1")
    p.create_key("schnorr-bip340")
    return p


def key_of(provider: ThresholdProvider, scheme: str) -> str:
    return next(k for k, (s, _) in provider.keys.items() if s == scheme)
