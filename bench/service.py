"""Service benchmark through the real API: node processes, mTLS gRPC, databases.

    python -m bench.service --nodes 3 -t 2 --scheme eddsa-ed25519 --requests 200 --concurrency 4 [--json]

Starts a fresh cluster in a temp dir, creates a key, then measures signature
requests end to end (client -> coordinator -> t nodes -> aggregate -> stored)
twice: with warm nonce pools (refilled in the background) and with the pools
drained before every request (each request then waits for round one).
Every signature is verified by an independent library.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from coincurve import PublicKey, PublicKeyXOnly
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from custody.client import CustodyClient
from custody.cluster import Cluster
from custody.config import ClusterConfig
from custody.coordinator.store import CoordinatorStore, PoolNonceRow, PresignatureRow
from custody.init import init_cluster


def _verify(scheme: str, pk: bytes, msg: bytes, sig: bytes) -> None:
    if scheme == "ecdsa-secp256k1":
        if not PublicKey(pk).verify(cdata_to_der(deserialize_compact(sig)), msg, hasher=None):
            raise SystemExit("invalid signature")
    elif scheme == "eddsa-ed25519":
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
    elif not PublicKeyXOnly(pk).verify(sig, msg):
        raise SystemExit("invalid signature")


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "mean": round(statistics.fmean(ordered), 2),
    }


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU time of each process so far (Linux /proc): what a request costs
    each process, independent of what else the machine is running."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _phase_totals(metrics_url: str) -> dict[str, tuple[float, float]]:
    """(sum of seconds, count) of each signing phase so far (custody_signing_phase_seconds)."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    out: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "custody_signing_phase_seconds":
            continue
        for sample in family.samples:
            name = sample.labels.get("phase", "")
            total, count = out.get(name, (0.0, 0.0))
            if sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
            out[name] = (total, count)
    return out


def _run(
    client: CustodyClient,
    scheme: str,
    key: Any,
    requests: int,
    concurrency: int,
    pids: dict[str, int],
    metrics_url: str,
    before: Any = None,
) -> dict[str, Any]:
    def one(i: int) -> float:
        if before is not None:
            before()
        msg = f"bench {i} {uuid.uuid4().hex}".encode()
        start = time.perf_counter()
        result = client.sign(key.key_id, message=msg)
        elapsed = (time.perf_counter() - start) * 1000
        # Every key signs a message's domain-separated digest (policy/payloads/messages.py).
        _verify(scheme, result.public_key, result.signed_digest, result.signature)
        return elapsed

    cpu_before = _cpu_seconds(pids)
    phases_before = _phase_totals(metrics_url)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    cpu_after = _cpu_seconds(pids)
    phases_after = _phase_totals(metrics_url)
    phase_ms = {}
    for name, (total, _count) in phases_after.items():
        spent = total - phases_before.get(name, (0.0, 0.0))[0]
        phase_ms[name] = round(spent * 1000 / requests, 2)
    return {
        "latency_ms": _percentiles(latencies),
        "throughput_per_s": round(requests / wall, 1),
        "requests": requests,
        "cpu_ms_per_request": {
            name: round((cpu_after[name] - cpu_before[name]) * 1000 / requests, 2) for name in pids
        },
        # Coordinator wall time per request in each signing phase (where latency goes).
        "phase_ms_per_request": phase_ms,
    }


def _wait_for_presignatures(
    store: CoordinatorStore, key_id: str, nodes: int, t: int, requests: int
) -> None:
    """Block until every signer set's presignature pool holds ``requests`` entries."""
    sets = min(10, math.comb(nodes, t))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        levels = store.presignature_levels(key_id)
        if len(levels) >= sets and min(levels.values()) >= requests + 10:
            return
        time.sleep(0.5)
    raise SystemExit("presignature pools did not fill within 10 minutes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("-t", type=int, default=2)
    parser.add_argument(
        "--scheme",
        default="eddsa-ed25519",
        choices=["eddsa-ed25519", "schnorr-bip340", "ecdsa-secp256k1"],
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="custody-bench-")) / "data"
    config = init_cluster(root, args.nodes, args.t)
    raw = json.loads((root / "custody.json").read_text())
    raw["nonce_pool_target"] = max(32, 2 * args.concurrency + 8)
    # Enough presignatures per signer set that the warm run never waits for presigning.
    raw["presignature_pool_target"] = args.requests + 10
    metrics_port = _free_port()
    raw["coordinator"]["metrics_address"] = f"127.0.0.1:{metrics_port}"
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    (root / "custody.json").write_text(json.dumps(raw))
    config = ClusterConfig.load(root)
    with Cluster(config), CustodyClient.from_data_dir(root) as client:
        key = client.create_key(args.scheme)
        store = CoordinatorStore(config.coordinator_database_url())
        if args.scheme == "ecdsa-secp256k1":
            _wait_for_presignatures(store, key.key_id, args.nodes, args.t, args.requests)
        for i in range(10):  # warm-up
            client.sign(key.key_id, message=b"warm-up %d" % i)
        pids = {
            p["name"]: int(p["pid"])
            for p in json.loads((root / "cluster.json").read_text())["processes"]
        }
        warm = _run(client, args.scheme, key, args.requests, args.concurrency, pids, metrics_url)

        def drain() -> None:
            with store.transaction() as s:
                for table in (PoolNonceRow, PresignatureRow):
                    s.execute(
                        update(table)
                        .where(table.key_id == key.key_id, table.state == "unused")
                        .values(state="used")
                    )

        cold = _run(
            client,
            args.scheme,
            key,
            max(20, args.requests // 5),
            1,
            pids,
            metrics_url,
            before=drain,
        )
    result = {
        "scheme": args.scheme,
        "nodes": args.nodes,
        "t": args.t,
        "concurrency": args.concurrency,
        "database": config.coordinator_database_url().split(":", 1)[0],
        "warm_pools": warm,
        "empty_pools": cold,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name in ("warm_pools", "empty_pools"):
            r = result[name]
            assert isinstance(r, dict)
            lat = r["latency_ms"]
            print(
                f"{name:<12} p50 {lat['p50']:>7} ms  p95 {lat['p95']:>7} ms  p99 {lat['p99']:>7} ms  throughput {r['throughput_per_s']}/s ({r['requests']} requests)"
            )
            cpu = ", ".join(f"{k} {v} ms" for k, v in r["cpu_ms_per_request"].items())
            print(f"{'':<12} CPU per request: {cpu}")
            order = ("intake", "governance", "reserve", "reports", "shares", "combine", "record")
            phases = r["phase_ms_per_request"]
            wall = ", ".join(
                f"{k} {phases[k]} ms"
                for k in (*order, *sorted(set(phases) - set(order)))
                if k in phases
            )
            print(f"{'':<12} coordinator wall time per request: {wall}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
