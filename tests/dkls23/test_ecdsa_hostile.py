"""Hostile parties against DKLs23 keygen, presign and the final step.

Per round: the honest parties abort (or refuse the message), no signature is
released, and the culprit is named wherever the protocol allows.  Where
DKLs23 only guarantees abort (the step-8 sum check, the step-10 signature
verification) the error carries no culprit, and the tests say so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from signer_nodes.mpc.dkls23 import presign as presign_module
from signer_nodes.mpc.dkls23.context import random_scalar, system_random
from signer_nodes.mpc.dkls23.keygen import KeygenParty
from signer_nodes.mpc.dkls23.multiplication import MulRound2Message
from signer_nodes.mpc.dkls23.ot_extension import OtExtensionMessage
from signer_nodes.mpc.dkls23.presign import (
    PresignParty,
    PresignRound1Message,
    PresignRound2Message,
)
from signer_nodes.mpc.dkls23.setup import BobSetup
from signer_nodes.mpc.dkls23.sign import SignatureShare, SignParty
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import (
    Dkls23ConsistencyError,
    DuplicateMessageError,
    EquivocationError,
    ForeignSessionError,
    InvalidCommitmentError,
    InvalidMessageError,
    MultiplicationCheckError,
    NonceReuseError,
    OtConsistencyError,
    RemoteProtocolError,
    SignatureAbortError,
)
from signer_nodes.mpc.groups import SECP256K1
from signer_nodes.mpc.session import Envelope, RoundBasedParty
from signer_nodes.mpc.simulation import SimulationResult, Tamper, run_protocol
from tests.dkls23.ecdsa_helpers import (
    Q,
    cached_keygen,
    presign,
    presign_parties,
    run_presign,
    sign_session,
)

SIGNERS = (1, 2, 3)
EVIL = 2


def _msg() -> bytes:
    return hashlib.sha256(secrets.token_bytes(8)).digest()


def _on_round(round_: int, edit: Callable[[bytes, int], bytes]) -> Tamper:
    """A tamper hook rewriting the payload of one round (per recipient)."""

    def hook(env: Envelope, rcpt: int) -> list[Envelope]:
        if env.round != round_:
            return [env]
        return [dataclasses.replace(env, payload=edit(env.payload, rcpt))]

    return hook


def _assert_named_abort(res: SimulationResult, error: type[RemoteProtocolError]) -> None:
    assert not res.outputs, "an honest party produced output despite the attack"
    honest = set(res.aborted) - {EVIL}
    assert honest, "no honest party aborted"
    for pid in honest:
        err = res.aborted[pid]
        assert isinstance(err, error), err
        assert err.culprits == {EVIL}, err


# ------------------------------------------------------------------ keygen


def test_keygen_malformed_base_ot_message_names_sender() -> None:
    def edit(payload: bytes, rcpt: int) -> bytes:
        r = Reader(payload)
        dkg, setup = r.var(), r.var()
        broken = bytearray(setup)
        broken[4 + 1 + 32 + 2] ^= 0xFF  # first point of the base-OT receiver message
        return bytes(Writer().var(dkg).var(bytes(broken)))

    ids = [1, 2, 3]
    sid = secrets.token_bytes(32)
    res = run_protocol(
        {i: KeygenParty(sid, i, ids, 2) for i in ids}, tamper={EVIL: _on_round(2, edit)}
    )
    assert set(res.outputs) <= {EVIL}
    for pid in (1, 3):
        assert isinstance(res.aborted[pid], InvalidMessageError)
        assert res.aborted[pid].culprits == {EVIL}


def test_keygen_base_ot_from_another_session_names_sender() -> None:
    ids = [1, 2]
    old_sid = secrets.token_bytes(32)
    captured: dict[int, bytes] = {}

    def capture(env: Envelope, rcpt: int) -> list[Envelope]:
        if env.round == 2:
            captured[rcpt] = env.payload
        return [env]

    run_protocol({i: KeygenParty(old_sid, i, ids, 2) for i in ids}, tamper={EVIL: capture})

    def replay_setup(payload: bytes, rcpt: int) -> bytes:
        r = Reader(payload)
        dkg = r.var()
        old = Reader(captured[rcpt])
        old.var()
        return bytes(Writer().var(dkg).var(old.var()))

    new_sid = secrets.token_bytes(32)
    res = run_protocol(
        {i: KeygenParty(new_sid, i, ids, 2) for i in ids},
        tamper={EVIL: _on_round(2, replay_setup)},
    )
    assert isinstance(res.aborted[1], ForeignSessionError) and res.aborted[1].culprits == {EVIL}
    assert 1 not in res.outputs


def test_dishonest_base_ot_sender_is_named_at_first_extension() -> None:
    """Endemic OT cannot detect a base-OT sender (Bob) whose seeds disagree
    with Alice's; the first OT extension of the pair does, naming him."""
    shares = dict(cached_keygen(2, 3))
    good = shares[EVIL].bob_setups[1]
    seeds0, seeds1 = list(good.seeds0), list(good.seeds1)
    seeds0[5], seeds1[5] = secrets.token_bytes(32), secrets.token_bytes(32)
    bad = BobSetup(alice=1, bob=EVIL, seeds0=seeds0, seeds1=seeds1)
    shares[EVIL] = dataclasses.replace(shares[EVIL], bob_setups={**shares[EVIL].bob_setups, 1: bad})
    res = run_presign(shares, (1, EVIL))
    assert not res.outputs
    assert isinstance(res.aborted[1], OtConsistencyError)
    assert res.aborted[1].culprits == {EVIL}


# ------------------------------------------------------------------ presign round 1


def test_wrong_ot_extension_message_names_bob() -> None:
    def edit(payload: bytes, rcpt: int) -> bytes:
        m = PresignRound1Message.from_bytes(payload, sender=EVIL)
        u = bytearray(m.mul.u)
        u[100] ^= 0x01
        mul = OtExtensionMessage(
            tag=m.mul.tag,
            nonce=m.mul.nonce,
            u=bytes(u),
            x_check=m.mul.x_check,
            t_check=m.mul.t_check,
        )
        return PresignRound1Message(m.commitment, mul).to_bytes()

    res = run_presign(cached_keygen(2, 3), SIGNERS, tamper={EVIL: _on_round(1, edit)})
    _assert_named_abort(res, OtConsistencyError)


def test_round1_message_from_another_session_names_sender() -> None:
    shares = cached_keygen(2, 3)
    old: dict[int, bytes] = {}

    def capture(env: Envelope, rcpt: int) -> list[Envelope]:
        if env.round == 1:
            old[rcpt] = env.payload
        return [env]

    run_presign(shares, SIGNERS, tamper={EVIL: capture})
    res = run_presign(shares, SIGNERS, tamper={EVIL: _on_round(1, lambda p, r: old[r])})
    _assert_named_abort(res, ForeignSessionError)


def test_envelope_of_another_session_is_refused_and_nothing_is_output() -> None:
    other = secrets.token_bytes(32)

    def hook(env: Envelope, rcpt: int) -> list[Envelope]:
        return [dataclasses.replace(env, session_id=other)]

    res = run_presign(cached_keygen(2, 3), SIGNERS, tamper={EVIL: hook})
    assert not res.outputs
    for pid in (1, 3):
        assert any(
            isinstance(e, ForeignSessionError) and e.culprits == {EVIL} for e in res.errors[pid]
        )


def test_replayed_message_is_refused_and_the_session_completes() -> None:
    def twice(env: Envelope, rcpt: int) -> list[Envelope]:
        return [env, env]

    res = run_presign(cached_keygen(2, 3), SIGNERS, tamper={EVIL: twice})
    assert set(res.outputs) == set(SIGNERS)
    assert any(isinstance(e, DuplicateMessageError) and e.culprits == {EVIL} for e in res.errors[1])


# ------------------------------------------------------------------ presign round 2


def _edit_round2(change: Callable[[PresignRound2Message], PresignRound2Message]) -> Tamper:
    def edit(payload: bytes, rcpt: int) -> bytes:
        return change(PresignRound2Message.from_bytes(payload, sender=EVIL)).to_bytes()

    return _on_round(2, edit)


def test_wrong_correlation_names_alice() -> None:
    def change(m: PresignRound2Message) -> PresignRound2Message:
        a_tilde = list(m.mul.a_tilde)
        a_tilde[7] = (a_tilde[7] + 1) % Q
        mul = MulRound2Message(
            tag=m.mul.tag, nonce=m.mul.nonce, a_tilde=a_tilde, eta=m.mul.eta, mu=m.mul.mu
        )
        return dataclasses.replace(m, mul=mul)

    res = run_presign(cached_keygen(2, 3), SIGNERS, tamper={EVIL: _edit_round2(change)})
    _assert_named_abort(res, MultiplicationCheckError)


def test_instance_point_not_matching_commitment_names_sender() -> None:
    def change(m: PresignRound2Message) -> PresignRound2Message:
        return dataclasses.replace(m, instance_point=m.instance_point + SECP256K1.generator)

    res = run_presign(cached_keygen(2, 3), SIGNERS, tamper={EVIL: _edit_round2(change)})
    _assert_named_abort(res, InvalidCommitmentError)


@pytest.mark.parametrize("field", ["gamma_u", "gamma_v", "public_share"])
def test_wrong_check_values_name_sender(field: str) -> None:
    def change(m: PresignRound2Message) -> PresignRound2Message:
        point = getattr(m, field) + SECP256K1.generator
        return dataclasses.replace(m, **{field: point})

    res = run_presign(cached_keygen(2, 3), SIGNERS, tamper={EVIL: _edit_round2(change)})
    _assert_named_abort(res, Dkls23ConsistencyError)


def _wrong_input_party(which: int) -> type[PresignParty]:
    """A signer that feeds its multiplications a wrong ``r_i`` (which=0) or
    ``sk_i`` (which=1) while announcing the honest ``R_i`` / ``pk_i``."""

    class WrongInput(PresignParty):
        def _on_round1(self, messages: dict[int, Envelope]) -> list[Envelope]:
            honest = getattr(presign_module, "alice_round2")  # noqa: B009

            def evil(setup: Any, ctx: Any, a: Any, msg: Any, rand: Any = system_random) -> Any:
                a = list(a)
                a[which] = (a[which] + 1) % Q
                return honest(setup, ctx, a, msg, rand=rand)

            setattr(presign_module, "alice_round2", evil)  # noqa: B010
            try:
                return super()._on_round1(messages)
            finally:
                setattr(presign_module, "alice_round2", honest)  # noqa: B010

    return WrongInput


@pytest.mark.parametrize("which", [0, 1], ids=["instance-key", "key-share"])
def test_wrong_multiplication_input_names_sender(which: int) -> None:
    shares = cached_keygen(2, 3)
    sid = secrets.token_bytes(32)
    parties: dict[int, RoundBasedParty] = {
        i: (_wrong_input_party(which) if i == EVIL else PresignParty)(sid, shares[i], SIGNERS)
        for i in SIGNERS
    }
    _assert_named_abort(run_protocol(parties), Dkls23ConsistencyError)


class EquivocatingR(PresignParty):
    """Opens a different, consistently used instance key to each peer: every
    pairwise check passes, but the signers would disagree on R."""

    def _first_messages(self) -> list[Envelope]:
        self._per_peer = {j: random_scalar(system_random) for j in self._peers}
        out = []
        peers = self._peers
        for j in peers:
            self._r = self._per_peer[j]
            self._big_r = SECP256K1.base_mult(self._r)
            self._peers = (j,)
            out += super()._first_messages()
        self._peers = peers
        return out

    def _on_round1(self, messages: dict[int, Envelope]) -> list[Envelope]:
        out = []
        peers = self._peers
        for j in peers:
            self._r = self._per_peer[j]
            self._big_r = SECP256K1.base_mult(self._r)
            self._peers = (j,)
            out += super()._on_round1(messages)
        self._peers = peers
        return out


def test_inconsistent_nonce_commitments_caught_by_echo_and_named() -> None:
    shares = cached_keygen(2, 3)
    sid = secrets.token_bytes(32)
    parties: dict[int, RoundBasedParty] = {
        i: (EquivocatingR if i == EVIL else PresignParty)(sid, shares[i], SIGNERS) for i in SIGNERS
    }
    res = run_protocol(parties)
    assert not res.outputs
    named: set[int] = set()
    for pid in (1, 3):
        err = res.aborted[pid]
        assert isinstance(err, EquivocationError), err
        assert err.culprits <= {EVIL}, err  # never an honest party
        named |= err.culprits
    # party 1 got an instance point that contradicts EVIL's own echo: provable;
    # party 3 only sees party 1's echo disagree about EVIL: abort only
    assert named == {EVIL}


def _lying_echo(about: int) -> Tamper:
    """EVIL reports, in its round-3 echo, a different digest for ``about``."""

    def edit(payload: bytes, rcpt: int) -> bytes:
        r = Reader(payload)
        digests = [r.fixed(32) for _ in range(r.u16())]
        k = SIGNERS.index(about)
        digests[k] = hashlib.sha256(digests[k]).digest()
        w = Writer().u16(len(digests))
        for d in digests:
            w.fixed(d)
        return bytes(w)

    return _on_round(3, edit)


def test_lying_echo_cannot_frame_an_honest_signer() -> None:
    """A false echo about honest party 1's values: party 1 knows what it sent
    and names the liar; party 3 cannot tell a lie from an equivocation by 1
    and names no one (the old echo check named party 1, an honest party)."""
    shares = cached_keygen(2, 3)
    res = run_presign(shares, SIGNERS, tamper={EVIL: _lying_echo(1)})
    assert set(res.outputs) <= {EVIL}
    assert isinstance(res.aborted[1], EquivocationError)
    assert res.aborted[1].culprits == {EVIL}
    assert isinstance(res.aborted[3], EquivocationError)
    assert not res.aborted[3].culprits


def test_echo_contradicting_its_own_values_names_the_sender() -> None:
    shares = cached_keygen(2, 3)
    res = run_presign(shares, SIGNERS, tamper={EVIL: _lying_echo(EVIL)})
    assert set(res.outputs) <= {EVIL}
    for pid in (1, 3):
        assert isinstance(res.aborted[pid], EquivocationError)
        assert res.aborted[pid].culprits == {EVIL}


def test_wrong_psi_only_aborts_at_the_final_step() -> None:
    """``psi`` has no check in Protocol 3.6: a wrong one spoils ``u_i, v_i``,
    and step 10 aborts without a culprit (the paper guarantees abort only)."""

    def change(m: PresignRound2Message) -> PresignRound2Message:
        return dataclasses.replace(m, psi=(m.psi + 1) % Q)

    shares = cached_keygen(2, 3)
    res = run_presign(shares, SIGNERS, tamper={EVIL: _edit_round2(change)})
    assert set(res.outputs) == set(SIGNERS)  # undetectable before the final step
    signed = sign_session(shares, res.outputs, _msg())
    assert not signed.outputs
    for err in signed.aborted.values():
        assert isinstance(err, SignatureAbortError) and not err.culprits


# ------------------------------------------------------------------ final step


@pytest.mark.parametrize("field", ["u", "w"])
def test_wrong_final_share_aborts_without_signature(field: str) -> None:
    def edit(payload: bytes, rcpt: int) -> bytes:
        share = SignatureShare.from_bytes(payload)
        value = (getattr(share, field) + 1) % Q
        return dataclasses.replace(share, **{field: value}).to_bytes()

    shares = cached_keygen(2, 3)
    res = sign_session(shares, presign(shares, SIGNERS), _msg(), tamper={EVIL: _on_round(1, edit)})
    # no honest party releases a signature (the cheater received honest shares
    # and can combine them itself: inherent in the last round of DKLs23)
    assert set(res.outputs) <= {EVIL}
    assert set(res.aborted) == {1, 3}
    for err in res.aborted.values():
        assert isinstance(err, SignatureAbortError)
        assert not err.culprits  # DKLs23 step 10: abort, no attribution


def test_share_from_another_signature_names_sender() -> None:
    shares = cached_keygen(2, 3)
    stale: dict[int, bytes] = {}

    def capture(env: Envelope, rcpt: int) -> list[Envelope]:
        stale[rcpt] = env.payload
        return [env]

    assert sign_session(shares, presign(shares, SIGNERS), _msg(), tamper={EVIL: capture}).outputs
    res = sign_session(
        shares, presign(shares, SIGNERS), _msg(), tamper={EVIL: _on_round(1, lambda p, r: stale[r])}
    )
    assert set(res.outputs) <= {EVIL}
    for pid in (1, 3):
        assert isinstance(res.aborted[pid], ForeignSessionError)
        assert res.aborted[pid].culprits == {EVIL}


def test_replayed_presignature_is_refused() -> None:
    shares = cached_keygen(2, 3)
    presigs = presign(shares, (1, 3))
    first = sign_session(shares, presigs, _msg())
    assert set(first.outputs) == {1, 3}
    again = SignParty(presigs[1], shares[1], _msg())
    with pytest.raises(NonceReuseError):
        again.start()


def test_presign_session_parties_are_fresh_per_session() -> None:
    """Two presign sessions over the same signers give different R."""
    shares = cached_keygen(2, 3)
    a = run_protocol(presign_parties(shares, (1, 2))).outputs
    b = run_protocol(presign_parties(shares, (1, 2))).outputs
    assert a[1].public.big_r != b[1].public.big_r
