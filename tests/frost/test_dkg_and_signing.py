"""DKG + FROST signing end to end in the simulated network, for every suite."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signer_nodes.mpc.errors import InvalidSignatureShareError, LocalMisuseError, NonceReuseError
from signer_nodes.mpc.frost import (
    FROST_BIP340,
    Ciphersuite,
    KeyPackage,
    PublicKeyPackage,
    SigningNonces,
    SigningPackage,
    aggregate,
    commit,
    sign,
)
from signer_nodes.mpc.frost.polynomial import derive_interpolating_value
from signer_nodes.mpc.frost.session import COORDINATOR
from tests.frost.helpers import (
    SUITE_IDS,
    SUITES,
    dkg_keys,
    independent_verify,
    public_key_bytes,
    run_sign,
)


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize(("t", "n"), [(1, 1), (1, 3), (2, 2), (2, 3), (3, 5), (5, 5)])
def test_every_t_subset_signs_and_verifies_independently(
    suite: Ciphersuite, t: int, n: int
) -> None:
    keys, public = dkg_keys(suite, t, n)
    assert all(k.group_public_key == public.group_public_key for k in keys.values())
    for signers in itertools.combinations(range(1, n + 1), t):
        message = f"pay {signers}".encode()
        res = run_sign(suite, keys, public, signers, message)
        assert not res.errors and not res.aborted
        sig = res.outputs[COORDINATOR]
        assert independent_verify(suite, public_key_bytes(suite, public), message, sig)
        assert not independent_verify(suite, public_key_bytes(suite, public), message + b"!", sig)


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_dkg_fifteen_parties(suite: Ciphersuite) -> None:
    keys, public = dkg_keys(suite, 8, 15)
    signers = [2, 3, 5, 7, 11, 13, 14, 15]
    res = run_sign(suite, keys, public, signers, b"n=15")
    assert independent_verify(
        suite, public_key_bytes(suite, public), b"n=15", res.outputs[COORDINATOR]
    )


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_t_minus_one_cannot_sign(suite: Ciphersuite) -> None:
    """t-1 colluding signers, even with the API's threshold checks bypassed,
    produce no valid signature, and their shares interpolate to a wrong key."""
    t, n = 3, 4
    keys, public = dkg_keys(suite, t, n)
    g = suite.group
    with pytest.raises(LocalMisuseError):
        run_sign(suite, keys, public, [1, 2], b"x")
    few = [1, 2]
    nonces, comms = {}, []
    for i in few:
        nonces[i], c = commit(suite, i, keys[i].signing_share)
        comms.append(c)
    package = SigningPackage(tuple(comms), b"x")
    shares = [sign(suite, package, nonces[i], keys[i], min_signers=t - 1) for i in few]
    weakened = PublicKeyPackage(suite, public.group_public_key, public.verifying_shares, t - 1)
    with pytest.raises(InvalidSignatureShareError):
        aggregate(suite, package, shares, weakened)
    guess = (
        sum(derive_interpolating_value(few, i, g.order) * keys[i].signing_share for i in few)
        % g.order
    )
    assert g.base_mult(guess) != public.group_public_key


@settings(max_examples=12, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    t_n=st.integers(1, 6).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))),
    message=st.binary(max_size=64),
    data=st.data(),
)
def test_property_random_thresholds_subsets_messages(suite, t_n, message, data) -> None:
    t, n = t_n
    keys, public = dkg_keys(suite, t, n)
    size = data.draw(st.integers(t, n))
    signers = sorted(data.draw(st.permutations(range(1, n + 1)))[:size])
    tweak = data.draw(st.sampled_from([None, b""])) if suite is FROST_BIP340 else None
    res = run_sign(suite, keys, public, signers, message, tweak=tweak)
    assert independent_verify(
        suite, public_key_bytes(suite, public, tweak), message, res.outputs[COORDINATOR]
    )


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_nonces_are_single_use(suite: Ciphersuite) -> None:
    keys, _ = dkg_keys(suite, 2, 2)
    n1, c1 = commit(suite, 1, keys[1].signing_share)
    _, c2 = commit(suite, 2, keys[2].signing_share)
    package = SigningPackage((c1, c2), b"once")
    sign(suite, package, n1, keys[1])
    assert n1.used and "redacted" in repr(n1)
    with pytest.raises(NonceReuseError):
        sign(suite, SigningPackage((c1, c2), b"twice"), n1, keys[1])
    with pytest.raises(NonceReuseError):
        n1.to_bytes(suite)


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_serialisation_round_trips(suite: Ciphersuite) -> None:
    keys, public = dkg_keys(suite, 2, 3)
    for k in keys.values():
        again = KeyPackage.from_bytes(k.to_bytes())
        assert again.to_bytes() == k.to_bytes() and again.signing_share == k.signing_share
        assert str(k.signing_share) not in repr(k) and "redacted" in repr(k)
    assert PublicKeyPackage.from_bytes(public.to_bytes()).to_bytes() == public.to_bytes()
    nonces, _ = commit(suite, 1, keys[1].signing_share)
    restored = SigningNonces.from_bytes(suite, nonces.to_bytes(suite))
    assert restored.commitments == nonces.commitments
