"""The DKG echo rule where DKLs23 relays the DKG: keygen and refresh run an
inner :class:`~signer_nodes.mpc.dkg.pedersen.DkgParty`, so a false echo in
their round 2 must not get an honest dealer named there either."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Mapping

import pytest

from signer_nodes.mpc.dkls23.keygen import KeygenParty
from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.dkls23.refresh import RefreshParty
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EquivocationError
from signer_nodes.mpc.groups import SECP256K1
from signer_nodes.mpc.session import Envelope, RoundBasedParty
from signer_nodes.mpc.simulation import SimulationResult, Tamper, run_protocol

LIAR = 3


def _lie_about(dealer: int) -> Tamper:
    """Round 2 is var(DKG round-2 payload) || var(pairwise setup); the DKG
    payload is share, u16 count, count echo digests, 32-byte chain code."""

    def hook(env: Envelope, rcpt: int) -> list[Envelope]:
        if env.round != 2:
            return [env]
        outer = Reader(env.payload)
        dkg, setup = outer.var(), outer.var()
        outer.finish()
        k = SECP256K1.scalar_len + 2 + 32 * (dealer - 1)
        false = hashlib.sha256(b"lie" + dkg[k : k + 32]).digest()
        dkg = dkg[:k] + false + dkg[k + 32 :]
        payload = bytes(Writer().var(dkg).var(setup))
        return [dataclasses.replace(env, payload=payload)]

    return hook


def _keygen(tamper: Mapping[int, Tamper] | None = None) -> SimulationResult:
    sid = secrets.token_bytes(32)
    return run_protocol({i: KeygenParty(sid, i, [1, 2, 3], 2) for i in (1, 2, 3)}, tamper=tamper)


def _refresh(shares: Mapping[int, KeyShare], tamper: Mapping[int, Tamper]) -> SimulationResult:
    sid = secrets.token_bytes(32)
    parties: dict[int, RoundBasedParty] = {i: RefreshParty(sid, s) for i, s in shares.items()}
    return run_protocol(parties, tamper=tamper)


@pytest.mark.parametrize("mode", ["keygen", "refresh"])
def test_lying_echo_cannot_frame_an_honest_dealer(mode: str) -> None:
    tamper = {LIAR: _lie_about(1)}
    if mode == "keygen":
        res = _keygen(tamper)
    else:
        clean = _keygen()
        assert not clean.errors and len(clean.outputs) == 3, clean.errors
        res = _refresh(clean.outputs, tamper)
    for pid in (1, 2):
        assert pid not in res.outputs
        assert isinstance(res.aborted[pid], EquivocationError), res.aborted[pid]
    assert res.aborted[1].culprits == {LIAR}  # dealer 1 knows what it broadcast
    assert res.aborted[2].culprits == frozenset()  # equivocation by 1, or a lie by 3?
    assert res.culprits() <= {LIAR}
