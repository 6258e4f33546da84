"""Inclusion proofs: the value a customer receives, its encodings, and its verification.

A proof opens one leaf (customer id, salt, balances, leaf index) and gives, for
every level from the leaves up, the sibling's hash and sum vector. Recomputing
the root hashes *and* sums: because each node commits both children's sums
(ePrint 2022/043, section 4), a prover cannot move value from one sibling to the
other, and every partial sum is checked to stay below 2^64 so sums cannot wrap.

Creation from a built tree is in :mod:`proofs.tree`; this module is pure (no
numpy) because the standalone verifier imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from proofs import encoding as enc
from proofs import fields as f
from proofs import units
from proofs.errors import PorFormatError, PorVerificationError, ReasonCode

PROOF_FORMAT = "custody-por-proof"
BINARY_MAGIC = b"PORP"
_V1_MEMBERS = frozenset(
    {
        "format",
        "version",
        "snapshot_id",
        "root_hash",
        "assets",
        "leaf_count",
        "customer_id",
        "salt",
        "balances",
        "leaf_index",
        "path",
    }
)
MEMBERS = {1: _V1_MEMBERS, 2: _V1_MEMBERS | {"unit_exponents"}}


@dataclass(frozen=True, slots=True, kw_only=True)
class PathNode:
    """A sibling on the path: its hash and its sum vector (asset order of the snapshot)."""

    hash: bytes
    sums: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class InclusionProof:
    """One customer's inclusion proof (``docs/por-format.md``, "Proof file").

    ``salt`` is what lets the customer (and only the customer) recompute its leaf;
    it is not secret towards the customer, but it is kept out of ``repr`` so that
    logs do not make customer hashes linkable to ids. ``balances`` are PoR units of
    ``10^unit_exponents[i]`` minor units (all exponents 0 in version 1).
    """

    snapshot_id: str
    root_hash: bytes
    assets: tuple[str, ...]
    unit_exponents: tuple[int, ...]
    leaf_count: int
    customer_id: str
    salt: bytes
    balances: tuple[int, ...]
    leaf_index: int
    path: tuple[PathNode, ...]
    version: int = enc.FORMAT_VERSION

    def __repr__(self) -> str:
        return (
            f"InclusionProof(snapshot_id={self.snapshot_id!r}, customer_id={self.customer_id!r},"
            f" leaf_index={self.leaf_index}, depth={len(self.path)}, salt=<redacted>)"
        )

    # -- JSON ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The proof file in the proof's own version (version 1 has no ``unit_exponents``)."""
        out: dict[str, Any] = {
            "format": PROOF_FORMAT,
            "version": self.version,
            "snapshot_id": self.snapshot_id,
            "root_hash": self.root_hash.hex(),
            "assets": list(self.assets),
            "leaf_count": self.leaf_count,
            "customer_id": self.customer_id,
            "salt": self.salt.hex(),
            "balances": f.amount_map(self.assets, self.balances),
            "leaf_index": self.leaf_index,
            "path": [{"hash": p.hash.hex(), "sums": [str(s) for s in p.sums]} for p in self.path],
        }
        if self.version >= 2:
            out["unit_exponents"] = units.exponents_json(self.assets, self.unit_exponents)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> InclusionProof:
        """Parse and range-check a proof object; raises :class:`PorFormatError`."""
        where = "proof"
        if not isinstance(obj, dict):
            raise f.malformed(f"{where}: expected an object")
        version = f.check_version(obj, PROOF_FORMAT, where)
        f.check_keys(obj, set(MEMBERS[version]), set(), where)
        assets = f.parse_assets(obj["assets"], f"{where}.assets")
        exponents = (
            units.parse_exponents(obj["unit_exponents"], assets, f"{where}.unit_exponents")
            if version >= 2
            else (0,) * len(assets)
        )
        customer_id = f.get(obj, "customer_id", str, where)
        if not 1 <= len(customer_id.encode("utf-8")) <= enc.MAX_ID_BYTES:
            raise f.malformed(f"{where}.customer_id: length not in [1, {enc.MAX_ID_BYTES}]")
        raw_path = f.get(obj, "path", list, where)
        path = []
        for i, node in enumerate(raw_path):
            pw = f"{where}.path[{i}]"
            if not isinstance(node, dict):
                raise f.malformed(f"{pw}: expected an object")
            f.check_keys(node, {"hash", "sums"}, set(), pw)
            path.append(
                PathNode(
                    hash=f.parse_hex(node["hash"], enc.HASH_LEN, f"{pw}.hash"),
                    sums=f.parse_amount_list(node["sums"], len(assets), f"{pw}.sums"),
                )
            )
        leaf_count = f.get(obj, "leaf_count", int, where)
        leaf_index = f.get(obj, "leaf_index", int, where)
        snapshot_id = f.get(obj, "snapshot_id", str, where)
        if not f.ID_RE.fullmatch(snapshot_id):
            raise f.malformed(f"{where}.snapshot_id: bad snapshot id")
        return cls(
            version=version,
            snapshot_id=snapshot_id,
            root_hash=f.parse_hex(obj["root_hash"], enc.HASH_LEN, f"{where}.root_hash"),
            assets=assets,
            unit_exponents=exponents,
            leaf_count=leaf_count,
            customer_id=customer_id,
            salt=f.parse_hex(obj["salt"], enc.SALT_LEN, f"{where}.salt"),
            balances=f.parse_amount_map(obj["balances"], assets, f"{where}.balances"),
            leaf_index=leaf_index,
            path=tuple(path),
        )

    # -- binary -------------------------------------------------------------------------

    def to_binary(self) -> bytes:
        """Compact binary form (``docs/por-format.md``, "Binary proof"), for bulk files."""
        return b"".join(
            [
                binary_header(
                    self.version,
                    self.snapshot_id,
                    self.root_hash,
                    self.assets,
                    self.unit_exponents,
                    self.leaf_count,
                ),
                enc.lp16(self.customer_id.encode("utf-8")),
                self.salt,
                enc.balances_bytes(self.balances),
                enc.u64(self.leaf_index),
                enc.u8(len(self.path)),
                *(p.hash + enc.balances_bytes(p.sums) for p in self.path),
            ]
        )

    @classmethod
    def from_binary(cls, data: bytes) -> InclusionProof:
        """Inverse of :meth:`to_binary`; trailing bytes are rejected."""
        reader = _Reader(data)
        if reader.take(4) != BINARY_MAGIC:
            raise f.malformed("binary proof: bad magic")
        if (version := reader.uint(1)) not in enc.SUPPORTED_VERSIONS:
            raise PorFormatError(
                ReasonCode.UNSUPPORTED_VERSION,
                f"binary proof: format version {version} is not supported"
                f" (this verifier reads versions {f.supported_versions_text()})",
            )
        snapshot_id = reader.text("ascii")
        root = reader.take(enc.HASH_LEN)
        assets_list, exponents_list = [], []
        for _ in range(reader.uint(2)):
            assets_list.append(reader.text("ascii"))
            exponents_list.append(reader.uint(1) if version >= 2 else 0)
        assets, exponents = tuple(assets_list), tuple(exponents_list)
        if any(e > units.MAX_EXPONENT for e in exponents):
            raise f.malformed("binary proof: unit exponent out of range")
        width = len(assets)
        leaf_count = reader.uint(8)
        customer_id = reader.text("utf-8")
        salt = reader.take(enc.SALT_LEN)
        balances = reader.sums(width)
        leaf_index = reader.uint(8)
        path = tuple(
            PathNode(hash=reader.take(enc.HASH_LEN), sums=reader.sums(width))
            for _ in range(reader.uint(1))
        )
        reader.end()
        return cls(
            version=version,
            snapshot_id=snapshot_id,
            root_hash=root,
            assets=assets,
            unit_exponents=exponents,
            leaf_count=leaf_count,
            customer_id=customer_id,
            salt=salt,
            balances=balances,
            leaf_index=leaf_index,
            path=path,
        )


def binary_header(
    version: int,
    snapshot_id: str,
    root_hash: bytes,
    assets: Sequence[str],
    exponents: Sequence[int],
    leaf_count: int,
) -> bytes:
    """The part of a binary proof shared by every proof of a snapshot.

    ``"PORP" || u8 version || lp16(snapshot_id) || root_hash || u16 k || per asset
    lp16(asset) [|| u8 unit exponent, version 2] || u64 leaf_count``.
    """
    per_asset = [
        enc.lp16(a.encode("ascii")) + (enc.u8(e) if version >= 2 else b"")
        for a, e in zip(assets, exponents, strict=True)
    ]
    return b"".join(
        [
            BINARY_MAGIC,
            enc.u8(version),
            enc.lp16(snapshot_id.encode("ascii")),
            root_hash,
            enc.u16(len(assets)),
            *per_asset,
            enc.u64(leaf_count),
        ]
    )


class PublishedTree(Protocol):
    """What a proof is checked against: the values a signed snapshot publishes
    (:class:`proofs.snapshot.Snapshot` is one)."""

    @property
    def version(self) -> int: ...
    @property
    def snapshot_id(self) -> str: ...
    @property
    def root_hash(self) -> bytes: ...
    @property
    def assets(self) -> tuple[str, ...]: ...
    @property
    def unit_exponents(self) -> tuple[int, ...]: ...
    @property
    def leaf_count(self) -> int: ...
    @property
    def liabilities(self) -> tuple[int, ...]: ...


class _Reader:
    """Bounds-checked cursor over a binary proof."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise f.malformed("binary proof: truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def text(self, codec: str) -> str:
        try:
            return self.take(self.uint(2)).decode(codec)
        except UnicodeDecodeError as exc:
            raise f.malformed("binary proof: bad text") from exc

    def sums(self, width: int) -> tuple[int, ...]:
        return tuple(self.uint(8) for _ in range(width))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise f.malformed("binary proof: trailing bytes")


def _fail(code: ReasonCode, detail: str) -> PorVerificationError:
    return PorVerificationError(code, detail)


def _add(left: Sequence[int], right: Sequence[int], level: int) -> tuple[int, ...]:
    out = tuple(a + b for a, b in zip(left, right, strict=True))
    if any(s >= enc.U64_LIMIT for s in out):
        raise _fail(ReasonCode.OVERFLOW, f"sum overflows u64 at level {level + 1}")
    return out


def recompute_root(proof: InclusionProof) -> tuple[bytes, tuple[int, ...]]:
    """Fold the path into ``(root hash, root sums)`` (steps 3-6 of the documented algorithm).

    Checks the leaf index, the path length implied by ``leaf_count``, every
    balance range and partial sum, and that every sibling standing where the
    tree has padding is exactly the canonical padding node with zero sums.
    """
    width = len(proof.assets)
    if proof.leaf_count < 1 or not 0 <= proof.leaf_index < proof.leaf_count:
        raise _fail(
            ReasonCode.INDEX_OUT_OF_RANGE,
            f"leaf_index {proof.leaf_index} not in [0, {proof.leaf_count})",
        )
    depth = enc.tree_depth(proof.leaf_count)
    if len(proof.path) != depth:
        raise _fail(ReasonCode.PATH_LENGTH, f"path has {len(proof.path)} nodes, expected {depth}")
    for value in (*proof.balances, *(s for p in proof.path for s in p.sums)):
        if not 0 <= value < enc.U64_LIMIT:
            raise PorFormatError(ReasonCode.BALANCE_RANGE, f"{value} not in [0, 2^64)")
    if len(proof.balances) != width or any(len(p.sums) != width for p in proof.path):
        raise f.malformed("sum vector length differs from the asset count")
    if len(proof.salt) != enc.SALT_LEN:
        raise f.malformed("salt must be 32 bytes")

    v = proof.version
    if v not in enc.SUPPORTED_VERSIONS:
        raise PorFormatError(ReasonCode.UNSUPPORTED_VERSION, f"format version {v}")
    h = enc.leaf_hash(enc.customer_hash(proof.customer_id, proof.salt, v), proof.balances, v)
    sums = proof.balances
    index, size = proof.leaf_index, proof.leaf_count
    zero = (0,) * width
    for level, sib in enumerate(proof.path):
        # Our node is the last of an odd level: the sibling must be the padding node.
        if index ^ 1 == size and (sib.hash != enc.pad_hash(level, size, v) or sib.sums != zero):
            raise _fail(ReasonCode.PADDING_MISMATCH, f"bad padding node at level {level}")
        new_sums = _add(sums, sib.sums, level)
        if index & 1:
            h = enc.node_hash(sib.hash, sib.sums, h, sums, v)
        else:
            h = enc.node_hash(h, sums, sib.hash, sib.sums, v)
        sums = new_sums
        index >>= 1
        size = (size + 1) // 2
    return h, sums


def verify_inclusion(proof: InclusionProof, snapshot: PublishedTree) -> None:
    """Check ``proof`` against a (signature-checked) snapshot's published values.

    Steps V2-V6 of ``docs/por-format.md``. Raises :class:`PorVerificationError` with
    the failing check's code; returns ``None`` when the customer's leaf, with its
    balances, is in the tree whose root hash and per-asset totals the snapshot
    publishes, in the units the snapshot declares.
    """
    if proof.snapshot_id != snapshot.snapshot_id:
        raise _fail(
            ReasonCode.SNAPSHOT_MISMATCH,
            f"proof is for snapshot {proof.snapshot_id!r}, not {snapshot.snapshot_id!r}",
        )
    if proof.version != snapshot.version:
        raise _fail(
            ReasonCode.SNAPSHOT_MISMATCH,
            f"proof has format version {proof.version}, the snapshot {snapshot.version}",
        )
    if proof.root_hash != snapshot.root_hash or tuple(proof.assets) != tuple(snapshot.assets):
        raise _fail(ReasonCode.SNAPSHOT_MISMATCH, "proof names another root or asset list")
    if tuple(proof.unit_exponents) != tuple(snapshot.unit_exponents):
        raise _fail(ReasonCode.SNAPSHOT_MISMATCH, "proof declares other units than the snapshot")
    if proof.leaf_count != snapshot.leaf_count:
        raise _fail(ReasonCode.SNAPSHOT_MISMATCH, "proof names another leaf count")
    root, sums = recompute_root(proof)
    if root != snapshot.root_hash:
        raise _fail(ReasonCode.ROOT_MISMATCH, "recomputed root hash differs from the snapshot")
    if sums != tuple(snapshot.liabilities):
        raise _fail(ReasonCode.TOTALS_MISMATCH, "recomputed root sums differ from the snapshot")
