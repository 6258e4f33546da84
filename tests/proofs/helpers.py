"""Shared builders for the Proof-of-Reserves tests: deterministic snapshots and tamper helpers."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from proofs.build import (
    BuiltSnapshot,
    CustodySigner,
    Liabilities,
    ServiceSigner,
    build_snapshot,
    software_signer,
)
from proofs.errors import PorError, ReasonCode
from proofs.snapshot import signing_message

CUTOFF = "2024-06-30T00:00:00Z"
CREATED = "2024-06-30T00:05:00Z"
SERVICE_SEED = bytes(range(32))


def det_bytes(label: str) -> Callable[[int], bytes]:
    """Deterministic byte source (SHA-256 counter mode) standing in for ``os.urandom``."""

    def gen(n: int) -> bytes:
        out = bytearray()
        i = 0
        while len(out) < n:
            out += hashlib.sha256(f"{label}/{i}".encode()).digest()
            i += 1
        return bytes(out[:n])

    return gen


def custody_signers(balances: Mapping[str, Mapping[str, int]] | None = None) -> list[CustodySigner]:
    """One signer per scheme, with keys derived from fixed seeds."""
    bal = balances or {
        "hot-ecdsa": {"BTC": 10**9, "ETH": 10**9},
        "cold-bip340": {"BTC": 10**9, "USDC": 10**12},
        "sol-ed25519": {"ETH": 5, "USDC": 7},
    }
    schemes = {
        "hot-ecdsa": "ecdsa-secp256k1",
        "cold-bip340": "schnorr-bip340",
        "sol-ed25519": "eddsa-ed25519",
    }
    return [
        software_signer(
            key_id,
            schemes[key_id],
            hashlib.sha256(key_id.encode()).digest(),
            bal[key_id],
            address=f"addr-{key_id}",
        )
        for key_id in schemes
        if key_id in bal
    ]


def build(
    rows: Mapping[str, Mapping[str, int]],
    *,
    snapshot_id: str = "por-2024-06-30",
    custody: list[CustodySigner] | None = None,
    salt_label: str = "salts",
) -> BuiltSnapshot:
    return build_snapshot(
        Liabilities.from_mapping(rows),
        snapshot_id=snapshot_id,
        cutoff=CUTOFF,
        created_at=CREATED,
        service=ServiceSigner.from_seed(SERVICE_SEED),
        custody=custody_signers() if custody is None else custody,
        random_bytes=det_bytes(salt_label),
    )


def sample_rows(n: int = 11) -> dict[str, dict[str, int]]:
    return {
        f"cust-{i:03d}": {"BTC": 1000 * i + 1, "ETH": 7 * i, "USDC": (i * 7919) % 1000}
        for i in range(n)
    }


def roundtrip(obj: Any) -> Any:
    """What a verifier sees: the JSON text, parsed again (fresh, mutable copy)."""
    return json.loads(json.dumps(obj))


def resign(raw: dict[str, Any], seed: bytes = SERVICE_SEED) -> dict[str, Any]:
    """Re-sign a modified snapshot as a *malicious service* would, so only deeper checks remain."""
    out = copy.deepcopy(raw)
    signer = ServiceSigner.from_seed(seed)
    unsigned = {k: v for k, v in out.items() if k != "service_signature"}
    out["service_signature"] = {
        "scheme": "eddsa-ed25519",
        "public_key": signer.public_key.hex(),
        "signature": signer.sign(signing_message(unsigned)).hex(),
    }
    return out


def expect_code(code: ReasonCode, fn: Callable[[], object]) -> PorError:
    with pytest.raises(PorError) as info:
        fn()
    assert info.value.code is code, f"expected {code}, got {info.value.code}: {info.value.detail}"
    return info.value
