"""Proof-of-Reserves benchmark: build the tree and every proof, verify single proofs.

``python -m bench.por --customers 1000000 --assets 3 [--json] [--out FILE]``

Target (issue "Proof of Reserves"): 1,000,000 customers x 3 assets, tree and all
proofs in <= 10 s and <= 2 GiB peak RSS on a 2-core machine; one proof verified
in <= 1 ms; report the proof size. Proofs are produced in their binary form
(``docs/por-format.md``, "Binary proof") by :meth:`BuiltSnapshot.binary_proofs`;
``--out`` also writes them to a ``u32 length || proof`` file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
from typing import Any

import numpy as np

from proofs.build import BuiltSnapshot, Liabilities, ServiceSigner, build_snapshot, software_signer
from proofs.inclusion import InclusionProof, verify_inclusion
from proofs.snapshot import canonical_json
from proofs.verifier import parse_json


def make_liabilities(customers: int, assets: int, seed: int) -> Liabilities:
    """Synthetic ledger: ids ``cust-0000001``..., balances uniform in ``[0, 2^40)``."""
    rng = np.random.default_rng(seed)
    names = tuple(f"A{j:02d}" for j in range(assets))
    balances = rng.integers(0, 1 << 40, size=(customers, assets), dtype=np.uint64)
    ids = tuple(f"cust-{i:07d}" for i in range(customers))
    return Liabilities(customer_ids=ids, assets=names, balances=balances)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _verify_times(built: BuiltSnapshot, samples: int, seed: int) -> dict[str, Any]:
    snap = built.snapshot
    rng = random.Random(seed)
    rows = [rng.randrange(len(built.liabilities.customer_ids)) for _ in range(samples)]
    proofs = [built.proof(r) for r in rows]
    binaries = [p.to_binary() for p in proofs]
    texts = [canonical_json(p.to_json()) for p in proofs]
    t_obj, t_bin, t_json = [], [], []
    for proof, blob, text in zip(proofs, binaries, texts, strict=True):
        t0 = time.perf_counter()
        verify_inclusion(proof, snap)
        t1 = time.perf_counter()
        verify_inclusion(InclusionProof.from_binary(blob), snap)
        t2 = time.perf_counter()
        verify_inclusion(InclusionProof.from_json(parse_json(text)), snap)
        t3 = time.perf_counter()
        t_obj.append(t1 - t0)
        t_bin.append(t2 - t1)
        t_json.append(t3 - t2)
    return {
        "verify_samples": samples,
        "verify_median_ms": round(statistics.median(t_obj) * 1e3, 4),
        "verify_from_binary_median_ms": round(statistics.median(t_bin) * 1e3, 4),
        "verify_from_json_median_ms": round(statistics.median(t_json) * 1e3, 4),
        "verify_max_ms": round(max(t_json) * 1e3, 4),
        "proof_bytes_binary": len(binaries[0]),
        "proof_bytes_json": len(texts[0]),
    }


def run(customers: int, assets: int, *, seed: int, samples: int, out: str | None) -> dict[str, Any]:
    liabilities = make_liabilities(customers, assets, seed)
    rss_inputs = _peak_rss_mib()
    service = ServiceSigner.from_seed(bytes(32))
    custody = [
        software_signer(
            "bench-key", "schnorr-bip340", bytes(31) + b"\x01", dict.fromkeys(liabilities.assets, 0)
        )
    ]
    t0 = time.perf_counter()
    built = build_snapshot(
        liabilities,
        snapshot_id="bench",
        cutoff="2024-06-30T00:00:00Z",
        created_at="2024-06-30T00:00:00Z",
        service=service,
        custody=custody,
    )
    t1 = time.perf_counter()
    count = total = 0
    sink = open(out, "wb") if out else None  # noqa: SIM115 - optional sink spans the loop
    try:
        for ids, records in built.binary_proof_blocks():
            count += len(ids)
            total += records.size - 4 * len(ids)  # proof bytes, without the u32 framing
            if sink is not None:
                sink.write(records.tobytes())
    finally:
        if sink is not None:
            sink.close()
    t2 = time.perf_counter()
    assert count == customers
    result: dict[str, Any] = {
        "customers": customers,
        "assets": assets,
        "tree_depth": built.tree.depth,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "tree_and_snapshot_seconds": round(t1 - t0, 3),
        "all_proofs_seconds": round(t2 - t1, 3),
        "build_seconds": round(t2 - t0, 3),
        "all_proofs_bytes": total,
        "peak_rss_mib_inputs": round(rss_inputs, 1),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "root_hash": built.snapshot.root_hash.hex(),
    }
    result.update(_verify_times(built, samples, seed))
    result["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    result["target_build_10s"] = result["build_seconds"] <= 10
    result["target_rss_2gib"] = result["peak_rss_mib"] <= 2048
    result["target_verify_1ms"] = result["verify_from_json_median_ms"] <= 1
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.por", description=__doc__.split("\n")[0])
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--assets", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--samples", type=int, default=2000, help="proofs verified for the median")
    p.add_argument("--out", help="also write all binary proofs to this file")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = run(args.customers, args.assets, seed=args.seed, samples=args.samples, out=args.out)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
