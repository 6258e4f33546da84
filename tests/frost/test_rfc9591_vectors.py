"""RFC 9591 Appendix E vectors, byte for byte, for both implemented suites.

The test body is written once and fed by the RFC's JSON; the nonce randomness
is injected through ``commit``'s private ``_random_bytes`` seam and the dealer
polynomial through ``trusted_dealer_keygen``'s ``_coefficients`` seam.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signer_nodes.mpc.frost import (
    FROST_ED25519,
    FROST_SECP256K1,
    Ciphersuite,
    SigningPackage,
    aggregate,
    commit,
    sign,
    trusted_dealer_keygen,
)
from signer_nodes.mpc.frost.ciphersuite import expand_message_xmd
from signer_nodes.mpc.frost.round2 import compute_binding_factors, encode_group_commitment_list
from signer_nodes.mpc.groups import SECP256K1
from tests.vectors import frost_vectors

CASES = [("frost-ed25519-sha512", FROST_ED25519), ("frost-secp256k1-sha256", FROST_SECP256K1)]


def _scalar(suite: Ciphersuite, hexstr: str) -> int:
    return suite.group.deserialize_scalar(bytes.fromhex(hexstr))


@pytest.mark.parametrize(("name", "suite"), CASES, ids=[c[0] for c in CASES])
def test_rfc_vectors(name: str, suite: Ciphersuite) -> None:
    v = frost_vectors(name)
    g = suite.group
    inputs = v["inputs"]
    n = int(v["config"]["MAX_PARTICIPANTS"])
    t = int(v["config"]["MIN_PARTICIPANTS"])

    secret = _scalar(suite, inputs["group_secret_key"])
    coeffs = [_scalar(suite, c) for c in inputs["share_polynomial_coefficients"]]
    packages, public = trusted_dealer_keygen(suite, secret, n, t, _coefficients=coeffs)
    assert g.serialize_element(public.group_public_key).hex() == inputs["group_public_key"]
    for p in inputs["participant_shares"]:
        assert (
            g.serialize_scalar(packages[p["identifier"]].signing_share).hex()
            == p["participant_share"]
        )

    message = bytes.fromhex(inputs["message"])
    nonces, commitments = {}, []
    for out in v["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        randomness = iter(
            [
                bytes.fromhex(out["hiding_nonce_randomness"]),
                bytes.fromhex(out["binding_nonce_randomness"]),
            ]
        )
        nonce, comm = commit(
            suite, i, packages[i].signing_share, _random_bytes=lambda _n, it=randomness: next(it)
        )
        assert g.serialize_element(comm.hiding).hex() == out["hiding_nonce_commitment"]
        assert g.serialize_element(comm.binding).hex() == out["binding_nonce_commitment"]
        nonces[i] = nonce
        commitments.append(comm)

    package = SigningPackage(tuple(sorted(commitments, key=lambda c: c.identifier)), message)
    rhos = compute_binding_factors(suite, public.group_public_key, package)
    prefix = (
        g.serialize_element(public.group_public_key)
        + suite.h4(message)
        + suite.h5(encode_group_commitment_list(suite, package))
    )
    for out in v["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        assert (prefix + g.serialize_scalar(i)).hex() == out["binding_factor_input"]
        assert g.serialize_scalar(rhos[i]).hex() == out["binding_factor"]

    shares = []
    for out in v["round_two_outputs"]["outputs"]:
        i = out["identifier"]
        share = sign(suite, package, nonces[i], packages[i])
        assert g.serialize_scalar(share.share).hex() == out["sig_share"]
        shares.append(share)

    signature = aggregate(suite, package, shares, public)
    assert signature.hex() == v["final_output"]["sig"]
    assert suite.verify(public.group_public_key, message, signature)


def test_rfc_ed25519_signature_verifies_with_openssl() -> None:
    v = frost_vectors("frost-ed25519-sha512")
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(v["inputs"]["group_public_key"]))
    key.verify(bytes.fromhex(v["final_output"]["sig"]), bytes.fromhex(v["inputs"]["message"]))


def rfc_secp256k1_verify(public_key: bytes, msg: bytes, sig: bytes) -> bool:
    """An independent verifier written from RFC 9591 sections 6.5 and B.1:
    c = H2(R || PK || msg) with hash_to_field over expand_message_xmd, then
    z*G == R + c*PK, evaluated with coincurve directly."""
    from coincurve import PublicKey

    r_enc, z = sig[:33], sig[33:]
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


def test_rfc_secp256k1_signature_independent_equation() -> None:
    v = frost_vectors("frost-secp256k1-sha256")
    pk = bytes.fromhex(v["inputs"]["group_public_key"])
    msg = bytes.fromhex(v["inputs"]["message"])
    sig = bytes.fromhex(v["final_output"]["sig"])
    assert rfc_secp256k1_verify(pk, msg, sig)
    assert not rfc_secp256k1_verify(pk, msg + b"x", sig)


def test_expand_message_xmd_matches_rfc9380_and_py_ecc() -> None:
    from py_ecc.bls.hash import expand_message_xmd as reference

    dst = b"QUUX-V01-CS02-with-expander-SHA256-128"
    # RFC 9380 Appendix K.1, msg = "", len_in_bytes = 0x20
    assert expand_message_xmd(b"", dst, 32).hex() == (
        "68a985b87eb6b46952128911f2a4412bbc302a9d759667f87f7a21d803f07235"
    )
    for msg in (b"", b"abc", b"q128_" + b"q" * 128):
        for n in (32, 48, 128):
            assert expand_message_xmd(msg, dst, n) == reference(msg, dst, n, hashlib.sha256)
