"""DKLs23 threshold ECDSA end to end: keygen, presign, final step; every
signature verified by coincurve and by py-ecc public-key recovery."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import secrets

import pytest

from signer_nodes.mpc.bip32 import ExtendedPublicKey, derive
from signer_nodes.mpc.dkls23.presign import Presignature, PresignaturePublic, PresignParty
from signer_nodes.mpc.dkls23.sign import (
    EcdsaSignature,
    SignatureShare,
    combine,
    derivation_tweak,
    signature_share,
)
from signer_nodes.mpc.errors import Dkls23ConsistencyError, LocalMisuseError, NonceReuseError
from signer_nodes.mpc.simulation import run_protocol
from tests.dkls23.ecdsa_helpers import (
    cached_keygen,
    presign,
    sign_direct,
    sign_session,
    verify_independently,
)


def _msg() -> bytes:
    return hashlib.sha256(secrets.token_bytes(16)).digest()


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 5), (2, 2)])
def test_every_t_subset_signs(t: int, n: int) -> None:
    shares = cached_keygen(t, n)
    pk = shares[1].group_public_key
    assert all(s.group_public_key == pk for s in shares.values())
    for signers in itertools.combinations(range(1, n + 1), t):
        msg = _msg()
        sig = sign_direct(shares, presign(shares, signers), msg)
        verify_independently(pk, msg, sig)


@pytest.mark.slow
def test_five_of_nine_sample() -> None:
    """(5, 9): keygen of all 72 ordered pairs; a sample of the 126 subsets
    (first, last and a spread) plus a 6-signer set, and the session form."""
    shares = cached_keygen(5, 9)
    pk = shares[1].group_public_key
    subsets = list(itertools.combinations(range(1, 10), 5))
    for signers in [*subsets[:: len(subsets) // 4], subsets[-1], (2, 3, 5, 7, 8, 9)]:
        msg = _msg()
        verify_independently(pk, msg, sign_direct(shares, presign(shares, signers), msg))
    presigs = presign(shares, (1, 4, 6, 8, 9))
    msg = _msg()
    res = sign_session(shares, presigs, msg)
    assert set(res.outputs) == {1, 4, 6, 8, 9}
    verify_independently(pk, msg, res.outputs[1])


def test_more_than_t_signers() -> None:
    shares = cached_keygen(2, 3)
    msg = _msg()
    sig = sign_direct(shares, presign(shares, (1, 2, 3)), msg)
    verify_independently(shares[1].group_public_key, msg, sig)


def test_sign_session_every_party_gets_the_same_signature() -> None:
    shares = cached_keygen(3, 5)
    presigs = presign(shares, (1, 3, 5))
    msg = _msg()
    res = sign_session(shares, presigs, msg)
    assert not res.errors and set(res.outputs) == {1, 3, 5}
    sigs = set(res.outputs.values())
    assert len(sigs) == 1
    verify_independently(shares[1].group_public_key, msg, sigs.pop())
    assert res.bytes_sent == 3 * len(SignatureShare(b"\0" * 32, 1, 1, 1).to_bytes())


def test_t_minus_one_cannot_start() -> None:
    shares = cached_keygen(3, 5)
    with pytest.raises(LocalMisuseError):
        PresignParty(secrets.token_bytes(32), shares[1], (1, 2))


def test_t_minus_one_cannot_sign_even_when_forced() -> None:
    """Two holders of a 3-of-5 key pretend t = 2: their Lagrange-weighted
    shares do not add up to the key, and the step-8 sum check aborts (abort
    only: the zero-shares hide which pk_j is off)."""
    shares = cached_keygen(3, 5)
    forged = {
        i: dataclasses.replace(
            shares[i], public=dataclasses.replace(shares[i].public, min_signers=2)
        )
        for i in (1, 2)
    }
    sid = secrets.token_bytes(32)
    res = run_protocol({i: PresignParty(sid, forged[i], (1, 2)) for i in (1, 2)})
    assert not res.outputs
    assert set(res.aborted) == {1, 2}
    for err in res.aborted.values():
        assert isinstance(err, Dkls23ConsistencyError) and not err.culprits


def test_bip32_derived_key_signatures_verify() -> None:
    """The signers apply the CKDpub tweak at the final step; the signature
    verifies under the derived key (and not under the root key)."""
    shares = cached_keygen(2, 3)
    root = shares[1]
    for path in ("m/0", "m/44/60/0/0/7", [1, 2, 3]):
        tweak, child = derivation_tweak(root.group_public_key, root.chain_code, path)
        expected, expected_tweak = derive(
            ExtendedPublicKey(root.group_public_key, root.chain_code), path
        )
        assert (child.public_key, tweak) == (expected.public_key, expected_tweak)
        msg = _msg()
        sig = sign_direct(shares, presign(shares, (2, 3)), msg, tweak=tweak)
        verify_independently(child.public_key, msg, sig)
        with pytest.raises(AssertionError):
            verify_independently(root.group_public_key, msg, sig)
    # the derived-key path through the session party, too
    tweak, child = derivation_tweak(root.group_public_key, root.chain_code, "m/7/8")
    msg = _msg()
    res = sign_session(shares, presign(shares, (1, 3)), msg, tweak=tweak)
    verify_independently(child.public_key, msg, res.outputs[3])


def test_presignature_is_single_use() -> None:
    shares = cached_keygen(2, 3)
    presigs = presign(shares, (1, 2))
    msg = _msg()
    signature_share(presigs[1], shares[1], msg)
    assert presigs[1].consumed
    with pytest.raises(NonceReuseError):
        signature_share(presigs[1], shares[1], _msg())
    with pytest.raises(NonceReuseError):
        presigs[1].to_bytes()
    with pytest.raises(NonceReuseError):
        presigs[1].consume()


def test_presignature_bound_to_its_party_and_share() -> None:
    shares = cached_keygen(2, 3)
    presigs = presign(shares, (1, 2))
    with pytest.raises(LocalMisuseError):
        signature_share(presigs[1], shares[2], _msg())
    other = cached_keygen(2, 2)
    with pytest.raises(LocalMisuseError):
        signature_share(presigs[1], other[1], _msg())
    assert not presigs[1].consumed  # refusals do not burn the presignature


def test_presignature_and_share_round_trip() -> None:
    shares = cached_keygen(2, 3)
    presigs = presign(shares, (1, 3))
    restored = {i: Presignature.from_bytes(p.to_bytes()) for i, p in presigs.items()}
    assert restored[1].to_bytes() == presigs[1].to_bytes()
    public = PresignaturePublic.from_bytes(presigs[1].public.to_bytes())
    assert public == presigs[3].public
    msg = _msg()
    parts = {
        i: SignatureShare.from_bytes(signature_share(p, shares[i], msg).to_bytes())
        for i, p in restored.items()
    }
    sig = combine(public, parts, msg)
    verify_independently(shares[1].group_public_key, msg, sig)
    assert EcdsaSignature(sig.r, sig.s, sig.recovery_id) == sig
    assert len(sig.to_bytes()) == 64 and sig.bitcoin_compact()[0] in (31, 32)


def test_reprs_hold_no_secrets() -> None:
    shares = cached_keygen(2, 3)
    presigs = presign(shares, (1, 2))
    secret = shares[1].key_package.signing_share
    phi, u, v = Presignature.from_bytes(presigs[1].to_bytes()).consume()
    for obj in (shares[1], presigs[1], PresignParty(secrets.token_bytes(32), shares[1], (1, 2))):
        text = repr(obj)
        assert "redacted" in text
        for value in (secret, phi, u, v):
            assert str(value) not in text and format(value, "x") not in text
