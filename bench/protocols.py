"""Protocol benchmarks: all parties in one process, on one thread.

    python -m bench.protocols --scheme frost-ed25519 -t 2 -n 3 --runs 50 [--json]

``dkg_ms``: one full DKG. ``sign_ms``: one full signing protocol through the
simulated network (round 1 commitments, signing package, shares, aggregation
with the final verification). ``online_ms``: what remains when round 1 is done
ahead (nonces from a pool): the signers' round 2 and the aggregation.
Signing rotates over every t-subset with a fresh random message; every
signature is verified by an independent library outside the timed section.
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import sys
from collections.abc import Callable
from typing import Any

from coincurve import PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.dkls23_protocols import bench_dkls23
from bench.timing import stats, timed
from signer_nodes.mpc.dkg import DkgOutput, DkgParty
from signer_nodes.mpc.frost import (
    FROST_BIP340,
    FROST_ED25519,
    FROST_SECP256K1,
    Ciphersuite,
    SigningPackage,
    aggregate,
    commit,
    sign,
)
from signer_nodes.mpc.frost.session import COORDINATOR, FrostCoordinator, FrostSigner
from signer_nodes.mpc.session import RoundBasedParty
from signer_nodes.mpc.simulation import run_protocol

FROST_SCHEMES: dict[str, Ciphersuite] = {
    "frost-ed25519": FROST_ED25519,
    "frost-secp256k1": FROST_SECP256K1,
    "frost-bip340": FROST_BIP340,
}


def _independent_verify(suite: Ciphersuite, pk: bytes, msg: bytes, sig: bytes) -> None:
    if suite is FROST_ED25519:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
    elif suite is FROST_BIP340:
        if not PublicKeyXOnly(pk).verify(sig, msg):
            raise SystemExit("benchmark produced an invalid BIP340 signature")
    elif not suite.verify(suite.group.deserialize_element(pk), msg, sig):
        raise SystemExit("benchmark produced an invalid signature")


def bench_frost(scheme: str, t: int, n: int, runs: int, warmup: int) -> dict[str, Any]:
    suite = FROST_SCHEMES[scheme]
    ids = list(range(1, n + 1))

    def dkg() -> dict[int, DkgOutput]:
        sid = secrets.token_bytes(32)
        res = run_protocol({i: DkgParty(suite, sid, i, ids, t) for i in ids})
        if len(res.outputs) != n:
            raise SystemExit(f"DKG failed: {res.aborted or res.errors}")
        return res.outputs

    dkg_samples = []
    outputs: dict[int, DkgOutput] = {}
    for r in range(warmup + runs):
        ms, outputs = timed(dkg)
        if r >= warmup:
            dkg_samples.append(ms)
    keys = {i: o.key_package for i, o in outputs.items()}
    public = outputs[1].public_key_package
    pk_bytes = suite.serialize_public_key(public.group_public_key)

    subsets = itertools.cycle(itertools.combinations(ids, t))
    sign_samples, online_samples = [], []
    bytes_sent = 0
    message = signature = b""
    for r in range(warmup + runs):
        signers = next(subsets)
        message = secrets.token_bytes(32)
        sid = secrets.token_bytes(32)

        def full(
            signers: tuple[int, ...] = signers, message: bytes = message, sid: bytes = sid
        ) -> Any:
            parties: dict[int, RoundBasedParty] = {
                i: FrostSigner(suite, sid, keys[i], expected_message=message) for i in signers
            }
            parties[COORDINATOR] = FrostCoordinator(suite, sid, public, list(signers), message)
            return run_protocol(parties)

        ms, res = timed(full)
        signature = res.outputs[COORDINATOR]
        _independent_verify(suite, pk_bytes, message, signature)

        # Online: round 1 done ahead, as with a node's nonce pool.
        pre = {i: commit(suite, i, keys[i].signing_share) for i in signers}
        package = SigningPackage(tuple(pre[i][1] for i in signers), message)

        def online(package: SigningPackage = package, pre: dict[int, Any] = pre) -> bytes:
            shares = [sign(suite, package, pre[i][0], keys[i]) for i in package.participants]
            return aggregate(suite, package, shares, public)

        online_ms, online_sig = timed(online)
        _independent_verify(suite, pk_bytes, message, online_sig)
        if r >= warmup:
            sign_samples.append(ms)
            online_samples.append(online_ms)
            bytes_sent = res.bytes_sent
    return {
        "scheme": scheme,
        "t": t,
        "n": n,
        "runs": runs,
        "dkg_ms": stats(dkg_samples),
        "sign_ms": stats(sign_samples),
        "online_ms": stats(online_samples),
        "bytes_sent": bytes_sent,
        "public_key": pk_bytes.hex(),
        "message": message.hex(),
        "signature": signature.hex(),
    }


SCHEMES: dict[str, Callable[[str, int, int, int, int], dict[str, Any]]] = dict.fromkeys(
    FROST_SCHEMES, bench_frost
)
SCHEMES["ecdsa-dkls23"] = bench_dkls23


def _table(result: dict[str, Any]) -> str:
    lines = [f"{result['scheme']}  t={result['t']} n={result['n']}  runs={result['runs']}"]
    for key in ("dkg_ms", "presign_ms", "sign_ms", "online_ms"):
        if key in result:
            s = result[key]
            figures = f"median {s['median']:>9.3f}  min {s['min']:>9.3f}  max {s['max']:>9.3f}"
            lines.append(f"  {key:<11} {figures}")
    lines.append(f"  bytes_sent  {result['bytes_sent']} per signature")
    lines.append(f"  public_key  {result['public_key']}")
    lines.append(f"  signature   {result['signature']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.protocols", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scheme", required=True, choices=sorted(SCHEMES))
    parser.add_argument("-t", type=int, required=True, help="threshold")
    parser.add_argument("-n", type=int, required=True, help="number of parties")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.t <= args.n or args.runs < 1:
        parser.error("need 1 <= t <= n and runs >= 1")
    result = SCHEMES[args.scheme](args.scheme, args.t, args.n, args.runs, args.warmup)
    print(json.dumps(result) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
