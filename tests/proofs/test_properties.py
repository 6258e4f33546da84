"""Property tests over random trees: sizes 1..n incl. non-powers of two, balances at the limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from proofs import encoding as enc
from proofs.build import Liabilities
from proofs.errors import PorError
from proofs.inclusion import InclusionProof, PathNode, recompute_root, verify_inclusion
from proofs.tree import build_tree, customer_hashes
from tests.proofs.helpers import build, roundtrip

U64 = 2**64


@dataclass(frozen=True, kw_only=True)
class Published:
    """The published values a proof is checked against (``proofs.inclusion.PublishedTree``)."""

    version: int
    snapshot_id: str
    root_hash: bytes
    assets: tuple[str, ...]
    unit_exponents: tuple[int, ...]
    leaf_count: int
    liabilities: tuple[int, ...]


balance = st.one_of(st.sampled_from([0, 1, U64 - 1]), st.integers(0, U64 - 1), st.integers(0, 1000))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tables(draw: Any, max_customers: int = 40) -> tuple[list[str], list[list[int]], int]:
    """Random liabilities whose column sums fit in u64 (scaled down if needed)."""
    n = draw(st.integers(1, max_customers))
    k = draw(st.integers(1, 3))
    ids = draw(st.lists(st.text(min_size=1, max_size=12), min_size=n, max_size=n, unique=True))
    rows = [[draw(balance) for _ in range(k)] for _ in range(n)]
    for j in range(k):
        while sum(r[j] for r in rows) >= U64:
            big = max(range(n), key=lambda i: rows[i][j])
            rows[big][j] //= 2
    return ids, rows, k


def _proofs(ids: list[str], rows: list[list[int]], k: int, salts: bytes):
    assets = ("A0", "A1", "A2")[:k]
    bal = np.array(rows, dtype=np.uint64).reshape(len(ids), k)
    tree = build_tree(assets, customer_hashes(ids, salts), bal)
    out = []
    for r, cid in enumerate(ids):
        pos = int(tree.position[r])
        out.append(
            InclusionProof(
                snapshot_id="s",
                root_hash=tree.root_hash,
                assets=assets,
                unit_exponents=(0,) * k,
                leaf_count=len(ids),
                customer_id=cid,
                salt=salts[32 * r : 32 * r + 32],
                balances=tuple(rows[r]),
                leaf_index=pos,
                path=tree.path(pos),
            )
        )
    return tree, out


@SETTINGS
@given(tables(), st.binary(min_size=32, max_size=32))
def test_every_proof_verifies_and_sums_are_exact(table: Any, seed: bytes) -> None:
    ids, rows, k = table
    salts = (seed * len(ids))[: 32 * len(ids)]
    salts = bytes(b ^ (i % 251) for i, b in enumerate(salts))  # distinct salts per customer
    tree, proofs = _proofs(ids, rows, k, salts)
    totals = tuple(sum(r[j] for r in rows) for j in range(k))
    assert tree.root_sums == totals
    assert tree.depth == enc.tree_depth(len(ids)) == (len(ids) - 1).bit_length()
    positions = [p.leaf_index for p in proofs]
    assert sorted(positions) == list(range(len(ids)))
    leaf_hashes = [
        enc.leaf_hash(enc.customer_hash(p.customer_id, p.salt), p.balances) for p in proofs
    ]
    # Leaf order is ascending leaf hash (docs/por-format.md, "Tree").
    in_tree_order = [h for _, h in sorted(zip(positions, leaf_hashes, strict=True))]
    assert in_tree_order == sorted(leaf_hashes)
    published = Published(
        version=enc.FORMAT_VERSION,
        snapshot_id="s",
        root_hash=tree.root_hash,
        assets=proofs[0].assets,
        unit_exponents=(0,) * k,
        leaf_count=len(ids),
        liabilities=totals,
    )
    for p in proofs:
        verify_inclusion(p, published)
        assert InclusionProof.from_binary(p.to_binary()) == p
        assert InclusionProof.from_json(roundtrip(p.to_json())) == p


@SETTINGS
@given(tables(max_customers=20), st.data())
def test_any_single_change_to_a_proof_is_rejected(table: Any, data: st.DataObject) -> None:
    ids, rows, k = table
    salts = bytes(range(32)) * len(ids)
    salts = bytes(b ^ (i // 32 % 256) for i, b in enumerate(salts))
    tree, proofs = _proofs(ids, rows, k, salts)
    p = data.draw(st.sampled_from(proofs))
    choices = ["balance", "salt", "id", "index"]
    if p.path:
        choices += ["sib_hash", "sib_sum"]
    what = data.draw(st.sampled_from(choices))
    if what == "balance":
        j = data.draw(st.integers(0, k - 1))
        new = data.draw(balance.filter(lambda v: v != p.balances[j]))
        changed = _replace(p, balances=(*p.balances[:j], new, *p.balances[j + 1 :]))
    elif what == "salt":
        changed = _replace(
            p, salt=data.draw(st.binary(min_size=32, max_size=32).filter(lambda s: s != p.salt))
        )
    elif what == "id":
        changed = _replace(
            p, customer_id=data.draw(st.text(min_size=1).filter(lambda s: s != p.customer_id))
        )
    elif what == "index":
        assume(len(ids) > 1)
        changed = _replace(
            p,
            leaf_index=data.draw(st.integers(0, len(ids) - 1).filter(lambda i: i != p.leaf_index)),
        )
    else:
        lvl = data.draw(st.integers(0, len(p.path) - 1))
        sib = p.path[lvl]
        if what == "sib_hash":
            node = PathNode(
                hash=data.draw(st.binary(min_size=32, max_size=32).filter(lambda h: h != sib.hash)),
                sums=sib.sums,
            )
        else:
            j = data.draw(st.integers(0, k - 1))
            new = data.draw(balance.filter(lambda v: v != sib.sums[j]))
            node = PathNode(hash=sib.hash, sums=(*sib.sums[:j], new, *sib.sums[j + 1 :]))
        changed = _replace(p, path=(*p.path[:lvl], node, *p.path[lvl + 1 :]))
    totals = tree.root_sums
    try:
        root, sums = recompute_root(changed)
    except PorError:
        return  # rejected with a reason (padding, overflow, range)
    assert (root, sums) != (tree.root_hash, totals)


def _replace(p: InclusionProof, **kw: Any) -> InclusionProof:
    fields = {name: getattr(p, name) for name in InclusionProof.__slots__}
    fields.update(kw)
    return InclusionProof(**fields)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 70))
def test_built_snapshot_proofs_match_binary_bulk_path(n: int) -> None:
    rows = {f"c{i}": {"BTC": i, "ETH": U64 // (n + 1)} for i in range(n)}
    built = build(rows, custody=[])
    bulk = dict(built.binary_proofs(chunk=7))
    for r, cid in enumerate(built.liabilities.customer_ids):
        assert bulk[cid] == built.proof(r).to_binary()


def test_liability_table_from_mapping_fills_missing_assets_with_zero() -> None:
    table = Liabilities.from_mapping({"a": {"BTC": 1}, "b": {"ETH": 2}})
    assert table.assets == ("BTC", "ETH")
    assert table.balances.tolist() == [[1, 0], [0, 2]]
