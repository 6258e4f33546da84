"""A SignatureProvider that runs the real threshold protocols in process.

Not a mock: keys come from distributed key generation (DKLs23 for ECDSA, Pedersen
DKG for FROST-BIP340), every signature from a full protocol run among t of n parties
through the simulated network of ``signer_nodes.mpc.simulation``; only the network
and the node processes are left out. Before signing, the provider does what a signer
node does with a request: :func:`policy.payloads.interpret_request` (the digest comes
from the payload, the claims must match) and a policy callable.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from custody.payments.provider import KeyInfo, SignedResult, SigningRefused
from policy.payloads import Interpretation, PayloadError, interpret_request
from policy.request import SigningRequest
from signer_nodes.mpc.dkg import DkgParty
from signer_nodes.mpc.dkls23.keygen import KeygenParty
from signer_nodes.mpc.dkls23.presign import PresignParty
from signer_nodes.mpc.dkls23.sign import SignParty, derivation_tweak
from signer_nodes.mpc.frost import FROST_BIP340
from signer_nodes.mpc.frost.session import COORDINATOR, FrostCoordinator, FrostSigner
from signer_nodes.mpc.groups import SECP256K1
from signer_nodes.mpc.hd import derived_packages
from signer_nodes.mpc.simulation import run_protocol

Policy = Callable[[SigningRequest, Interpretation], str | None]
T, N = 2, 3
SIGNERS = [1, 3]


def allow_all(request: SigningRequest, found: Interpretation) -> str | None:
    return None


@dataclass
class ThresholdProvider:
    policy: Policy = allow_all
    initiator: str = "payments-initiator"
    keys: dict[str, tuple[str, Any]] = field(default_factory=dict)
    signed: list[SigningRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create_key(self, scheme: str) -> str:
        sid = secrets.token_bytes(32)
        ids = list(range(1, N + 1))
        if scheme == "ecdsa-secp256k1":
            res = run_protocol({i: KeygenParty(sid, i, ids, T) for i in ids})
        elif scheme == "schnorr-bip340":
            res = run_protocol({i: DkgParty(FROST_BIP340, sid, i, ids, T) for i in ids})
        else:
            raise ValueError(scheme)
        assert not res.errors and len(res.outputs) == N, res.errors
        key_id = f"key-{secrets.token_hex(4)}"
        self.keys[key_id] = (scheme, dict(res.outputs))
        return key_id

    def key(self, key_id: str, path: str) -> KeyInfo:
        scheme, shares = self.keys[key_id]
        if scheme == "ecdsa-secp256k1":
            share = shares[1]
            _, child = derivation_tweak(share.group_public_key, share.chain_code, path)
            public = child.public_key
        else:
            _, pub = derived_packages(None, shares[1].public_key_package, path)
            public = pub.group_public_key
        return KeyInfo(key_id, scheme, SECP256K1.serialize_element(public))

    def sign(self, request: SigningRequest) -> SignedResult:
        scheme, shares = self.keys[request.key_id]
        path = "m" + "".join(f"/{i}" for i in request.derivation_path)
        info = self.key(request.key_id, path)
        try:
            found = interpret_request(request, key_scheme=scheme, signer_key=info.public_key)
        except PayloadError as exc:
            raise SigningRefused(exc.code, str(exc)) from None
        refusal = self.policy(request, found)
        if refusal is not None:
            raise SigningRefused(refusal, "refused by policy")
        with self._lock:
            self.signed.append(request)
        if scheme == "ecdsa-secp256k1":
            return _dkls23_sign(shares, path, found.digest)
        return _frost_bip340_sign(shares, path, found.digest, found.taproot_merkle_root)


def _dkls23_sign(shares: dict[int, Any], path: str, digest: bytes) -> SignedResult:
    sid = secrets.token_bytes(32)
    presigned = run_protocol({i: PresignParty(sid, shares[i], SIGNERS) for i in SIGNERS})
    assert not presigned.errors, presigned.errors
    root = shares[SIGNERS[0]]
    tweak, _ = derivation_tweak(root.group_public_key, root.chain_code, path)
    res = run_protocol(
        {i: SignParty(presigned.outputs[i], shares[i], digest, tweak=tweak) for i in SIGNERS}
    )
    assert not res.errors, res.errors
    sig = res.outputs[SIGNERS[0]]
    return SignedResult(sig.to_bytes(), sig.recovery_id)


def _frost_bip340_sign(
    outputs: dict[int, Any], path: str, digest: bytes, merkle_root: bytes | None
) -> SignedResult:
    sid = secrets.token_bytes(32)
    public = outputs[1].public_key_package
    parties: dict[int, Any] = {}
    for i in SIGNERS:
        key, _ = derived_packages(outputs[i].key_package, public, path)
        assert key is not None
        parties[i] = FrostSigner(
            FROST_BIP340, sid, key, expected_message=digest, expected_tweak=merkle_root
        )
    _, derived_public = derived_packages(None, public, path)
    parties[COORDINATOR] = FrostCoordinator(
        FROST_BIP340, sid, derived_public, SIGNERS, digest, tweak=merkle_root
    )
    res = run_protocol(parties)
    assert not res.errors, res.errors
    return SignedResult(res.outputs[COORDINATOR])
