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
  signed the challenge, every custody balance is its exact minor balance rounded
  down to the declared unit, reserves add up, and reserves >= liabilities per asset
  (``custody-por audit``).

Files of every version in :data:`proofs.encoding.SUPPORTED_VERSIONS` are read
(version 1 declares no units: exponent 0 for every asset).

Each failure raises a :class:`~proofs.errors.PorError` whose stable code names the
first failing step of the algorithm in ``docs/por-format.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proofs import control, units
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
    """What a customer's check established; ``balances`` are PoR units of
    ``10^unit_exponents[asset]`` minor units."""

    snapshot_id: str
    version: int
    customer_id: str
    balances: dict[str, int]
    unit_exponents: dict[str, int]
    root_hash: str
    service_key_pinned: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "check": "verify",
            "snapshot_id": self.snapshot_id,
            "version": self.version,
            "customer_id": self.customer_id,
            "balances": {a: str(v) for a, v in self.balances.items()},
            "unit_exponents": dict(self.unit_exponents),
            "root_hash": self.root_hash,
            "service_key_pinned": self.service_key_pinned,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetSolvency:
    """One asset's totals in PoR units of ``10^unit_exponent`` minor units."""

    asset: str
    unit_exponent: int
    liabilities: int
    reserves: int

    @property
    def surplus(self) -> int:
        return self.reserves - self.liabilities


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    snapshot_id: str
    version: int
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
            "version": self.version,
            "cutoff": self.cutoff,
            "leaf_count": self.leaf_count,
            "custody_keys": self.custody_keys,
            "assets": {
                a.asset: {
                    "unit_exponent": a.unit_exponent,
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
        version=snapshot.version,
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
    expected_minor_balances: Mapping[str, int] | None = None,
) -> CustomerReport:
    """A customer's check: snapshot valid, own leaf included, balances as expected.

    ``expected_balances`` are in the proof's PoR units; ``expected_minor_balances`` are
    the customer's own statement in minor units (e.g. wei), which the proof must show
    rounded **up** to the declared unit, ``ceil(amount / 10^e)`` (step V7).
    """
    snapshot = check_snapshot(raw_snapshot, trusted_service_key)
    proof = InclusionProof.from_json(raw_proof)
    verify_inclusion(proof, snapshot)
    if customer_id is not None and proof.customer_id != customer_id:
        raise PorVerificationError(
            ReasonCode.CUSTOMER_MISMATCH, f"proof is for customer {proof.customer_id!r}"
        )
    balances = dict(zip(proof.assets, proof.balances, strict=True))
    exponents = dict(zip(proof.assets, proof.unit_exponents, strict=True))
    checks = [(asset, amount, "") for asset, amount in (expected_balances or {}).items()]
    for asset, minor in (expected_minor_balances or {}).items():
        if asset not in exponents:
            raise PorVerificationError(ReasonCode.UNKNOWN_ASSET, f"asset {asset!r} not in snapshot")
        if minor < 0:
            raise PorVerificationError(ReasonCode.BALANCE_MISMATCH, f"{asset}: negative amount")
        e = exponents[asset]
        note = f" ({minor} minor units rounded up to units of {units.describe(e)})"
        checks.append((asset, units.liability_units(minor, e), note))
    for asset, want, note in checks:  # V7
        if asset not in balances:
            raise PorVerificationError(ReasonCode.UNKNOWN_ASSET, f"asset {asset!r} not in snapshot")
        if balances[asset] != want:
            raise PorVerificationError(
                ReasonCode.BALANCE_MISMATCH,
                f"{asset}: proof says {balances[asset]}, expected {want}{note}",
            )
    return CustomerReport(
        snapshot_id=snapshot.snapshot_id,
        version=snapshot.version,
        customer_id=proof.customer_id,
        balances=balances,
        unit_exponents=exponents,
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
    for entry in snapshot.custody:  # A3: custody balances round down
        for i, asset in enumerate(snapshot.assets):
            e = snapshot.unit_exponents[i]
            if entry.balances[i] != units.reserve_units(entry.minor_balances[i], e):
                raise PorVerificationError(
                    ReasonCode.UNIT_ROUNDING,
                    f"custody key {entry.key_id!r} {asset}: {entry.balances[i]} is not"
                    f" {entry.minor_balances[i]} rounded down to units of {units.describe(e)}",
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
            asset=asset,
            unit_exponent=snapshot.unit_exponents[i],
            liabilities=snapshot.liabilities[i],
            reserves=snapshot.reserves[i],
        )
        if row.surplus < 0:
            raise PorVerificationError(
                ReasonCode.INSOLVENT,
                f"{asset}: reserves {row.reserves} < liabilities {row.liabilities}",
            )
        rows.append(row)
    return AuditReport(
        snapshot_id=snapshot.snapshot_id,
        version=snapshot.version,
        cutoff=snapshot.cutoff,
        leaf_count=snapshot.leaf_count,
        custody_keys=len(snapshot.custody),
        assets=tuple(rows),
        service_key_pinned=trusted_service_key is not None,
    )
