"""MR19 endemic base OT (key setup of DKLs23, Section 5.1)."""

from __future__ import annotations

import pytest

from signer_nodes.mpc.dkls23.base_ot import (
    BaseOtReceiverMessage,
    BaseOtSenderMessage,
    base_ot_receiver_round1,
    base_ot_sender_round1,
)
from signer_nodes.mpc.dkls23.context import PairContext
from signer_nodes.mpc.dkls23.ot_extension import ote_receiver_extend, ote_sender_extend
from signer_nodes.mpc.dkls23.params import BASE_OT_COUNT, XI
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.errors import (
    EncodingError,
    ForeignSessionError,
    InvalidMessageError,
    NonceReuseError,
    OtConsistencyError,
)
from signer_nodes.mpc.groups.secp256k1 import SECP256K1
from tests.dkls23.helpers import ALICE, BOB, DetRandom, setup_pair, sign_ctx

CTX = PairContext(session_id=b"keygen-session", alice=ALICE, bob=BOB)


def _bit(data: bytes, i: int) -> int:
    return (data[i >> 3] >> (i & 7)) & 1


def test_receiver_gets_exactly_the_chosen_seed(setups: tuple[AliceSetup, BobSetup]) -> None:
    alice, bob = setups
    assert len(alice.seeds) == BASE_OT_COUNT
    for i in range(BASE_OT_COUNT):
        c = _bit(alice.delta, i)
        chosen, other = (bob.seeds1[i], bob.seeds0[i]) if c else (bob.seeds0[i], bob.seeds1[i])
        assert alice.seeds[i] == chosen
        assert alice.seeds[i] != other
    # Alice's choice bits are random, not constant
    assert 0 < sum(_bit(alice.delta, i) for i in range(BASE_OT_COUNT)) < BASE_OT_COUNT


def test_deterministic_under_injected_randomness() -> None:
    a1, b1 = setup_pair(CTX, DetRandom(b"seed"))
    a2, b2 = setup_pair(CTX, DetRandom(b"seed"))
    assert a1.to_bytes() == a2.to_bytes() and b1.to_bytes() == b2.to_bytes()


def test_seeds_bound_to_session_and_pair() -> None:
    a1, _ = setup_pair(CTX, DetRandom(b"seed"))
    other = PairContext(session_id=b"other-session", alice=ALICE, bob=BOB)
    a2, _ = setup_pair(other, DetRandom(b"seed"))
    assert a1.delta == a2.delta  # same randomness ...
    assert set(a1.seeds).isdisjoint(a2.seeds)  # ... but seeds bound to the session


def test_message_and_setup_round_trips(setups: tuple[AliceSetup, BobSetup]) -> None:
    _, rmsg = base_ot_receiver_round1(CTX)
    _, smsg = base_ot_sender_round1(CTX)
    assert BaseOtReceiverMessage.from_bytes(rmsg.to_bytes(), sender=ALICE) == rmsg
    assert BaseOtSenderMessage.from_bytes(smsg.to_bytes(), sender=BOB) == smsg
    alice, bob = setups
    assert AliceSetup.from_bytes(alice.to_bytes()).to_bytes() == alice.to_bytes()
    assert BobSetup.from_bytes(bob.to_bytes()).to_bytes() == bob.to_bytes()
    assert alice.to_bytes()[0] == 1 and bob.to_bytes()[0] == 1
    with pytest.raises(EncodingError):
        AliceSetup.from_bytes(bob.to_bytes())
    with pytest.raises(EncodingError):
        BobSetup.from_bytes(bob.to_bytes()[:-1])
    with pytest.raises(EncodingError):
        BobSetup.from_bytes(b"\x02" + bob.to_bytes()[1:])


def test_secrets_are_redacted(setups: tuple[AliceSetup, BobSetup]) -> None:
    alice, bob = setups
    rstate, _ = base_ot_receiver_round1(CTX)
    sstate, _ = base_ot_sender_round1(CTX)
    for obj, secret in ((alice, alice.seeds[0]), (bob, bob.seeds1[0])):
        assert "redacted" in repr(obj) and secret.hex() not in repr(obj)
    assert "redacted" in repr(rstate) and "redacted" in repr(sstate)


def test_states_are_single_use() -> None:
    rstate, rmsg = base_ot_receiver_round1(CTX)
    sstate, smsg = base_ot_sender_round1(CTX)
    rstate.finish(smsg)
    sstate.finish(rmsg)
    with pytest.raises(NonceReuseError):
        rstate.finish(smsg)
    with pytest.raises(NonceReuseError):
        sstate.finish(rmsg)


# ------------------------------------------------------------------ hostile


def _points(data: bytes, count: int) -> list[bytes]:
    body = data[1 + 32 + 2 :]
    return [body[33 * i : 33 * (i + 1)] for i in range(count)]


OFF_CURVE = bytes([0x02]) + (5).to_bytes(32, "big")  # x = 5 is not on secp256k1


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d[:-1], id="truncated"),
        pytest.param(lambda d: d + b"\x00", id="oversized"),
        pytest.param(lambda d: b"\x07" + d[1:], id="version"),
        pytest.param(lambda d: d[:33] + (5).to_bytes(2, "big") + d[35:], id="count"),
        pytest.param(lambda d: d[:35] + OFF_CURVE + d[68:], id="off-curve"),
        pytest.param(lambda d: d[:35] + b"\x00" * 33 + d[68:], id="identity"),
        pytest.param(lambda d: d[:35] + b"\x04" + d[36:68] + d[68:], id="bad-prefix"),
    ],
)
def test_malformed_messages_name_the_sender(mutate) -> None:  # type: ignore[no-untyped-def]
    _, rmsg = base_ot_receiver_round1(CTX)
    _, smsg = base_ot_sender_round1(CTX)
    with pytest.raises(InvalidMessageError) as e1:
        BaseOtReceiverMessage.from_bytes(mutate(rmsg.to_bytes()), sender=ALICE)
    assert e1.value.culprits == {ALICE}
    with pytest.raises(InvalidMessageError) as e2:
        BaseOtSenderMessage.from_bytes(mutate(smsg.to_bytes()), sender=BOB)
    assert e2.value.culprits == {BOB}


@pytest.mark.parametrize(
    "other",
    [
        PairContext(session_id=b"another-session", alice=ALICE, bob=BOB),
        PairContext(session_id=b"keygen-session", alice=ALICE, bob=3),
        PairContext(session_id=b"keygen-session", alice=BOB, bob=ALICE),
    ],
    ids=["session", "pair", "direction"],
)
def test_messages_of_another_session_or_pair_are_refused(other: PairContext) -> None:
    rstate, _ = base_ot_receiver_round1(CTX)
    sstate, _ = base_ot_sender_round1(CTX)
    _, foreign_r = base_ot_receiver_round1(other)
    _, foreign_s = base_ot_sender_round1(other)
    with pytest.raises(ForeignSessionError) as e1:
        sstate.finish(foreign_r)
    assert e1.value.culprits == {ALICE}
    with pytest.raises(ForeignSessionError) as e2:
        rstate.finish(foreign_s)
    assert e2.value.culprits == {BOB}


def test_wrong_sender_response_is_caught_by_first_extension() -> None:
    """Endemic OT detects no valid-but-wrong response by itself (MR19: a
    corrupt party may pick its outputs); Bob's wrong ``z`` makes Alice's seeds
    disagree with his, which the first extension's check attributes to Bob."""
    rstate, rmsg = base_ot_receiver_round1(CTX)
    sstate, smsg = base_ot_sender_round1(CTX)
    z = list(smsg.z)
    z[7] = z[7] + SECP256K1.generator
    bad = BaseOtSenderMessage(tag=smsg.tag, z=tuple(z))
    alice = rstate.finish(bad)
    bob = sstate.finish(rmsg)
    ctx = sign_ctx()
    _, msg = ote_receiver_extend(bob, ctx, bytes(XI // 8))
    with pytest.raises(OtConsistencyError) as err:
        ote_sender_extend(alice, ctx, msg)
    assert err.value.culprits == {BOB}
