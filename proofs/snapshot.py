"""The published snapshot: its fields, the challenge that names it, and its signature.

A snapshot publishes, at a cut-off, the tree root and per-asset liability totals,
the custody keys with a signature of each over the *challenge* (proof of
control), the custody balances, and a service Ed25519 signature over everything
(ARCHITECTURE.md section 4, "Proof of Reserves"). Format version 2 adds the unit
of every asset (``unit_exponents``, :mod:`proofs.units`) and each custody key's
exact minor balances; version 1 files (no units: exponent 0) are still read.

* The challenge is ``SHA-256`` of a tagged, length-prefixed encoding of the
  snapshot id, cut-off, root hash, leaf count and totals
  (:func:`compute_challenge`); a custody signature over it cannot be replayed
  into another snapshot.
* The service signs ``tag("snapshot") || JCS(snapshot without service_signature)``,
  where JCS is RFC 8785 canonical JSON. The format restricts strings to printable
  ASCII and numbers to small integers (amounts are strings), for which RFC 8785 is
  exactly ``json.dumps(sort_keys=True, separators=(",", ":"))``; a verifier in any
  language can reproduce it.

Building a snapshot from liabilities is in :mod:`proofs.build`; this module is
pure because the standalone verifier imports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from proofs import control, units
from proofs import encoding as enc
from proofs import fields as f
from proofs.errors import PorFormatError, PorVerificationError, ReasonCode

SNAPSHOT_FORMAT = "custody-por-snapshot"
SERVICE_SCHEME = "eddsa-ed25519"
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_MAX_RESERVE_DIGITS = 40


_V1_MEMBERS = frozenset(
    {
        "format",
        "version",
        "hash",
        "snapshot_id",
        "cutoff",
        "created_at",
        "assets",
        "leaf_count",
        "tree_depth",
        "root_hash",
        "liabilities",
        "challenge",
        "custody",
        "reserves",
        "service_signature",
    }
)
MEMBERS = {1: _V1_MEMBERS, 2: _V1_MEMBERS | {"unit_exponents"}}
_CUSTODY_V1 = frozenset({"key_id", "scheme", "public_key", "balances", "signature"})
CUSTODY_MEMBERS = {1: _CUSTODY_V1, 2: _CUSTODY_V1 | {"minor_balances"}}


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodyEntry:
    """One custody key: its public key, optional address, balances, and challenge signature.

    ``balances`` are PoR units (u64), ``minor_balances`` the exact amounts they were
    rounded down from (``balances[i] == floor(minor_balances[i] / 10^e_i)``, checked by
    the audit); in version 1 files, which have no minor balances, they are equal.
    """

    key_id: str
    scheme: str
    public_key: bytes
    address: str | None
    balances: tuple[int, ...]
    minor_balances: tuple[int, ...]
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A parsed snapshot (``docs/por-format.md``, "Snapshot file").

    ``unit_exponents[i]`` is the unit of ``assets[i]`` (one PoR unit = ``10^e`` minor
    units); all zero for version 1, which declares no unit.
    """

    version: int
    snapshot_id: str
    cutoff: str
    created_at: str
    assets: tuple[str, ...]
    unit_exponents: tuple[int, ...]
    leaf_count: int
    root_hash: bytes
    liabilities: tuple[int, ...]
    challenge: bytes
    custody: tuple[CustodyEntry, ...]
    reserves: tuple[int, ...]
    service_public_key: bytes
    service_signature: bytes

    @property
    def tree_depth(self) -> int:
        return enc.tree_depth(self.leaf_count)

    def unsigned_json(self) -> dict[str, Any]:
        """Every field except ``service_signature``: the object the service signs.

        Written in the snapshot's own version, so parsing and writing again gives back
        the published object (version 1 included).
        """
        custody = []
        for c in self.custody:
            entry: dict[str, Any] = {
                "key_id": c.key_id,
                "scheme": c.scheme,
                "public_key": c.public_key.hex(),
                "balances": f.amount_map(self.assets, c.balances),
                "signature": c.signature.hex(),
            }
            if self.version >= 2:
                entry["minor_balances"] = f.amount_map(self.assets, c.minor_balances)
            if c.address is not None:
                entry["address"] = c.address
            custody.append(entry)
        out: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "version": self.version,
            "hash": "sha256",
            "snapshot_id": self.snapshot_id,
            "cutoff": self.cutoff,
            "created_at": self.created_at,
            "assets": list(self.assets),
            "leaf_count": self.leaf_count,
            "tree_depth": self.tree_depth,
            "root_hash": self.root_hash.hex(),
            "liabilities": f.amount_map(self.assets, self.liabilities),
            "challenge": self.challenge.hex(),
            "custody": custody,
            "reserves": f.amount_map(self.assets, self.reserves),
        }
        if self.version >= 2:
            out["unit_exponents"] = units.exponents_json(self.assets, self.unit_exponents)
        return out

    def to_json(self) -> dict[str, Any]:
        obj = self.unsigned_json()
        obj["service_signature"] = {
            "scheme": SERVICE_SCHEME,
            "public_key": self.service_public_key.hex(),
            "signature": self.service_signature.hex(),
        }
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> Snapshot:
        """Parse and range-check a snapshot object; raises :class:`PorFormatError`.

        Only syntax and ranges are checked here; hashes and signatures are checked
        by :mod:`proofs.verifier`.
        """
        where = "snapshot"
        if not isinstance(obj, dict):
            raise f.malformed(f"{where}: expected an object")
        version = f.check_version(obj, SNAPSHOT_FORMAT, where)
        f.check_keys(obj, set(MEMBERS[version]), set(), where)
        _check_printable(obj, where)
        if obj["hash"] != "sha256":
            raise f.malformed(f"{where}.hash: only 'sha256' is defined")
        snapshot_id = f.get(obj, "snapshot_id", str, where)
        if not f.ID_RE.fullmatch(snapshot_id):
            raise f.malformed(f"{where}.snapshot_id: bad snapshot id")
        for key in ("cutoff", "created_at"):
            if not f.TIME_RE.fullmatch(f.get(obj, key, str, where)):
                raise f.malformed(f"{where}.{key}: expected YYYY-MM-DDTHH:MM:SSZ")
        assets = f.parse_assets(obj["assets"], f"{where}.assets")
        exponents = (
            units.parse_exponents(obj["unit_exponents"], assets, f"{where}.unit_exponents")
            if version >= 2
            else (0,) * len(assets)
        )
        leaf_count = f.get(obj, "leaf_count", int, where)
        if not 1 <= leaf_count < enc.U64_LIMIT:
            raise f.malformed(f"{where}.leaf_count: not in [1, 2^64)")
        if f.get(obj, "tree_depth", int, where) != enc.tree_depth(leaf_count):
            raise f.malformed(f"{where}.tree_depth: does not match leaf_count")
        custody = tuple(
            _parse_custody(c, version, assets, f"{where}.custody[{i}]")
            for i, c in enumerate(f.get(obj, "custody", list, where))
        )
        sig = f.get(obj, "service_signature", dict, where)
        f.check_keys(
            sig, {"scheme", "public_key", "signature"}, set(), f"{where}.service_signature"
        )
        if sig["scheme"] != SERVICE_SCHEME:
            raise f.malformed(f"{where}.service_signature.scheme: expected {SERVICE_SCHEME!r}")
        reserves = f.get(obj, "reserves", dict, where)
        if set(reserves) != set(assets):
            raise f.malformed(f"{where}.reserves: assets differ from the asset list")
        return cls(
            version=version,
            snapshot_id=snapshot_id,
            cutoff=obj["cutoff"],
            created_at=obj["created_at"],
            assets=assets,
            unit_exponents=exponents,
            leaf_count=leaf_count,
            root_hash=f.parse_hex(obj["root_hash"], enc.HASH_LEN, f"{where}.root_hash"),
            liabilities=f.parse_amount_map(obj["liabilities"], assets, f"{where}.liabilities"),
            challenge=f.parse_hex(obj["challenge"], enc.HASH_LEN, f"{where}.challenge"),
            custody=custody,
            reserves=tuple(_parse_reserve(reserves[a], f"{where}.reserves.{a}") for a in assets),
            service_public_key=f.parse_hex(sig["public_key"], 32, f"{where}.service_signature"),
            service_signature=f.parse_hex(sig["signature"], 64, f"{where}.service_signature"),
        )


def _check_printable(value: Any, where: str) -> None:
    """All strings printable ASCII: the condition under which JCS equals sorted compact JSON."""
    if isinstance(value, str):
        if not _PRINTABLE.fullmatch(value):
            raise f.malformed(f"{where}: non-printable or non-ASCII text")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_printable(k, where)
            _check_printable(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_printable(v, f"{where}[{i}]")
    elif isinstance(value, float):
        raise f.malformed(f"{where}: floating-point numbers are not allowed")


def _parse_reserve(value: Any, where: str) -> int:
    """A reserve total: a decimal string, unbounded (a sum of u64 custody balances)."""
    if not isinstance(value, str) or not re.fullmatch(r"0|[1-9][0-9]*", value):
        raise f.malformed(f"{where}: expected a decimal string")
    if len(value) > _MAX_RESERVE_DIGITS:
        raise PorFormatError(ReasonCode.BALANCE_RANGE, f"{where}: too large")
    return int(value)


def _parse_custody(obj: Any, version: int, assets: Sequence[str], where: str) -> CustodyEntry:
    if not isinstance(obj, dict):
        raise f.malformed(f"{where}: expected an object")
    f.check_keys(obj, set(CUSTODY_MEMBERS[version]), {"address"}, where)
    key_id = f.get(obj, "key_id", str, where)
    if not f.ID_RE.fullmatch(key_id):
        raise f.malformed(f"{where}.key_id: bad key id")
    scheme = f.get(obj, "scheme", str, where)
    lengths = control.PUBLIC_KEY_LEN
    if scheme not in lengths:
        raise f.malformed(f"{where}.scheme: unknown scheme {scheme!r}")
    address = obj.get("address")
    if address is not None and (not isinstance(address, str) or not 1 <= len(address) <= 128):
        raise f.malformed(f"{where}.address: expected a string of 1..128 characters")
    balances = f.parse_amount_map(obj["balances"], assets, f"{where}.balances")
    minor = balances
    if version >= 2:
        raw = obj["minor_balances"]
        if not isinstance(raw, dict) or set(raw) != set(assets):
            raise f.malformed(f"{where}.minor_balances: expected exactly the snapshot's assets")
        minor = tuple(f.parse_minor_amount(raw[a], f"{where}.minor_balances.{a}") for a in assets)
    return CustodyEntry(
        key_id=key_id,
        scheme=scheme,
        public_key=f.parse_hex(obj["public_key"], lengths[scheme], f"{where}.public_key"),
        address=address,
        balances=balances,
        minor_balances=minor,
        signature=f.parse_hex(obj["signature"], 64, f"{where}.signature"),
    )


def challenge_preimage(
    *,
    snapshot_id: str,
    cutoff: str,
    root_hash: bytes,
    leaf_count: int,
    assets: Sequence[str],
    liabilities: Sequence[int],
    version: int = enc.FORMAT_VERSION,
) -> bytes:
    """The bytes whose SHA-256 is the challenge (``docs/por-format.md``, "Challenge").

    ``tag("challenge") || lp16(snapshot_id) || lp16(cutoff) || root_hash || u64 leaf_count
    || u16 k || for each asset: lp16(asset) || u64 total``. Signer nodes are given this
    preimage, not the hash, so that they can check they attest a real snapshot; they
    accept the tag of the current version only (policy/payloads/messages.py).
    """
    parts = [
        enc.tag("challenge", version),
        enc.lp16(snapshot_id.encode("ascii")),
        enc.lp16(cutoff.encode("ascii")),
        root_hash,
        enc.u64(leaf_count),
        enc.u16(len(assets)),
    ]
    for asset, total in zip(assets, liabilities, strict=True):
        parts.append(enc.lp16(asset.encode("ascii")) + enc.u64(total))
    return b"".join(parts)


def compute_challenge(
    *,
    snapshot_id: str,
    cutoff: str,
    root_hash: bytes,
    leaf_count: int,
    assets: Sequence[str],
    liabilities: Sequence[int],
    version: int = enc.FORMAT_VERSION,
) -> bytes:
    """The 32-byte challenge every custody key signs: ``SHA-256(challenge_preimage(...))``."""
    return enc.sha256(
        challenge_preimage(
            snapshot_id=snapshot_id,
            cutoff=cutoff,
            root_hash=root_hash,
            leaf_count=leaf_count,
            assets=assets,
            liabilities=liabilities,
            version=version,
        )
    )


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 (JCS) for the format's restricted JSON: sorted keys, no whitespace, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signing_message(unsigned: dict[str, Any], version: int = enc.FORMAT_VERSION) -> bytes:
    """The bytes the service key signs: ``tag("snapshot") || JCS(unsigned snapshot)``."""
    return enc.tag("snapshot", version) + canonical_json(unsigned)


def verify_service_signature(
    raw: dict[str, Any], snapshot: Snapshot, trusted_key: bytes | None
) -> None:
    """Check the service signature over the snapshot *as published* (``raw`` JSON object).

    Signing the published object rather than a re-serialisation means any change
    to any field, including ones this version ignores, breaks the signature.
    ``trusted_key`` pins the service key obtained out of band; without it the key in
    the file is used, which only shows integrity, not origin.
    """
    if trusted_key is not None and trusted_key != snapshot.service_public_key:
        raise PorVerificationError(
            ReasonCode.UNTRUSTED_SERVICE_KEY, "snapshot is signed by another service key"
        )
    unsigned = {k: v for k, v in raw.items() if k != "service_signature"}
    if not control.verify_signature(
        SERVICE_SCHEME,
        snapshot.service_public_key,
        signing_message(unsigned, snapshot.version),
        snapshot.service_signature,
    ):
        raise PorVerificationError(
            ReasonCode.BAD_SIGNATURE, "service signature over the snapshot is invalid"
        )
