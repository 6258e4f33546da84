"""Building and signing a snapshot from liabilities (the prover side; not used by verifiers).

Input is a liabilities table per customer and asset, from the ledger at the
cut-off or, for dry runs and benchmarks, from a CSV ``customer_id,asset,amount``.
Output is the :class:`BuiltSnapshot`: the signed snapshot, the tree and the
salts, from which every customer's inclusion proof is cut.

Signers are injected as callables (``challenge -> signature``): the threshold
signers of ``signer_nodes`` plug in here, and tests or dry runs use single-key
software signers (:func:`software_signer`), which produce signatures that verify
the same way (see :mod:`proofs.control`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coincurve
import nacl.signing
import numpy as np
from coincurve.ecdsa import der_to_cdata, serialize_compact

from proofs import encoding as enc
from proofs import fields as f
from proofs import units
from proofs.errors import PorError, PorInputError, ReasonCode
from proofs.inclusion import InclusionProof, binary_header
from proofs.rows import Row, check_amount, liability_rows, read_liabilities_csv, to_units
from proofs.snapshot import (
    CustodyEntry,
    Snapshot,
    canonical_json,
    challenge_preimage,
    signing_message,
)
from proofs.tree import (
    MerkleSumTree,
    U8Array,
    U64Array,
    build_tree,
    customer_hashes,
    fill_columns,
    group_by_length,
    sums_to_be_bytes,
)

Signer = Callable[[bytes], bytes]
_SAFE_NAME = re.compile(r"[A-Za-wyz0-9_-][A-Za-z0-9._-]{0,99}")


def _input_error(code: ReasonCode, detail: str) -> PorInputError:
    return PorInputError(code, detail)


@dataclass(frozen=True, slots=True, eq=False)
class Liabilities:
    """Customer liabilities as columns: ids, sorted asset list, ``(N, k)`` uint64 balances.

    ``balances`` are PoR units: ``unit_exponents[j]`` is the unit of ``assets[j]`` (one
    unit = ``10^e`` minor units; :mod:`proofs.units`). Empty ``unit_exponents`` means
    exponent 0 everywhere (the balances are the minor amounts themselves).
    """

    customer_ids: tuple[str, ...]
    assets: tuple[str, ...]
    balances: U64Array
    unit_exponents: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.assets or list(self.assets) != sorted(set(self.assets)):
            raise _input_error(ReasonCode.MALFORMED, "assets must be non-empty, sorted, unique")
        for asset in self.assets:
            if not f.ASSET_RE.fullmatch(asset):
                raise _input_error(ReasonCode.MALFORMED, f"bad asset name {asset!r}")
        if not self.unit_exponents:
            object.__setattr__(self, "unit_exponents", (0,) * len(self.assets))
        if len(self.unit_exponents) != len(self.assets) or any(
            isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= units.MAX_EXPONENT
            for e in self.unit_exponents
        ):
            raise _input_error(
                ReasonCode.MALFORMED,
                f"unit exponents must be one integer in [0, {units.MAX_EXPONENT}] per asset",
            )
        if self.balances.dtype != np.uint64 or self.balances.shape != (
            len(self.customer_ids),
            len(self.assets),
        ):
            raise _input_error(ReasonCode.MALFORMED, "balances must be uint64 (customers, assets)")
        if len(set(self.customer_ids)) != len(self.customer_ids):
            raise _input_error(ReasonCode.DUPLICATE_CUSTOMER, "a customer id appears twice")
        for cid in self.customer_ids:
            if not 1 <= len(cid.encode("utf-8")) <= enc.MAX_ID_BYTES:
                raise _input_error(ReasonCode.MALFORMED, f"customer id length: {cid[:40]!r}")

    @classmethod
    def from_units(
        cls,
        rows: Mapping[str, Mapping[str, int]],
        unit_exponents: Mapping[str, int] | None = None,
    ) -> Liabilities:
        """``{customer_id: {asset: PoR units}}`` (already converted); missing assets are zero."""
        assets = tuple(sorted({a for bal in rows.values() for a in bal}))
        ids = tuple(rows)
        matrix = np.zeros((len(ids), len(assets)), dtype=np.uint64)
        col = {a: i for i, a in enumerate(assets)}
        for r, cid in enumerate(ids):
            for asset, amount in rows[cid].items():
                matrix[r, col[asset]] = _u64(amount, f"{cid}/{asset}")
        try:
            exponents = units.exponents_for(assets, unit_exponents)
        except (TypeError, ValueError) as exc:
            raise _input_error(ReasonCode.MALFORMED, f"unit exponents: {exc}") from None
        return cls(customer_ids=ids, assets=assets, balances=matrix, unit_exponents=exponents)

    @classmethod
    def from_mapping(
        cls,
        rows: Mapping[str, Mapping[str, int]],
        unit_exponents: Mapping[str, int] | None = None,
    ) -> Liabilities:
        """``{customer_id: {asset: minor amount}}``, rounded up to each asset's unit."""
        declared = unit_exponents or {}
        converted = {
            cid: {
                asset: to_units(
                    check_amount(amount, cid[:40]),
                    asset,
                    declared.get(asset, 0),
                    cid[:40],
                    round_up=True,
                )
                for asset, amount in bal.items()
            }
            for cid, bal in rows.items()
        }
        return cls.from_units(converted, unit_exponents)

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Row | tuple[str, str, int]],
        unit_exponents: Mapping[str, int] | None = None,
    ) -> Liabilities:
        """Rows ``(customer_id, asset, minor amount)``, strictly checked and rounded up to
        each asset's unit (:func:`proofs.rows.liability_rows`)."""
        return cls.from_units(liability_rows(rows, unit_exponents), unit_exponents)

    @classmethod
    def from_csv(
        cls, path: str | Path, unit_exponents: Mapping[str, int] | None = None
    ) -> Liabilities:
        """CSV ``customer_id,asset,amount`` with that header; one row per customer and asset.

        Every error names its line (:func:`proofs.rows.read_liabilities_csv`); a
        repeated (customer, asset) pair is an error rather than summed, so that a
        double-posted ledger export is noticed, not silently published.
        """
        return cls.from_rows(read_liabilities_csv(path), unit_exponents)


def _u64(value: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < enc.U64_LIMIT:
        raise _input_error(ReasonCode.BALANCE_RANGE, f"{where}: {value!r} not in [0, 2^64)")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSigner:
    """The service's Ed25519 snapshot-signing key, as a public key and a signing callable."""

    public_key: bytes
    sign: Signer = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> ServiceSigner:
        key = nacl.signing.SigningKey(seed)
        return cls(public_key=bytes(key.verify_key), sign=lambda m: key.sign(m).signature)

    @classmethod
    def from_file(cls, path: str | Path) -> ServiceSigner:
        """A key file holds the 32-byte Ed25519 seed as 64 hex characters."""
        try:
            seed = bytes.fromhex(Path(path).read_text().strip())
        except OSError as exc:
            raise _input_error(ReasonCode.IO, f"cannot read {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise _input_error(ReasonCode.MALFORMED, f"{path}: not hex") from exc
        if len(seed) != 32:
            raise _input_error(ReasonCode.MALFORMED, f"{path}: expected a 32-byte seed")
        return cls.from_seed(seed)


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodySigner:
    """A custody key for proof of control: ``sign(challenge)`` returns the 64-byte signature."""

    key_id: str
    scheme: str
    public_key: bytes
    balances: Mapping[str, int]
    sign: Signer = field(repr=False)
    address: str | None = None


def software_signer(
    key_id: str,
    scheme: str,
    secret: bytes,
    balances: Mapping[str, int],
    address: str | None = None,
) -> CustodySigner:
    """A single-key signer for tests and dry runs (threshold signers replace it in production)."""
    if scheme == "ecdsa-secp256k1":
        ec = coincurve.PrivateKey(secret)

        def sign(m: bytes) -> bytes:
            return bytes(serialize_compact(der_to_cdata(ec.sign(m))))  # SHA-256(m), low-s

        pub = ec.public_key.format(compressed=True)
    elif scheme == "schnorr-bip340":
        sk = coincurve.PrivateKey(secret)

        def sign(m: bytes) -> bytes:
            return bytes(sk.sign_schnorr(m, secrets.token_bytes(32)))

        pub = sk.public_key.format(compressed=True)[1:]
    elif scheme == "eddsa-ed25519":
        ed = nacl.signing.SigningKey(secret)

        def sign(m: bytes) -> bytes:
            return bytes(ed.sign(m).signature)

        pub = bytes(ed.verify_key)
    else:
        raise _input_error(ReasonCode.MALFORMED, f"unknown scheme {scheme!r}")
    return CustodySigner(
        key_id=key_id, scheme=scheme, public_key=pub, balances=balances, sign=sign, address=address
    )


def load_custody_file(path: str | Path) -> list[CustodySigner]:
    """Dry-run custody keys: JSON list of ``{key_id, scheme, secret_key, balances, address?}``."""
    from proofs.verifier import load_json

    try:
        raw = load_json(str(path))
        return [
            software_signer(
                e["key_id"],
                e["scheme"],
                bytes.fromhex(e["secret_key"]),
                {a: int(v) for a, v in e["balances"].items()},
                e.get("address"),
            )
            for e in raw
        ]
    except PorError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _input_error(ReasonCode.MALFORMED, f"{path}: bad custody key file ({exc})") from exc


@dataclass(frozen=True, slots=True, eq=False)
class BuiltSnapshot:
    """A signed snapshot with everything needed to hand out proofs. Holds the salts: private."""

    snapshot: Snapshot
    raw: dict[str, Any]
    liabilities: Liabilities
    tree: MerkleSumTree
    salts: bytes = field(repr=False)

    def proof(self, row: int) -> InclusionProof:
        """The inclusion proof of the customer in input row ``row``."""
        pos = int(self.tree.position[row])
        return InclusionProof(
            version=self.snapshot.version,
            snapshot_id=self.snapshot.snapshot_id,
            root_hash=self.tree.root_hash,
            assets=self.liabilities.assets,
            unit_exponents=self.liabilities.unit_exponents,
            leaf_count=self.tree.leaf_count,
            customer_id=self.liabilities.customer_ids[row],
            salt=self.salts[32 * row : 32 * row + 32],
            balances=tuple(int(b) for b in self.liabilities.balances[row]),
            leaf_index=pos,
            path=self.tree.path(pos),
        )

    def binary_proof_blocks(self, chunk: int = 8192) -> Iterator[tuple[list[str], U8Array]]:
        """All proofs in leaf order, as blocks of framed binary proofs.

        Each block is ``(customer ids, records)`` where row ``i`` of the ``(k, 4 + L)``
        byte matrix is ``u32 L || binary proof`` of customer ``i``: exactly the records
        of a ``proofs.bin`` file. Proofs in a block share a length (customers are
        grouped by id length), so each block is built with a handful of numpy
        gathers and no per-proof Python objects; this is how a million proofs are
        produced in seconds. Byte-identical to ``proof(row).to_binary()``.
        """
        tree, snap = self.tree, self.snapshot
        header = binary_header(
            snap.version,
            snap.snapshot_id,
            tree.root_hash,
            snap.assets,
            snap.unit_exponents,
            tree.leaf_count,
        )
        salts = np.frombuffer(self.salts, dtype=np.uint8).reshape(-1, enc.SALT_LEN)
        ids = self.liabilities.customer_ids
        depth = enc.u8(tree.depth)
        for start in range(0, tree.leaf_count, chunk):
            positions = np.arange(start, min(start + chunk, tree.leaf_count), dtype=np.int64)
            rows = tree.order[positions]
            raw = [ids[r].encode("utf-8") for r in rows.tolist()]
            lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
            paths = tree.path_block(positions)
            for length, sel, id_rows in group_by_length(raw, lengths):
                picked = rows[sel]
                size = len(header) + 2 + length + 32 + 8 * len(snap.assets) + 9 + paths.shape[1]
                records = np.empty((len(sel), 4 + size), dtype=np.uint8)
                fill_columns(
                    records,
                    [
                        size.to_bytes(4, "big"),
                        header,
                        enc.u16(length),
                        id_rows,
                        salts[picked],
                        sums_to_be_bytes(self.liabilities.balances[picked]),
                        positions[sel].astype(">u8").view(np.uint8).reshape(-1, 8),
                        depth,
                        paths[sel],
                    ],
                )
                yield [ids[r] for r in picked.tolist()], records

    def binary_proofs(self, chunk: int = 8192) -> Iterator[tuple[str, bytes]]:
        """``(customer_id, binary proof)`` for every customer (unframed; see above)."""
        for block_ids, records in self.binary_proof_blocks(chunk):
            for cid, record in zip(block_ids, records, strict=True):
                yield cid, record[4:].tobytes()


@dataclass(frozen=True, slots=True, eq=False)
class PreparedSnapshot:
    """The tree and the challenge that names it: phase one of building a snapshot.

    Custody keys sign :attr:`challenge` in between the phases; threshold keys do so
    through the signing service, which may take a while and may fail, so the
    caller collects the signatures and hands them to :func:`sign_snapshot`.
    """

    snapshot_id: str
    cutoff: str
    created_at: str
    liabilities: Liabilities
    tree: MerkleSumTree
    challenge_preimage: bytes
    salts: bytes = field(repr=False)

    @property
    def challenge(self) -> bytes:
        """``SHA-256(challenge_preimage)``: the 32 bytes every custody key signs."""
        return enc.sha256(self.challenge_preimage)

    def custody_entry(
        self,
        *,
        key_id: str,
        scheme: str,
        public_key: bytes,
        signature: bytes,
        balances: Mapping[str, int],
        address: str | None = None,
    ) -> CustodyEntry:
        """A custody entry over this snapshot's assets (missing assets are zero).

        ``balances`` are exact minor amounts (what the chain shows); the entry lists
        them and, rounded **down** to each asset's unit, the PoR balances.
        """
        liab = self.liabilities
        unknown = set(balances) - set(liab.assets)
        if unknown:
            raise _input_error(ReasonCode.UNKNOWN_ASSET, f"{key_id}: {sorted(unknown)}")
        where = f"custody key {key_id}"
        minor = tuple(check_amount(balances.get(a, 0), where) for a in liab.assets)
        return CustodyEntry(
            key_id=key_id,
            scheme=scheme,
            public_key=public_key,
            address=address,
            balances=tuple(
                to_units(m, a, e, where, round_up=False)
                for m, a, e in zip(minor, liab.assets, liab.unit_exponents, strict=True)
            ),
            minor_balances=minor,
            signature=signature,
        )


def prepare_snapshot(
    liabilities: Liabilities,
    *,
    snapshot_id: str,
    cutoff: str,
    created_at: str,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> PreparedSnapshot:
    """Draw the salts, build the tree and compute the challenge (``docs/por-format.md`` 3-4).

    ``random_bytes`` is the salt source; tests inject a deterministic one to
    reproduce the documented worked example.
    """
    if not f.ID_RE.fullmatch(snapshot_id):
        raise _input_error(ReasonCode.MALFORMED, f"bad snapshot id {snapshot_id!r}")
    for stamp in (cutoff, created_at):
        if not f.TIME_RE.fullmatch(stamp):
            raise _input_error(ReasonCode.MALFORMED, f"timestamp {stamp!r}: YYYY-MM-DDTHH:MM:SSZ")
    n = len(liabilities.customer_ids)
    salts = random_bytes(32 * n)
    tree = build_tree(
        liabilities.assets, customer_hashes(liabilities.customer_ids, salts), liabilities.balances
    )
    preimage = challenge_preimage(
        snapshot_id=snapshot_id,
        cutoff=cutoff,
        root_hash=tree.root_hash,
        leaf_count=tree.leaf_count,
        assets=liabilities.assets,
        liabilities=tree.root_sums,
    )
    return PreparedSnapshot(
        snapshot_id=snapshot_id,
        cutoff=cutoff,
        created_at=created_at,
        liabilities=liabilities,
        tree=tree,
        challenge_preimage=preimage,
        salts=salts,
    )


def sign_snapshot(
    prepared: PreparedSnapshot, custody: Sequence[CustodyEntry], service: ServiceSigner
) -> BuiltSnapshot:
    """Phase two: add the custody entries and reserves, and sign with the service key (5)."""
    assets = prepared.liabilities.assets
    if any(len(e.balances) != len(assets) for e in custody):
        raise _input_error(ReasonCode.MALFORMED, "custody balances do not match the asset list")
    tree = prepared.tree
    unsigned = Snapshot(
        version=enc.FORMAT_VERSION,
        snapshot_id=prepared.snapshot_id,
        cutoff=prepared.cutoff,
        created_at=prepared.created_at,
        assets=assets,
        unit_exponents=prepared.liabilities.unit_exponents,
        leaf_count=tree.leaf_count,
        root_hash=tree.root_hash,
        liabilities=tree.root_sums,
        challenge=prepared.challenge,
        custody=tuple(custody),
        reserves=tuple(sum(e.balances[i] for e in custody) for i in range(len(assets))),
        service_public_key=service.public_key,
        service_signature=bytes(64),
    )
    signature = service.sign(signing_message(unsigned.unsigned_json()))
    snapshot = Snapshot(**{**_fields(unsigned), "service_signature": signature})
    return BuiltSnapshot(
        snapshot=snapshot,
        raw=snapshot.to_json(),
        liabilities=prepared.liabilities,
        tree=tree,
        salts=prepared.salts,
    )


def build_snapshot(
    liabilities: Liabilities,
    *,
    snapshot_id: str,
    cutoff: str,
    created_at: str,
    service: ServiceSigner,
    custody: Sequence[CustodySigner] = (),
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> BuiltSnapshot:
    """Build the tree, collect proof-of-control signatures, and sign the snapshot."""
    prepared = prepare_snapshot(
        liabilities,
        snapshot_id=snapshot_id,
        cutoff=cutoff,
        created_at=created_at,
        random_bytes=random_bytes,
    )
    entries = [
        prepared.custody_entry(
            key_id=signer.key_id,
            scheme=signer.scheme,
            public_key=signer.public_key,
            signature=signer.sign(prepared.challenge),
            balances=signer.balances,
            address=signer.address,
        )
        for signer in custody
    ]
    return sign_snapshot(prepared, entries, service)


def _fields(snapshot: Snapshot) -> dict[str, Any]:
    return {name: getattr(snapshot, name) for name in Snapshot.__slots__}


def proof_filename(customer_id: str) -> str:
    """File name of a customer's proof: ``<id>.json`` when that is a safe name, else ``x<hex>``.

    Safe: at most 100 characters of ``[A-Za-z0-9._-]``, not starting with ``.`` or ``x``
    (so the hex form cannot collide with a plain id). The hex form is the id's UTF-8.
    """
    if _SAFE_NAME.fullmatch(customer_id):
        return customer_id + ".json"
    return "x" + customer_id.encode("utf-8").hex() + ".json"


def write_outputs(built: BuiltSnapshot, out_dir: str | Path, *, layout: str = "files") -> Path:
    """Write ``snapshot.json`` and the proofs, all or nothing.

    Layout ``files``: ``proofs/<customer>.json``, one per customer (what customers
    receive). Layout ``jsonl``: one ``proofs.jsonl`` line per customer, for bulk runs.
    Layout ``bin``: ``proofs.bin``, each binary proof as ``u32 length || bytes``.
    Everything is written into a temporary sibling directory renamed into place
    at the end, so a crash never leaves a half-written output.
    """
    out = Path(out_dir)
    if out.exists():
        raise _input_error(ReasonCode.IO, f"{out} exists; refusing to overwrite")
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        _write_into(built, tmp, layout)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.rename(tmp, out)
    return out


def _write_into(built: BuiltSnapshot, tmp: Path, layout: str) -> None:
    (tmp / "snapshot.json").write_bytes(canonical_json(built.raw) + b"\n")
    if layout == "files":
        (tmp / "proofs").mkdir()
        for row, cid in enumerate(built.liabilities.customer_ids):
            (tmp / "proofs" / proof_filename(cid)).write_bytes(
                canonical_json(built.proof(row).to_json()) + b"\n"
            )
    elif layout == "jsonl":
        with open(tmp / "proofs.jsonl", "wb") as fh:
            for row in range(len(built.liabilities.customer_ids)):
                fh.write(canonical_json(built.proof(row).to_json()) + b"\n")
    elif layout == "bin":
        with open(tmp / "proofs.bin", "wb") as fh:
            for _, records in built.binary_proof_blocks():
                fh.write(records.tobytes())
    else:
        raise _input_error(ReasonCode.MALFORMED, f"unknown layout {layout!r}")
