"""Shared pieces for the PoR service tests: software custody keys behind ``sign_challenge``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from custody.por.snapshot import Challenge, CustodyKey
from proofs.build import CustodySigner, ServiceSigner, software_signer

CUTOFF = "2024-06-30T00:00:00Z"
SCHEMES = {"k-ecdsa": "ecdsa-secp256k1", "k-bip340": "schnorr-bip340", "k-ed25519": "eddsa-ed25519"}


class SoftwareKeys:
    """``sign_challenge`` over single-key software signers: the same signatures as the cluster's."""

    def __init__(self) -> None:
        self.signers: dict[str, CustodySigner] = {
            key_id: software_signer(key_id, scheme, hashlib.sha256(key_id.encode()).digest(), {})
            for key_id, scheme in SCHEMES.items()
        }
        self.calls: list[str] = []

    def __call__(self, key_id: str, challenge: Challenge) -> tuple[str, bytes, bytes]:
        self.calls.append(key_id)
        s = self.signers[key_id]
        return s.scheme, s.public_key, s.sign(challenge.digest)


def custody_keys() -> list[CustodyKey]:
    return [
        CustodyKey(key_id="k-ecdsa", balances={"BTC": 10**9}, address="bc1qexample"),
        CustodyKey(key_id="k-bip340", balances={"BTC": 5, "ETH": 10**12 + 1}),  # wei
        CustodyKey(key_id="k-ed25519", balances={"USDC": 10**12}),
    ]


def rows(n: int, tenants: tuple[str, ...] = ("acme", "globex")) -> list[tuple[str, str, int]]:
    """Ledger rows in minor units; ETH (wei) is ``7i`` gwei and ``i`` wei, so ``7i + 1``
    gwei once rounded up (the default ETH unit is gwei)."""
    out = []
    for i in range(n):
        cid = f"{tenants[i % len(tenants)]}/cust-{i:04d}"
        eth = 7 * i * 10**9 + i
        out += [(cid, "BTC", 1000 * i + 1), (cid, "ETH", eth), (cid, "USDC", (i * 7919) % 1000)]
    return out


SERVICE = ServiceSigner.from_seed(bytes(range(32)))


def _postgres_url(admin: str) -> str:
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    name = f"custody_por_{os.urandom(4).hex()}"
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{admin.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: SQLite always, PostgreSQL when ``CUSTODY_TEST_POSTGRES`` is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'coordinator.db'}"
        return
    admin = os.environ.get("CUSTODY_TEST_POSTGRES")
    if not admin:
        pytest.skip("CUSTODY_TEST_POSTGRES not set (scripts/test-postgres sets it)")
    yield _postgres_url(admin)
