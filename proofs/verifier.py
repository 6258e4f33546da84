"""Standalone Proof-of-Reserves verification: needs only the published files and public keys.

An auditor or customer must be able to check the service without trusting it
(ARCHITECTURE.md section 1, "auditor": trusts only the snapshot and published
public keys). This module therefore imports only ``hashlib``, ``json``,
``coincurve``, ``PyNaCl`` and the ``proofs`` modules that obey the same rule
(``encoding``, ``errors``, ``fields``, ``inclusion``, ``snapshot``, ``control``);
``tests/proofs/test_verifier_imports.py`` enforces it.

Two checks, mirroring the two audiences:

* :func:`verify_customer`: the snapshot is signed and self-consistent, and the
  customer's proof recomputes its root hash and totals (``custody-por verify``);
* :func:`audit`: the snapshot is signed and self-consistent, every custody key
  signed the challenge, reserves add up, and reserves >= liabilities per asset
  (``custody-por audit``).

Each failure raises a :class:`~proofs.errors.PorError` whose stable code names the
first failing step of the algorithm in ``docs/por-format.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proofs import control
from proofs.errors import PorFormatError, PorVerificationError, ReasonCode
from proofs.inclusion import InclusionProof, verify_inclusion
from proofs.snapshot import Snapshot, compute_challenge, verify_service_signature


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON with a repeated key means different things to different parsers: reject it."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PorFormatError(ReasonCode.MALFORMED, f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise PorFormatError(ReasonCode.MALFORMED, f"non-standard JSON constant {name}")


def parse_json(text: str | bytes) -> Any:
    """Strict JSON: no duplicate keys, no NaN/Infinity."""
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, PorFormatError):
            raise
        raise PorFormatError(ReasonCode.MALFORMED, f"not JSON: {exc}") from exc


def load_json(path: str) -> Any:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise PorFormatError(ReasonCode.IO, f"cannot read {path}: {exc.strerror}") from exc
    return parse_json(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerReport:
    snapshot_id: str
    customer_id: str
    balances: dict[str, int]
    root_hash: str
    service_key_pinned: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "check": "verify",
            "snapshot_id": self.snapshot_id,
            "customer_id": self.customer_id,
            "balances": {a: str(v) for a, v in self.balances.items()},
            "root_hash": self.root_hash,
            "service_key_pinned": self.service_key_pinned,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetSolvency:
    asset: str
    liabilities: int
    reserves: int

    @property
    def surplus(self) -> int:
        return self.reserves - self.liabilities


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    snapshot_id: str
    cutoff: str
    leaf_count: int
    custody_keys: int
    assets: tuple[AssetSolvency, ...]
    service_key_pinned: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "check": "audit",
            "snapshot_id": self.snapshot_id,
            "cutoff": self.cutoff,
            "leaf_count": self.leaf_count,
            "custody_keys": self.custody_keys,
            "assets": {
                a.asset: {
                    "liabilities": str(a.liabilities),
                    "reserves": str(a.reserves),
                    "surplus": str(a.surplus),
                }
                for a in self.assets
            },
            "service_key_pinned": self.service_key_pinned,
        }


def check_snapshot(raw: Any, trusted_service_key: bytes | None = None) -> Snapshot:
    """Steps S1-S3: parse, recompute the challenge, check the service signature."""
    snapshot = Snapshot.from_json(raw)
    challenge = compute_challenge(
        snapshot_id=snapshot.snapshot_id,
        cutoff=snapshot.cutoff,
        root_hash=snapshot.root_hash,
        leaf_count=snapshot.leaf_count,
        assets=snapshot.assets,
        liabilities=snapshot.liabilities,
    )
    if challenge != snapshot.challenge:
        raise PorVerificationError(
            ReasonCode.CHALLENGE_MISMATCH, "challenge does not name this snapshot"
        )
    verify_service_signature(raw, snapshot, trusted_service_key)
    return snapshot


def verify_customer(
    raw_snapshot: Any,
    raw_proof: Any,
    *,
    trusted_service_key: bytes | None = None,
    customer_id: str | None = None,
    expected_balances: Mapping[str, int] | None = None,
) -> CustomerReport:
    """A customer's check: snapshot valid, own leaf included, balances as expected."""
    snapshot = check_snapshot(raw_snapshot, trusted_service_key)
    proof = InclusionProof.from_json(raw_proof)
    verify_inclusion(
        proof,
        snapshot_id=snapshot.snapshot_id,
        root_hash=snapshot.root_hash,
        assets=snapshot.assets,
        leaf_count=snapshot.leaf_count,
        liabilities=snapshot.liabilities,
    )
    if customer_id is not None and proof.customer_id != customer_id:
        raise PorVerificationError(
            ReasonCode.CUSTOMER_MISMATCH, f"proof is for customer {proof.customer_id!r}"
        )
    balances = dict(zip(proof.assets, proof.balances, strict=True))
    for asset, amount in (expected_balances or {}).items():
        if asset not in balances:
            raise PorVerificationError(ReasonCode.UNKNOWN_ASSET, f"asset {asset!r} not in snapshot")
        if balances[asset] != amount:
            raise PorVerificationError(
                ReasonCode.BALANCE_MISMATCH,
                f"{asset}: proof says {balances[asset]}, expected {amount}",
            )
    return CustomerReport(
        snapshot_id=snapshot.snapshot_id,
        customer_id=proof.customer_id,
        balances=balances,
        root_hash=snapshot.root_hash.hex(),
        service_key_pinned=trusted_service_key is not None,
    )


def audit(
    raw_snapshot: Any,
    *,
    assets: Sequence[str] | None = None,
    trusted_service_key: bytes | None = None,
) -> AuditReport:
    """An auditor's check: signatures, proof of control under each key, solvency per asset."""
    snapshot = check_snapshot(raw_snapshot, trusted_service_key)
    seen: set[bytes] = set()
    for entry in snapshot.custody:  # A1: a key counted twice would double its reserves
        if entry.public_key in seen:
            raise PorVerificationError(
                ReasonCode.DUPLICATE_KEY, f"key {entry.key_id!r} is listed twice"
            )
        seen.add(entry.public_key)
    for entry in snapshot.custody:  # A2: proof of control
        if not control.verify_signature(
            entry.scheme, entry.public_key, snapshot.challenge, entry.signature
        ):
            raise PorVerificationError(
                ReasonCode.BAD_CONTROL_SIGNATURE,
                f"custody key {entry.key_id!r} did not sign this snapshot's challenge",
            )
    totals = [sum(c.balances[i] for c in snapshot.custody) for i in range(len(snapshot.assets))]
    if tuple(totals) != snapshot.reserves:
        raise PorVerificationError(
            ReasonCode.RESERVES_MISMATCH, "reserves differ from the sum of custody balances"
        )
    selected = list(snapshot.assets) if assets is None else list(assets)
    rows = []
    for asset in selected:
        if asset not in snapshot.assets:
            raise PorVerificationError(ReasonCode.UNKNOWN_ASSET, f"asset {asset!r} not in snapshot")
        i = snapshot.assets.index(asset)
        row = AssetSolvency(
            asset=asset, liabilities=snapshot.liabilities[i], reserves=snapshot.reserves[i]
        )
        if row.surplus < 0:
            raise PorVerificationError(
                ReasonCode.INSOLVENT,
                f"{asset}: reserves {row.reserves} < liabilities {row.liabilities}",
            )
        rows.append(row)
    return AuditReport(
        snapshot_id=snapshot.snapshot_id,
        cutoff=snapshot.cutoff,
        leaf_count=snapshot.leaf_count,
        custody_keys=len(snapshot.custody),
        assets=tuple(rows),
        service_key_pinned=trusted_service_key is not None,
    )
