"""The in-process demo: distributed key generation, threshold signing with
every 2-of-3 signer subset, independent verification, and a share refresh,
for FROST(Ed25519), FROST(secp256k1) and FROST-BIP340/Taproot.

Everything runs in one process through the simulated network: the protocol
cores are the production ones, but there are no node processes, network,
persistence or policy yet (those come with the service).
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

from coincurve import PublicKeyXOnly
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signer_nodes.mpc.dkg import DkgOutput, DkgParty
from signer_nodes.mpc.frost import FROST_BIP340, FROST_ED25519, FROST_SECP256K1, Ciphersuite
from signer_nodes.mpc.frost.keys import KeyPackage, PublicKeyPackage
from signer_nodes.mpc.frost.session import COORDINATOR, FrostCoordinator, FrostSigner
from signer_nodes.mpc.session import RoundBasedParty
from signer_nodes.mpc.simulation import run_protocol


@dataclass(frozen=True)
class DemoLine:
    scheme: str
    step: str
    detail: str
    ok: bool


def _verifier_name(suite: Ciphersuite) -> str:
    if suite is FROST_ED25519:
        return "OpenSSL Ed25519 (cryptography)"
    if suite is FROST_BIP340:
        return "libsecp256k1 BIP340 (coincurve)"
    return "RFC 9591 verification equation"


def _verify(suite: Ciphersuite, pk: bytes, msg: bytes, sig: bytes) -> bool:
    if suite is FROST_ED25519:
        try:
            Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
        except InvalidSignature:
            return False
        return True
    if suite is FROST_BIP340:
        return bool(PublicKeyXOnly(pk).verify(sig, msg))
    return suite.verify(suite.group.deserialize_element(pk), msg, sig)


def _dkg(
    suite: Ciphersuite,
    t: int,
    n: int,
    refresh: tuple[dict[int, KeyPackage], PublicKeyPackage] | None = None,
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    sid = secrets.token_bytes(32)
    ids = list(range(1, n + 1))
    parties = {
        i: DkgParty(
            suite,
            sid,
            i,
            ids,
            t,
            refresh_of=None if refresh is None else (refresh[0][i], refresh[1]),
        )
        for i in ids
    }
    res = run_protocol(parties)
    if len(res.outputs) != n:
        raise RuntimeError(f"key generation failed: {res.aborted or res.errors}")
    outputs: dict[int, DkgOutput] = res.outputs
    return {i: o.key_package for i, o in outputs.items()}, outputs[1].public_key_package


def _sign(
    suite: Ciphersuite,
    keys: dict[int, KeyPackage],
    public: PublicKeyPackage,
    signers: tuple[int, ...],
    msg: bytes,
) -> bytes:
    sid = secrets.token_bytes(32)
    parties: dict[int, RoundBasedParty] = {
        i: FrostSigner(suite, sid, keys[i], expected_message=msg) for i in signers
    }
    parties[COORDINATOR] = FrostCoordinator(suite, sid, public, list(signers), msg)
    res = run_protocol(parties)
    if COORDINATOR not in res.outputs:
        raise RuntimeError(f"signing failed: {res.aborted or res.errors}")
    signature: bytes = res.outputs[COORDINATOR]
    return signature


def run_demo(t: int = 2, n: int = 3) -> list[DemoLine]:
    lines: list[DemoLine] = []
    for name, suite in (
        ("eddsa-ed25519", FROST_ED25519),
        ("frost-secp256k1", FROST_SECP256K1),
        ("schnorr-bip340", FROST_BIP340),
    ):
        keys, public = _dkg(suite, t, n)
        pk = suite.serialize_public_key(suite.tweak_public_key(public.group_public_key, None))
        lines.append(
            DemoLine(name, "key generated", f"{t}-of-{n} DKG, public key {pk.hex()}", True)
        )
        for signers in itertools.combinations(range(1, n + 1), t):
            msg = f"withdraw 1.5 to treasury, signers {signers}".encode()
            sig = _sign(suite, keys, public, signers, msg)
            ok = _verify(suite, pk, msg, sig)
            lines.append(
                DemoLine(
                    name, f"nodes {signers} signed", f"verified by {_verifier_name(suite)}", ok
                )
            )
        new_keys, new_public = _dkg(suite, t, n, refresh=(keys, public))
        same = new_public.group_public_key == public.group_public_key
        msg = b"after refresh"
        ok = same and _verify(suite, pk, msg, _sign(suite, new_keys, new_public, (1, n), msg))
        lines.append(DemoLine(name, "shares refreshed", "same public key, new shares sign", ok))
    return lines
