"""Helpers for the DKLs23 threshold-ECDSA tests: keygen/presign/sign through
the simulated network and independent verification (coincurve, py-ecc)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from functools import cache

from coincurve import PublicKey
from py_ecc.secp256k1 import secp256k1 as pyecc

from signer_nodes.mpc.dkls23.keygen import KeygenParty
from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.dkls23.presign import Presignature, PresignParty
from signer_nodes.mpc.dkls23.sign import EcdsaSignature, SignParty, combine, signature_share
from signer_nodes.mpc.groups import SECP256K1, Element
from signer_nodes.mpc.session import RoundBasedParty
from signer_nodes.mpc.simulation import SimulationResult, Tamper, run_protocol

Q = SECP256K1.order


def run_keygen(t: int, n: int, parties: Sequence[int] | None = None) -> dict[int, KeyShare]:
    ids = list(parties or range(1, n + 1))
    sid = secrets.token_bytes(32)
    res = run_protocol({i: KeygenParty(sid, i, ids, t) for i in ids})
    assert not res.errors and len(res.outputs) == len(ids), res.errors
    return dict(res.outputs)


@cache
def cached_keygen(t: int, n: int) -> dict[int, KeyShare]:
    """One key per (t, n) shared by the read-only tests."""
    return run_keygen(t, n)


def presign_parties(
    shares: Mapping[int, KeyShare], signers: Sequence[int], sid: bytes | None = None
) -> dict[int, RoundBasedParty]:
    sid = sid or secrets.token_bytes(32)
    return {i: PresignParty(sid, shares[i], signers) for i in signers}


def run_presign(
    shares: Mapping[int, KeyShare],
    signers: Sequence[int],
    tamper: Mapping[int, Tamper] | None = None,
) -> SimulationResult:
    return run_protocol(presign_parties(shares, signers), tamper=tamper)


def presign(shares: Mapping[int, KeyShare], signers: Sequence[int]) -> dict[int, Presignature]:
    res = run_presign(shares, signers)
    assert not res.errors and set(res.outputs) == set(signers), res.errors
    return dict(res.outputs)


def sign_direct(
    shares: Mapping[int, KeyShare],
    presigs: Mapping[int, Presignature],
    message_hash: bytes,
    tweak: int = 0,
) -> EcdsaSignature:
    parts = {
        i: signature_share(p, shares[i], message_hash, tweak=tweak) for i, p in presigs.items()
    }
    public = next(iter(presigs.values())).public
    return combine(public, parts, message_hash, tweak=tweak)


def sign_session(
    shares: Mapping[int, KeyShare],
    presigs: Mapping[int, Presignature],
    message_hash: bytes,
    tweak: int = 0,
    tamper: Mapping[int, Tamper] | None = None,
) -> SimulationResult:
    parties: dict[int, RoundBasedParty] = {
        i: SignParty(p, shares[i], message_hash, tweak=tweak) for i, p in presigs.items()
    }
    return run_protocol(parties, tamper=tamper)


def verify_independently(public_key: Element, message_hash: bytes, sig: EcdsaSignature) -> None:
    """coincurve (libsecp256k1, which rejects high s) and py-ecc recovery."""
    pk = SECP256K1.serialize_element(public_key)
    assert sig.s <= Q // 2, "not low-s"
    assert PublicKey(pk).verify(sig.to_der(), message_hash, hasher=None)
    recovered = PublicKey.from_signature_and_message(sig.recoverable(), message_hash, hasher=None)
    assert recovered.format(compressed=True) == pk
    x, y = pyecc.ecdsa_raw_recover(message_hash, (sig.ethereum_v, sig.r, sig.s))
    uncompressed = PublicKey(pk).format(compressed=False)
    assert (x, y) == (
        int.from_bytes(uncompressed[1:33], "big"),
        int.from_bytes(uncompressed[33:], "big"),
    )
    # the high-s twin is refused by libsecp256k1: low-s is enforced by the verifier
    high = EcdsaSignature.__new__(EcdsaSignature)
    object.__setattr__(high, "r", sig.r)
    object.__setattr__(high, "s", Q - sig.s)
    object.__setattr__(high, "recovery_id", sig.recovery_id)
    assert not PublicKey(pk).verify(high.to_der(), message_hash, hasher=None)
