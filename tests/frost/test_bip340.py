"""BIP340 verification vectors and FROST-BIP340 / Taproot signatures checked by libsecp256k1."""

from __future__ import annotations

import secrets

import pytest
from coincurve import PublicKeyXOnly
from hypothesis import given, settings
from hypothesis import strategies as st

from signer_nodes.mpc.frost import (
    FROST_BIP340,
    SigningPackage,
    aggregate,
    bip340_verify,
    commit,
    sign,
)
from signer_nodes.mpc.frost.bip340 import taproot_tweak
from signer_nodes.mpc.frost.dealer import trusted_dealer_keygen
from signer_nodes.mpc.groups import SECP256K1
from tests.vectors import bip340_vectors


@pytest.mark.parametrize("row", bip340_vectors(), ids=lambda r: f"bip340-{r['index']}")
def test_bip340_verification_vectors(row: dict[str, str]) -> None:
    expected = row["verification result"] == "TRUE"
    pk, msg, sig = (bytes.fromhex(row[k]) for k in ("public key", "message", "signature"))
    assert bip340_verify(pk, msg, sig) is expected


def _sign(packages, public, signers, message, tweak):
    nonces, comms = {}, []
    for i in signers:
        nonces[i], c = commit(FROST_BIP340, i, packages[i].signing_share)
        comms.append(c)
    package = SigningPackage(tuple(comms), message, tweak)
    shares = [sign(FROST_BIP340, package, nonces[i], packages[i]) for i in signers]
    return aggregate(FROST_BIP340, package, shares, public)


@settings(max_examples=15, deadline=None)
@given(
    t_n=st.integers(1, 5).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))),
    message=st.binary(min_size=0, max_size=80),
    tweak=st.sampled_from([None, b"", b"\x42" * 32]),
    data=st.data(),
)
def test_frost_bip340_signatures_verify_with_libsecp256k1(t_n, message, tweak, data) -> None:
    t, n = t_n
    packages, public = trusted_dealer_keygen(FROST_BIP340, SECP256K1.random_scalar(), n, t)
    signers = sorted(data.draw(st.permutations(range(1, n + 1)))[:t])
    sig = _sign(packages, public, signers, message, tweak)
    output_key = FROST_BIP340.tweak_public_key(public.group_public_key, tweak)
    x_only = FROST_BIP340.serialize_public_key(output_key)
    assert PublicKeyXOnly(x_only).verify(sig, message)
    assert bip340_verify(x_only, message, sig)
    assert not PublicKeyXOnly(x_only).verify(sig, message + b"\x00")


def test_taproot_output_key_matches_bip341_construction() -> None:
    """Q = lift_x(P) + t*G with t = hash_TapTweak(x(P)); checked with
    libsecp256k1's own x-only tweak (secp256k1_xonly_pubkey_tweak_add)."""
    packages, public = trusted_dealer_keygen(FROST_BIP340, SECP256K1.random_scalar(), 3, 2)
    internal_x = FROST_BIP340.serialize_public_key(
        FROST_BIP340.tweak_public_key(public.group_public_key, None)
    )
    merkle_root = secrets.token_bytes(32)
    for root in (b"", merkle_root):
        t = taproot_tweak(internal_x, root)
        expected = PublicKeyXOnly(internal_x)
        expected.tweak_add(t.to_bytes(32, "big"))
        ours = FROST_BIP340.serialize_public_key(
            FROST_BIP340.tweak_public_key(public.group_public_key, root)
        )
        assert ours == expected.format()
        sig = _sign(packages, public, [1, 3], b"spend", root)
        assert PublicKeyXOnly(ours).verify(sig, b"spend")


def test_odd_group_key_is_normalised() -> None:
    """Find a key with odd y and check signing still verifies under x(P)."""
    while True:
        packages, public = trusted_dealer_keygen(FROST_BIP340, SECP256K1.random_scalar(), 2, 2)
        if public.group_public_key.to_bytes()[0] == 0x03:
            break
    sig = _sign(packages, public, [1, 2], b"odd", None)
    assert PublicKeyXOnly(public.group_public_key.to_bytes()[1:]).verify(sig, b"odd")
