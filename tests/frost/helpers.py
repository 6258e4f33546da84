"""Shared helpers: run DKG and signing in the simulated network, and verify
signatures with libraries that are not ours."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

from coincurve import PublicKey, PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.signing import VerifyKey

from signer_nodes.mpc.dkg import DkgOutput, DkgParty
from signer_nodes.mpc.frost import FROST_BIP340, FROST_ED25519, FROST_SECP256K1, Ciphersuite
from signer_nodes.mpc.frost.ciphersuite import expand_message_xmd
from signer_nodes.mpc.frost.keys import KeyPackage, PublicKeyPackage
from signer_nodes.mpc.frost.session import COORDINATOR, FrostCoordinator, FrostSigner
from signer_nodes.mpc.groups import SECP256K1
from signer_nodes.mpc.simulation import SimulationResult, Tamper, run_protocol

SUITES = [FROST_ED25519, FROST_SECP256K1, FROST_BIP340]
SUITE_IDS = ["ed25519", "secp256k1", "bip340"]


def session_id() -> bytes:
    return secrets.token_bytes(32)


def run_dkg(
    suite: Ciphersuite,
    t: int,
    n: int,
    *,
    tamper: Mapping[int, Tamper] | None = None,
    sid: bytes | None = None,
) -> SimulationResult:
    sid = sid or session_id()
    return run_protocol(
        {i: DkgParty(suite, sid, i, range(1, n + 1), t) for i in range(1, n + 1)}, tamper=tamper
    )


def dkg_keys(suite: Ciphersuite, t: int, n: int) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    res = run_dkg(suite, t, n)
    assert len(res.outputs) == n and not res.errors
    outs: dict[int, DkgOutput] = res.outputs
    publics = {o.public_key_package.to_bytes() for o in outs.values()}
    assert len(publics) == 1, "parties disagree on the public key package"
    return {i: o.key_package for i, o in outs.items()}, outs[1].public_key_package


def run_sign(
    suite: Ciphersuite,
    keys: Mapping[int, KeyPackage],
    public: PublicKeyPackage,
    signers: Sequence[int],
    message: bytes,
    *,
    tweak: bytes | None = None,
    tamper: Mapping[int, Tamper] | None = None,
    sid: bytes | None = None,
) -> SimulationResult:
    sid = sid or session_id()
    parties: dict[int, object] = {
        i: FrostSigner(suite, sid, keys[i], expected_message=message, expected_tweak=tweak)
        for i in signers
    }
    parties[COORDINATOR] = FrostCoordinator(suite, sid, public, list(signers), message, tweak=tweak)
    return run_protocol(parties, tamper=tamper)  # type: ignore[arg-type]


def rfc_secp256k1_verify(public_key: bytes, msg: bytes, sig: bytes) -> bool:
    """Written from RFC 9591 sections 6.5 and Appendix B with coincurve directly:
    c = H2(R || PK || msg), accept iff z*G == R + c*PK."""
    if len(sig) != 65:
        return False
    r_enc, z = sig[:33], sig[33:]
    if int.from_bytes(z, "big") >= SECP256K1.order or int.from_bytes(z, "big") == 0:
        return False
    dst = b"FROST-secp256k1-SHA256-v1chal"
    c = (
        int.from_bytes(expand_message_xmd(r_enc + public_key + msg, dst, 48), "big")
        % SECP256K1.order
    )
    lhs = PublicKey.from_secret(z)
    rhs = PublicKey.combine_keys(
        [PublicKey(r_enc), PublicKey(public_key).multiply(c.to_bytes(32, "big"))]
    )
    return lhs.format() == rhs.format()


def independent_verify(
    suite: Ciphersuite, public_key_bytes: bytes, message: bytes, signature: bytes
) -> bool:
    """Verify with libraries that share no code with ours."""
    if suite is FROST_ED25519:
        try:
            Ed25519PublicKey.from_public_bytes(public_key_bytes).verify(signature, message)
            VerifyKey(public_key_bytes).verify(message, signature)
        except Exception:
            return False
        return True
    if suite is FROST_BIP340:
        return bool(PublicKeyXOnly(public_key_bytes).verify(signature, message))
    return rfc_secp256k1_verify(public_key_bytes, message, signature)


def public_key_bytes(
    suite: Ciphersuite, public: PublicKeyPackage, tweak: bytes | None = None
) -> bytes:
    return suite.serialize_public_key(suite.tweak_public_key(public.group_public_key, tweak))
