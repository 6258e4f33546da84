"""Policy evaluation benchmark.

``python -m bench.policy --rules 100 [--history 10000] [--iterations 20000] [--json]``

Target (issue "Policy engine"): at most 50 microseconds per decision with 100 rules.
Two scenarios are timed with :func:`policy.evaluate.evaluate` on a compiled policy:

* ``mixed``: 100 rules over 10 tenants, 20 initiators, 8 assets and 4 chains with amount
  ranges, whitelists, time windows and velocity limits; random requests.
* ``adversarial``: every rule is a candidate for the request (no static field narrows
  them), each has an amount range and a velocity limit, and only the last rule matches;
  so every decision checks all 100 rules' residual conditions, including ~50 velocity
  window queries over the history.

Both run against a history of ``--history`` entries (window queries are O(log n)).
``authorize_us`` additionally times the full node gate (initiator Ed25519 signature
verification included), for information; it is not what the target is about.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy._codec import public_bytes
from policy.authorize import Authorization, authorize
from policy.evaluate import Policy, evaluate
from policy.governance import document_hash, genesis
from policy.history import History, HistoryEntry
from policy.request import RequestType, SigningRequest, sign_request

NOW = 1_718_000_000
TENANTS = [f"tenant-{i}" for i in range(10)]
ASSETS = ["BTC", "ETH", "USDC", "USDT", "SOL", "DOT", "MATIC", "DAI"]
CHAINS = ["bitcoin", "ethereum", "polygon", "solana"]


def _key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def _initiators() -> dict[str, Any]:
    return {
        f"ini-{i}": {"tenant": TENANTS[i % 10], "public_key": public_bytes(_key(f"ini-{i}")).hex()}
        for i in range(20)
    }


def _base(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": "custody-policy/v1",
        "name": "bench",
        "officers": {"quorum": 1, "members": {"o": {"public_key": public_bytes(_key("o")).hex()}}},
        "initiators": _initiators(),
        "approvers": {
            f"ap-{i}": {"public_key": public_bytes(_key(f"ap-{i}")).hex()} for i in range(6)
        },
        "approver_groups": {"g": {"members": [f"ap-{i}" for i in range(6)], "quorum": 3}},
        "key_groups": {"hot": [f"key-{i}" for i in range(0, 50, 2)]},
        "whitelists": {
            c: {"chain": c, "addresses": [f"addr-{c}-{j}" for j in range(200)]} for c in CHAINS
        },
        "rules": rules,
    }


def mixed_document(n_rules: int, rng: random.Random) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    for i in range(n_rules - 1):
        asset = rng.choice(ASSETS)
        match: dict[str, Any] = {"tenants": [rng.choice(TENANTS)], "assets": [asset]}
        if rng.random() < 0.5:
            match["request_types"] = rng.sample([t.value for t in RequestType], 2)
        if rng.random() < 0.3:
            match["key_groups"] = ["hot"]
        if rng.random() < 0.3:
            match["destination"] = {"whitelists": [rng.choice(CHAINS)]}
        if rng.random() < 0.5:
            match["amount"] = {"max": str(rng.randrange(10**3, 10**9))}
        if rng.random() < 0.4:
            match["velocity"] = {
                "scope": rng.choice(["key", "initiator", "tenant"]),
                "window_seconds": rng.choice([3600, 86400]),
                "max_amount": str(rng.randrange(10**6, 10**10)),
            }
        if rng.random() < 0.2:
            match["time_of_day"] = {"start": "08:00", "end": "20:00"}
        action: Any = rng.choice(["allow", "block", {"require_approval": {"group": "g"}}])
        rules.append({"id": f"rule-{i}", "match": match, "action": action})
    rules.append({"id": "catch-all", "match": {}, "action": "block"})
    return _base(rules)


def adversarial_document(n_rules: int) -> dict[str, Any]:
    rules = []
    for i in range(n_rules - 1):
        match: dict[str, Any] = {"assets": ["ETH"], "amount": {"min": str(10**12 + i)}}
        if i % 2 == 0:
            # velocity first exceeded, so the query runs and the rule is skipped
            match = {
                "assets": ["ETH"],
                "velocity": {"scope": "tenant", "window_seconds": 3600 + i, "max_amount": "1"},
            }
        rules.append({"id": f"rule-{i}", "match": match, "action": "allow"})
    rules.append({"id": "last", "match": {}, "action": "allow"})
    return _base(rules)


def make_history(n: int, rng: random.Random) -> History:
    def entry(i: int) -> HistoryEntry:
        ini = rng.randrange(20)
        return HistoryEntry(
            request_id=f"h-{i}",
            request_digest=hashlib.sha256(str(i).encode()).digest(),
            key_id=f"key-{rng.randrange(50)}",
            initiator=f"ini-{ini}",
            tenant=TENANTS[ini % 10],
            asset=rng.choice(ASSETS),
            amount=rng.randrange(1, 10**6),
            timestamp=NOW - rng.randrange(0, 2 * 86400),
        )

    return History(entry(i) for i in range(n))


def make_requests(n: int, rng: random.Random, asset: str | None = None) -> list[SigningRequest]:
    out = []
    for i in range(n):
        ini = rng.randrange(20)
        chain = rng.choice(CHAINS)
        out.append(
            SigningRequest(
                request_id=f"req-{i}",
                tenant=TENANTS[ini % 10],
                initiator=f"ini-{ini}",
                key_id=f"key-{rng.randrange(50)}",
                request_type=rng.choice(list(RequestType)),
                chain=chain,
                asset=asset or rng.choice(ASSETS),
                destination=f"addr-{chain}-{rng.randrange(400)}",
                amount=rng.randrange(1, 10**9),
                payload=b"\x00" * 200,
                created_at=NOW - 10,
            )
        )
    return out


def _time(
    fn: Callable[[SigningRequest], object], requests: list[SigningRequest], iterations: int
) -> list[float]:
    samples = []
    gc.disable()  # as timeit does: time the evaluation, not a collector pause
    try:
        for k in range(iterations):
            r = requests[k % len(requests)]
            t0 = time.perf_counter_ns()
            fn(r)
            samples.append((time.perf_counter_ns() - t0) / 1000)
    finally:
        gc.enable()
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "median_us": round(statistics.median(samples), 2),
        "p99_us": round(samples[int(len(samples) * 0.99) - 1], 2),
        "mean_us": round(statistics.fmean(samples), 2),
    }


def run(n_rules: int, history_size: int, iterations: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    history = make_history(history_size, rng)
    result: dict[str, Any] = {"rules": n_rules, "history": history_size, "iterations": iterations}
    mixed_doc = json.dumps(mixed_document(n_rules, rng)).encode()
    mixed = Policy.from_bytes(mixed_doc)
    requests = make_requests(2000, rng)
    for r in requests[:50]:  # warm-up
        evaluate(mixed, r, history, NOW)
    result["mixed"] = _summary(
        _time(lambda r: evaluate(mixed, r, history, NOW), requests, iterations)
    )
    adv = Policy.from_bytes(json.dumps(adversarial_document(n_rules)).encode())
    eth = make_requests(2000, rng, asset="ETH")
    for r in eth:
        if evaluate(adv, r, history, NOW).rule_id != "last":
            raise AssertionError("adversarial scenario must reach the last rule")
    result["adversarial"] = _summary(
        _time(lambda r: evaluate(adv, r, history, NOW), eth, iterations)
    )
    state = genesis(mixed_doc, expected_document_hash=document_hash(mixed_doc))
    signatures = {r.request_id: sign_request(_key(r.initiator), r.initiator, r) for r in requests}

    def gate(r: SigningRequest) -> object:
        out = authorize(
            state,
            request=r,
            initiator_signature=signatures[r.request_id],
            approvals=(),
            policy_version_id=state.version_id,
            key_tenant=r.tenant,
            history=history,
            now=NOW,
        )
        return isinstance(out, Authorization)

    result["authorize_us"] = _summary(_time(gate, requests, max(1000, iterations // 10)))
    result["target_us"] = 50
    result["meets_target"] = (
        result["mixed"]["p99_us"] <= 50 and result["adversarial"]["median_us"] <= 50
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rules", type=int, default=100)
    p.add_argument("--history", type=int, default=10_000)
    p.add_argument("--iterations", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not 1 <= args.rules <= 10_000:
        p.error("--rules must be in [1, 10000]")
    result = run(args.rules, args.history, args.iterations, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name in ("mixed", "adversarial", "authorize_us"):
            s = result[name]
            print(f"{name:12s} median {s['median_us']:8.2f} us   p99 {s['p99_us']:8.2f} us")
        print(f"target <= 50 us per decision with {args.rules} rules: {result['meets_target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
