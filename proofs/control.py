"""Proof of control: verifying a custody key's signature over the snapshot challenge.

Each custody key signs the 32-byte challenge that names the snapshot
(:func:`proofs.snapshot.compute_challenge`); a valid signature shows that whoever
published the snapshot could use that key at that time. The threshold signers
(FROST, DKLs23) produce ordinary signatures, so the checks here are the standard
single-key verifications, done with independent libraries:

* ``ecdsa-secp256k1``: 33-byte compressed key, 64-byte ``r || s`` with low ``s``
  (BIP 62 / libsecp256k1 normal form), over ``SHA-256(challenge)``; coincurve.
* ``schnorr-bip340``: 32-byte x-only key, 64-byte BIP340 signature of the 32-byte
  challenge as the message; coincurve.
* ``eddsa-ed25519``: 32-byte key, 64-byte RFC 8032 signature of the challenge; PyNaCl.

Imports only coincurve, PyNaCl and the standard library (verifier rule).
"""

from __future__ import annotations

import coincurve
import nacl.exceptions
import nacl.signing
from coincurve.ecdsa import cdata_to_der, deserialize_compact

SCHEMES = ("ecdsa-secp256k1", "schnorr-bip340", "eddsa-ed25519")
PUBLIC_KEY_LEN = {"ecdsa-secp256k1": 33, "schnorr-bip340": 32, "eddsa-ed25519": 32}
SIGNATURE_LEN = 64
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def verify_signature(scheme: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    """``True`` iff ``signature`` is valid for ``message`` under ``public_key`` and ``scheme``.

    Never raises on bad keys or signatures: malformed input is simply invalid.
    """
    if scheme not in PUBLIC_KEY_LEN or len(public_key) != PUBLIC_KEY_LEN[scheme]:
        return False
    if len(signature) != SIGNATURE_LEN:
        return False
    try:
        if scheme == "ecdsa-secp256k1":
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            if not (0 < r < SECP256K1_ORDER and 0 < s <= SECP256K1_ORDER // 2):
                return False
            der = cdata_to_der(deserialize_compact(signature))
            return bool(coincurve.PublicKey(public_key).verify(der, message))
        if scheme == "schnorr-bip340":
            return bool(coincurve.PublicKeyXOnly(public_key).verify(signature, message))
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return True
    except (ValueError, TypeError, nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError):
        return False
