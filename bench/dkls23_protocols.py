"""DKLs23 threshold ECDSA for ``python -m bench.protocols --scheme ecdsa-dkls23``.

All parties in one process, one thread, messages through the simulated
network with their byte encodings.

``dkg_ms``: one key generation (DKG + base OTs of every ordered pair + F_Zero
seeds; at most 10 samples, it is the slow part).  ``presign_ms``: one presign
session (Protocol 3.6 steps 5-9 and the echo round) among a t-subset.
``sign_ms``: a full signature: presign session plus the final-step session.
``online_ms``: the message-dependent step only: every signer's
``signature_share`` and one ``combine`` (which verifies the signature).
``bytes_sent``: payload bytes of presign plus final step, per signature.
Every signature is verified with coincurve outside the timed sections.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from typing import Any

from coincurve import PublicKey

from bench.timing import stats, timed
from signer_nodes.mpc.dkls23.keygen import KeygenParty
from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.dkls23.presign import Presignature, PresignParty
from signer_nodes.mpc.dkls23.sign import EcdsaSignature, SignParty, combine, signature_share
from signer_nodes.mpc.groups import SECP256K1
from signer_nodes.mpc.session import RoundBasedParty
from signer_nodes.mpc.simulation import SimulationResult, run_protocol


def _check(res: SimulationResult, expected: set[int], what: str) -> None:
    if res.errors or set(res.outputs) != expected:
        raise SystemExit(f"{what} failed: {res.aborted or res.errors}")


def _verify(pk: bytes, message_hash: bytes, sig: EcdsaSignature) -> None:
    if not PublicKey(pk).verify(sig.to_der(), message_hash, hasher=None):
        raise SystemExit("benchmark produced an invalid ECDSA signature")
    recovered = PublicKey.from_signature_and_message(sig.recoverable(), message_hash, hasher=None)
    if recovered.format() != pk:
        raise SystemExit("recovery id does not recover the public key")


def bench_dkls23(scheme: str, t: int, n: int, runs: int, warmup: int) -> dict[str, Any]:
    if t < 2:
        raise SystemExit("DKLs23 needs t >= 2")
    ids = list(range(1, n + 1))

    def keygen() -> dict[int, KeyShare]:
        sid = secrets.token_bytes(32)
        res = run_protocol({i: KeygenParty(sid, i, ids, t) for i in ids})
        _check(res, set(ids), "keygen")
        return dict(res.outputs)

    dkg_samples: list[float] = []
    shares: dict[int, KeyShare] = {}
    for r in range(min(warmup, 1) + min(runs, 10)):
        ms, shares = timed(keygen)
        if r >= min(warmup, 1):
            dkg_samples.append(ms)
    pk = SECP256K1.serialize_element(shares[1].group_public_key)

    subsets = itertools.cycle(itertools.combinations(ids, t))
    presign_samples, sign_samples, online_samples = [], [], []
    bytes_sent = 0
    message_hash = b""
    signature: EcdsaSignature | None = None
    for r in range(warmup + runs):
        signers = next(subsets)

        def presign(signers: tuple[int, ...] = signers) -> SimulationResult:
            sid = secrets.token_bytes(32)
            parties: dict[int, RoundBasedParty] = {
                i: PresignParty(sid, shares[i], signers) for i in signers
            }
            return run_protocol(parties)

        # full signature: presign session + final-step session
        message_hash = hashlib.sha256(secrets.token_bytes(32)).digest()

        def full(signers: tuple[int, ...] = signers, h: bytes = message_hash) -> tuple[Any, Any]:
            pre = presign(signers)
            _check(pre, set(signers), "presign")
            parties: dict[int, RoundBasedParty] = {
                i: SignParty(pre.outputs[i], shares[i], h) for i in signers
            }
            return pre, run_protocol(parties)

        sign_ms, (pre, fin) = timed(full)
        _check(fin, set(signers), "final step")
        _verify(pk, message_hash, fin.outputs[signers[0]])

        # presign alone, then the online step alone on its output
        presign_ms, pre2 = timed(presign)
        _check(pre2, set(signers), "presign")
        presigs: dict[int, Presignature] = pre2.outputs
        message_hash = hashlib.sha256(secrets.token_bytes(32)).digest()

        def online(
            presigs: dict[int, Presignature] = presigs,
            h: bytes = message_hash,
            first: int = signers[0],
        ) -> Any:
            parts = {i: signature_share(p, shares[i], h) for i, p in presigs.items()}
            return combine(presigs[first].public, parts, h)

        online_ms, signature = timed(online)
        assert signature is not None
        _verify(pk, message_hash, signature)
        if r >= warmup:
            presign_samples.append(presign_ms)
            sign_samples.append(sign_ms)
            online_samples.append(online_ms)
            bytes_sent = pre.bytes_sent + fin.bytes_sent
    assert signature is not None
    return {
        "scheme": scheme,
        "t": t,
        "n": n,
        "runs": runs,
        "dkg_ms": stats(dkg_samples),
        "presign_ms": stats(presign_samples),
        "sign_ms": stats(sign_samples),
        "online_ms": stats(online_samples),
        "bytes_sent": bytes_sent,
        "public_key": pk.hex(),
        "message": message_hash.hex(),
        "message_hash": message_hash.hex(),
        "signature": signature.to_bytes().hex(),
        "recovery_id": signature.recovery_id,
    }
