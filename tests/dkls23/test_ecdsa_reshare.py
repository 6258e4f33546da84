"""Resharing a DKLs23 key to a new node set and threshold, same public key."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import secrets
from collections.abc import Mapping, Sequence

import pytest

from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.dkls23.reshare import ReshareParty
from signer_nodes.mpc.dkls23.sign import signature_share
from signer_nodes.mpc.encoding import Reader
from signer_nodes.mpc.errors import (
    EquivocationError,
    InvalidCommitmentError,
    InvalidShareError,
    LocalMisuseError,
)
from signer_nodes.mpc.groups import SECP256K1
from signer_nodes.mpc.session import Envelope, RoundBasedParty
from signer_nodes.mpc.simulation import SimulationResult, Tamper, run_protocol
from tests.dkls23.ecdsa_helpers import (
    presign,
    run_keygen,
    run_presign,
    sign_direct,
    verify_independently,
)


def _reshare(
    old: Mapping[int, KeyShare],
    dealers: Sequence[int],
    new_parties: Sequence[int],
    new_t: int,
    tamper: Mapping[int, Tamper] | None = None,
) -> SimulationResult:
    sid = secrets.token_bytes(32)
    public = next(iter(old.values())).public
    parties: dict[int, RoundBasedParty] = {
        i: ReshareParty(
            sid,
            i,
            old_public=public,
            dealers=dealers,
            new_parties=new_parties,
            new_threshold=new_t,
            old_share=old.get(i) if i in dealers else None,
        )
        for i in sorted(set(dealers) | set(new_parties))
    }
    return run_protocol(parties, tamper=tamper)


@pytest.mark.parametrize(
    ("t", "n", "dealers", "new_parties", "new_t"),
    [
        (2, 3, (1, 3), (1, 2, 3, 4, 5), 3),  # grow: (2,3) -> (3,5)
        (3, 5, (2, 4, 5), (4, 6, 7), 2),  # new node set and threshold: (3,5) -> (2,3)
        (2, 2, (1, 2), (1, 2, 3), 2),  # add a node
    ],
)
def test_reshare_keeps_the_key(
    t: int, n: int, dealers: tuple[int, ...], new_parties: tuple[int, ...], new_t: int
) -> None:
    old = run_keygen(t, n)
    pk = old[1].group_public_key
    old_presigs = presign(old, tuple(range(1, t + 1)))
    res = _reshare(old, dealers, new_parties, new_t)
    assert not res.errors, res.errors
    new = {i: s for i, s in res.outputs.items() if s is not None}
    assert set(new) == set(new_parties)
    assert all(res.outputs[d] is None for d in dealers if d not in new_parties)
    for share in new.values():
        assert share.group_public_key == pk and share.chain_code == old[1].chain_code
        assert share.threshold == new_t and share.parties == tuple(sorted(new_parties))
    for signers in itertools.combinations(sorted(new_parties), new_t):
        msg = hashlib.sha256(secrets.token_bytes(8)).digest()
        verify_independently(pk, msg, sign_direct(new, presign(new, signers), msg))
    # fewer than t' new parties cannot start; old presignatures are refused
    with pytest.raises(LocalMisuseError):
        run_presign(new, sorted(new_parties)[: new_t - 1])
    common = set(old) & set(new)
    for i in common:
        with pytest.raises(LocalMisuseError):
            signature_share(old_presigs.get(i) or next(iter(old_presigs.values())), new[i], msg)


def test_reshare_needs_t_dealers() -> None:
    old = run_keygen(3, 5)
    with pytest.raises(LocalMisuseError):
        _reshare(old, (1, 2), (1, 2, 3), 2)


def _dealer_tamper(round_: int, change: object) -> Tamper:
    def hook(env: Envelope, rcpt: int) -> list[Envelope]:
        if env.round != round_:
            return [env]
        assert callable(change)
        return [dataclasses.replace(env, payload=change(env.payload, rcpt))]

    return hook


def test_dealer_changing_the_key_is_named() -> None:
    old = run_keygen(2, 3)

    def change(payload: bytes, rcpt: int) -> bytes:
        r = Reader(payload)
        count = r.u16()
        points = [SECP256K1.element_from_bytes(r.var()) for _ in range(count)]
        points[0] = points[0] + SECP256K1.generator
        out = count.to_bytes(2, "big")
        for p in points:
            enc = p.to_bytes()
            out += len(enc).to_bytes(4, "big") + enc
        return out

    res = _reshare(old, (1, 2), (1, 2, 3, 4), 3, tamper={2: _dealer_tamper(1, change)})
    for pid in (1, 3, 4):
        assert isinstance(res.aborted[pid], InvalidCommitmentError)
        assert res.aborted[pid].culprits == {2}
    assert all(res.outputs.get(p) is None for p in (1, 3, 4))


def test_dealer_bad_share_is_named() -> None:
    old = run_keygen(2, 3)

    def change(payload: bytes, rcpt: int) -> bytes:
        value = (int.from_bytes(payload[-32:], "big") + 1) % SECP256K1.order
        return payload[:-32] + value.to_bytes(32, "big")

    res = _reshare(old, (1, 2), (1, 2, 3, 4), 3, tamper={2: _dealer_tamper(2, change)})
    for pid in (1, 3, 4):
        assert isinstance(res.aborted[pid], InvalidShareError)
        assert res.aborted[pid].culprits == {2}


def test_dealer_equivocation_is_caught_by_the_echo() -> None:
    old = run_keygen(2, 3)
    evil_commitment: dict[str, bytes] = {}

    def change(payload: bytes, rcpt: int) -> bytes:
        if rcpt != 4:
            return payload
        # a different (valid-looking) higher coefficient for party 4 only
        r = Reader(payload)
        count = r.u16()
        points = [SECP256K1.element_from_bytes(r.var()) for _ in range(count)]
        points[-1] = points[-1] + SECP256K1.generator
        out = count.to_bytes(2, "big")
        for p in points:
            enc = p.to_bytes()
            out += len(enc).to_bytes(4, "big") + enc
        evil_commitment["sent"] = out
        return out

    res = _reshare(old, (1, 2), (1, 2, 3, 4), 3, tamper={2: _dealer_tamper(1, change)})
    assert evil_commitment
    assert all(res.outputs.get(p) is None for p in (1, 3, 4))
    errors = [  # the honest parties' view (the equivocating dealer 2 runs honest code)
        e
        for p, e in res.aborted.items()
        if p != 2 and isinstance(e, EquivocationError | InvalidShareError)
    ]
    assert errors and all(e.culprits <= {2} for e in errors)  # no honest party named
    assert any(e.culprits == {2} for e in errors)


def test_lying_echo_cannot_frame_an_honest_dealer() -> None:
    """New party 4 (not a dealer) sends round-3 echoes with a false digest for
    dealer 1's commitment.  Dealer 1 knows what it broadcast and names 4; the
    other new parties cannot tell whether 1 equivocated or 4 lies and name no
    one.  The old check named dealer 1, an honest party."""
    old = run_keygen(2, 3)

    def lie(env: Envelope, rcpt: int) -> list[Envelope]:
        if env.round != 3:
            return [env]
        r = Reader(env.payload)
        echo = [r.fixed(32) for _ in range(r.u16())]
        rest = env.payload[2 + 32 * len(echo) :]
        echo[0] = hashlib.sha256(echo[0]).digest()  # dealer 1's entry
        payload = len(echo).to_bytes(2, "big") + b"".join(echo) + rest
        return [dataclasses.replace(env, payload=payload)]

    res = _reshare(old, (1, 2), (1, 2, 3, 4), 3, tamper={4: lie})
    assert all(res.outputs.get(p) is None for p in (1, 2, 3))
    assert isinstance(res.aborted[1], EquivocationError) and res.aborted[1].culprits == {4}
    for pid in (2, 3):
        assert isinstance(res.aborted[pid], EquivocationError)
        assert not res.aborted[pid].culprits
