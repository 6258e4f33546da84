"""Proactive refresh of DKLs23 key shares: same key, new shares and new
pairwise setup; old shares and old presignatures stop working."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Mapping

import pytest

from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.dkls23.refresh import RefreshParty
from signer_nodes.mpc.dkls23.sign import signature_share
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import InvalidShareError, LocalMisuseError, RemoteProtocolError
from signer_nodes.mpc.groups import SECP256K1
from signer_nodes.mpc.session import Envelope
from signer_nodes.mpc.simulation import SimulationResult, Tamper, run_protocol
from tests.dkls23.ecdsa_helpers import (
    presign,
    run_keygen,
    run_presign,
    sign_direct,
    verify_independently,
)


def _refresh(
    shares: Mapping[int, KeyShare], tamper: Mapping[int, Tamper] | None = None
) -> SimulationResult:
    sid = secrets.token_bytes(32)
    return run_protocol({i: RefreshParty(sid, s) for i, s in shares.items()}, tamper=tamper)


def test_refresh_keeps_key_and_retires_old_material() -> None:
    old = run_keygen(2, 3)
    pk = old[1].group_public_key
    old_presigs = presign(old, (1, 2))
    res = _refresh(old)
    assert not res.errors
    new = res.outputs
    for i in old:
        assert new[i].group_public_key == pk and new[i].chain_code == old[i].chain_code
        assert new[i].key_package.signing_share != old[i].key_package.signing_share
        assert new[i].share_id != old[i].share_id
        assert new[i].zero_seeds != old[i].zero_seeds
        assert new[i].alice_setups[next(iter(new[i].alice_setups))].seeds != (
            old[i].alice_setups[next(iter(old[i].alice_setups))].seeds
        )
    msg = hashlib.sha256(b"after refresh").digest()
    for signers in ((1, 2), (1, 3), (2, 3)):
        verify_independently(pk, msg, sign_direct(new, presign(new, signers), msg))
    # presignatures from before the refresh are refused with the new shares
    with pytest.raises(LocalMisuseError):
        signature_share(old_presigs[1], new[1], msg)
    # an old share does not work together with new shares
    mixed = {1: old[1], 2: new[2]}
    res = run_presign(mixed, (1, 2))
    assert not res.outputs
    assert all(isinstance(e, RemoteProtocolError) for e in res.aborted.values())
    assert res.aborted


def test_refresh_names_a_bad_dealer() -> None:
    old = run_keygen(2, 3)

    def bad_share(env: Envelope, rcpt: int) -> list[Envelope]:
        if env.round != 2:
            return [env]
        r = Reader(env.payload)
        dkg, setup = bytearray(r.var()), r.var()
        value = (int.from_bytes(dkg[:32], "big") + 1) % SECP256K1.order
        dkg[:32] = value.to_bytes(32, "big")
        return [dataclasses.replace(env, payload=bytes(Writer().var(bytes(dkg)).var(setup)))]

    res = _refresh(old, tamper={2: bad_share})
    for pid in (1, 3):
        assert isinstance(res.aborted[pid], InvalidShareError)
        assert res.aborted[pid].culprits == {2}
    assert not set(res.outputs) - {2}
