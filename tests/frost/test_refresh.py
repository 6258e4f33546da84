"""Proactive refresh by zero-sharing: same group key, new shares that sign,
old shares that no longer combine with new ones."""

from __future__ import annotations

import dataclasses

import pytest

from signer_nodes.mpc.dkg import DkgParty
from signer_nodes.mpc.errors import InvalidCommitmentError, InvalidShareError, LocalMisuseError
from signer_nodes.mpc.frost import Ciphersuite
from signer_nodes.mpc.frost.polynomial import derive_interpolating_value
from signer_nodes.mpc.frost.session import COORDINATOR
from signer_nodes.mpc.simulation import run_protocol
from tests.frost.helpers import (
    SUITE_IDS,
    SUITES,
    dkg_keys,
    independent_verify,
    public_key_bytes,
    run_sign,
    session_id,
)


def refresh(suite, keys, public, *, tamper=None, parties_cls=None):
    sid = session_id()
    ids = sorted(keys)
    parties = {
        i: (parties_cls or {}).get(i, DkgParty)(
            suite, sid, i, ids, public.min_signers, refresh_of=(keys[i], public)
        )
        for i in ids
    }
    return run_protocol(parties, tamper=tamper)


def interpolate(suite, shares: dict[int, int]) -> int:
    order = suite.group.order
    ids = list(shares)
    return sum(derive_interpolating_value(ids, i, order) * s for i, s in shares.items()) % order


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_refresh_keeps_key_changes_shares(suite: Ciphersuite) -> None:
    t, n = 2, 3
    keys, public = dkg_keys(suite, t, n)
    res = refresh(suite, keys, public)
    assert len(res.outputs) == n and not res.errors
    new_keys = {i: o.key_package for i, o in res.outputs.items()}
    new_public = res.outputs[1].public_key_package
    assert new_public.group_public_key == public.group_public_key
    assert new_public.chain_code == public.chain_code
    assert all(new_keys[i].signing_share != keys[i].signing_share for i in keys)
    sig = run_sign(suite, new_keys, new_public, [1, 3], b"after refresh").outputs[COORDINATOR]
    assert independent_verify(suite, public_key_bytes(suite, new_public), b"after refresh", sig)

    # The secret is the same, but one old share with one new share interpolates to garbage.
    secret = interpolate(suite, {1: new_keys[1].signing_share, 2: new_keys[2].signing_share})
    assert suite.group.base_mult(secret) == public.group_public_key
    mixed = interpolate(suite, {1: keys[1].signing_share, 2: new_keys[2].signing_share})
    assert mixed != secret
    # And a signer still holding its old share cannot contribute to a signature.
    stale = {1: keys[1], 3: new_keys[3]}
    res = run_sign(suite, stale, new_public, [1, 3], b"stale")
    assert COORDINATOR not in res.outputs and res.aborted[COORDINATOR].culprits == {1}


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_refresh_with_nonzero_constant_is_detected(suite: Ciphersuite) -> None:
    """A party that tries to shift the key by dealing f(0) != 0 sends shares
    that fail the VSS check against its (constant-free) commitment."""

    class Shifter(DkgParty):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self._coefficients[0] = 12345

    keys, public = dkg_keys(suite, 2, 3)
    res = refresh(suite, keys, public, parties_cls={2: Shifter})
    for victim in (1, 3):
        assert isinstance(res.aborted[victim], InvalidShareError) and res.aborted[
            victim
        ].culprits == {2}


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_refresh_commitment_with_constant_term_is_refused(suite: Ciphersuite) -> None:
    class WithConstant(DkgParty):
        def _public_commitment(self):
            return (self.suite.group.base_mult(5), *super()._public_commitment())

    keys, public = dkg_keys(suite, 3, 4)
    res = refresh(suite, keys, public, parties_cls={4: WithConstant})
    for victim in (1, 2, 3):
        assert isinstance(res.aborted[victim], InvalidCommitmentError) and res.aborted[
            victim
        ].culprits == {4}


def test_refresh_needs_every_holder_and_same_threshold() -> None:
    suite = SUITES[0]
    keys, public = dkg_keys(suite, 2, 3)
    with pytest.raises(LocalMisuseError):
        DkgParty(suite, session_id(), 1, [1, 2], 2, refresh_of=(keys[1], public))
    with pytest.raises(LocalMisuseError):
        DkgParty(suite, session_id(), 1, [1, 2, 3], 3, refresh_of=(keys[1], public))
    with pytest.raises(LocalMisuseError):
        DkgParty(
            suite, session_id(), 1, [1, 2, 3], 2, refresh_of=(dataclasses.replace(keys[2]), public)
        )
