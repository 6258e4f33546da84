"""DKLs23 two-party multiplication pi_RVOLE (Protocol 5.2)."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signer_nodes.mpc.dkls23.context import PairContext
from signer_nodes.mpc.dkls23.multiplication import (
    BobRound1State,
    MulRound1Message,
    MulRound2Message,
    alice_round2,
    bob_round1,
    gadget_vector,
)
from signer_nodes.mpc.dkls23.params import ELL, OT_WIDTH, XI
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.errors import (
    EncodingError,
    ForeignSessionError,
    InvalidMessageError,
    LocalMisuseError,
    MultiplicationCheckError,
    NonceReuseError,
    OtConsistencyError,
)
from signer_nodes.mpc.groups.secp256k1 import ORDER
from tests.dkls23.helpers import (
    ALICE,
    BOB,
    DetRandom,
    hostile_alice_round2,
    hostile_bob_extend,
    sign_ctx,
)

Setups = tuple[AliceSetup, BobSetup]

scalars = st.one_of(
    st.sampled_from([0, 1, 2, ORDER - 1, ORDER - 2, ORDER // 2]),
    st.integers(min_value=0, max_value=ORDER - 1),
)


def _run(setups: Setups, a: list[int], ctx: PairContext | None = None):  # type: ignore[no-untyped-def]
    alice, bob = setups
    ctx = ctx or sign_ctx()
    state, m1 = bob_round1(bob, ctx)
    c, m2 = alice_round2(alice, ctx, a, MulRound1Message.from_bytes(m1.to_bytes(), sender=BOB))
    b = state.b
    d = state.finish(MulRound2Message.from_bytes(m2.to_bytes(), sender=ALICE))
    return b, c, d


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a0=scalars, a1=scalars)
def test_shares_add_up_to_the_product(setups: Setups, a0: int, a1: int) -> None:
    b, c, d = _run(setups, [a0, a1])
    assert len(c) == len(d) == ELL
    assert (c[0] + d[0]) % ORDER == a0 * b % ORDER
    assert (c[1] + d[1]) % ORDER == a1 * b % ORDER
    assert all(0 <= v < ORDER for v in (*c, *d))


def test_bob_input_is_the_gadget_encoding_of_his_bits(setups: Setups) -> None:
    _, bob = setups
    state, _ = bob_round1(bob, sign_ctx(), rand=DetRandom(b"beta"))
    beta = DetRandom(b"beta")(XI // 8)
    bits = [(beta[j >> 3] >> (j & 7)) & 1 for j in range(XI)]
    assert state.b == sum(g for g, x in zip(gadget_vector(), bits, strict=True) if x) % ORDER
    assert len(set(gadget_vector())) == XI


def test_bob_inputs_differ_between_sessions(setups: Setups) -> None:
    _, bob = setups
    assert len({bob_round1(bob, sign_ctx())[0].b for _ in range(4)}) == 4


def test_both_directions_of_a_pair(setups: Setups) -> None:
    from tests.dkls23.helpers import setup_pair

    reverse = setup_pair(PairContext(session_id=b"reverse", alice=BOB, bob=ALICE))
    a = [secrets.randbelow(ORDER), secrets.randbelow(ORDER)]
    b, c, d = _run(reverse, a, sign_ctx(alice=BOB, bob=ALICE))
    assert [(x + y) % ORDER for x, y in zip(c, d, strict=True)] == [v * b % ORDER for v in a]
    with pytest.raises(LocalMisuseError):
        _run(setups, a, sign_ctx(alice=BOB, bob=ALICE))


def test_state_serialisation_round_trip_and_single_use(setups: Setups) -> None:
    alice, bob = setups
    ctx = sign_ctx()
    state, m1 = bob_round1(bob, ctx)
    blob = state.to_bytes()
    assert blob[0] == 1
    restored = BobRound1State.from_bytes(blob)
    assert restored.b == state.b and restored.ctx == ctx
    assert restored.to_bytes() == blob
    a = [5, 7]
    c, m2 = alice_round2(alice, ctx, a, m1)
    d = restored.finish(m2)
    assert [(x + y) % ORDER for x, y in zip(c, d, strict=True)] == [
        5 * state.b % ORDER,
        7 * state.b % ORDER,
    ]
    with pytest.raises(NonceReuseError):
        restored.finish(m2)
    with pytest.raises(NonceReuseError):
        restored.to_bytes()
    for bad in (blob[:-1], blob + b"\x00", b"\x09" + blob[1:], blob[:1] + b"\x00" + blob[2:]):
        with pytest.raises(EncodingError):
            BobRound1State.from_bytes(bad)


def test_pinned_state_format(setups: Setups) -> None:
    """The stored presignature format: version 1, kind 0xB1, length-prefixed
    session id, party ids, nonce, transcript digest, beta, rows."""
    _, bob = setups
    ctx = PairContext(session_id=b"pinned", alice=ALICE, bob=BOB)
    state, _ = bob_round1(bob, ctx, rand=DetRandom(b"pinned"))
    blob = state.to_bytes()
    assert blob[:2] == b"\x01\xb1"
    assert blob[2:12] == (6).to_bytes(4, "big") + b"pinned"
    assert blob[12:20] == ALICE.to_bytes(4, "big") + BOB.to_bytes(4, "big")
    assert len(blob) == 20 + 32 + 32 + XI // 8 + XI * 16


def test_secrets_are_redacted(setups: Setups) -> None:
    _, bob = setups
    state, _ = bob_round1(bob, sign_ctx())
    assert "redacted" in repr(state)
    assert hex(state.b)[2:] not in repr(state) and str(state.b) not in repr(state)


def test_alice_input_validation(setups: Setups) -> None:
    alice, bob = setups
    ctx = sign_ctx()
    _, m1 = bob_round1(bob, ctx)
    for bad in ([1], [1, 2, 3], [ORDER, 1], [-1, 1]):
        with pytest.raises(LocalMisuseError):
            alice_round2(alice, ctx, bad, m1)


# ------------------------------------------------------------------ hostile Alice


def _bob_with_bits(
    setups: Setups, ctx: PairContext, beta: bytes
) -> tuple[BobRound1State, MulRound1Message]:
    """Bob's round 1 with his choice bits fixed by the randomness seam."""
    rest = DetRandom(b"rest")

    def rand(n: int, _first: list[bool] = [True]) -> bytes:  # noqa: B006
        if _first[0]:
            _first[0] = False
            assert n == len(beta)
            return beta
        return rest(n)

    return bob_round1(setups[1], ctx, rand=rand)


@pytest.mark.parametrize("row", [0, 200, XI - 1])
def test_inconsistent_correlation_is_detected(setups: Setups, row: int) -> None:
    """Alice uses another input in row ``row`` (the selective-failure attack):
    detected when Bob's bit there is 1 (Protocol 5.2 consistency check)."""
    ctx = sign_ctx()
    state, m1 = _bob_with_bits(setups, ctx, b"\xff" * (XI // 8))
    a = [11, 13]
    _, m2 = hostile_alice_round2(setups[0], ctx, a, m1, row_inputs={row: [11, 14]})
    with pytest.raises(MultiplicationCheckError) as err:
        state.finish(m2)
    assert err.value.culprits == {ALICE}
    with pytest.raises(NonceReuseError):  # no output after the abort
        state.finish(m2)


def test_inconsistent_row_with_zero_bit_passes_and_stays_correct(setups: Setups) -> None:
    """Where ``beta_j = 0`` Bob never uses Alice's row ``j``: the deviation
    passes and cannot change the result; the abort/no-abort difference is the
    one-bit leakage per row that ``XI = KAPPA + 2 LAMBDA_S`` absorbs."""
    ctx = sign_ctx()
    state, m1 = _bob_with_bits(setups, ctx, bytes(XI // 8 - 1) + b"\x80")
    a = [11, 13]
    c, m2 = hostile_alice_round2(setups[0], ctx, a, m1, row_inputs={0: [99, 98]})
    d = state.finish(m2)
    assert [(x + y) % ORDER for x, y in zip(c, d, strict=True)] == [v * state.b % ORDER for v in a]


def test_honest_hostile_helper_passes(setups: Setups) -> None:
    ctx = sign_ctx()
    state, m1 = bob_round1(setups[1], ctx)
    c, m2 = hostile_alice_round2(setups[0], ctx, [3, 4], m1)
    d = state.finish(m2)
    assert (c[0] + d[0]) % ORDER == 3 * state.b % ORDER


def _replace(msg: MulRound2Message, **kw: object) -> MulRound2Message:
    fields: dict[str, object] = dict(
        tag=msg.tag, nonce=msg.nonce, a_tilde=msg.a_tilde, eta=msg.eta, mu=msg.mu
    )
    fields.update(kw)
    return MulRound2Message(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "what", ["a_tilde", "check_column", "eta", "eta_recomputed", "mu", "nonce"]
)
def test_wrong_values_in_alice_reply_are_detected(setups: Setups, what: str) -> None:
    alice, bob = setups
    ctx = sign_ctx()
    state, m1 = bob_round1(bob, ctx)
    if what == "eta_recomputed":
        _, m2 = hostile_alice_round2(alice, ctx, [1, 2], m1, eta_offset=1)
    else:
        _, m2 = alice_round2(alice, ctx, [1, 2], m1)
        at = list(m2.a_tilde)
        if what == "a_tilde":
            at[5 * OT_WIDTH] = (at[5 * OT_WIDTH] + 1) % ORDER
            m2 = _replace(m2, a_tilde=at)
        elif what == "check_column":
            at[5 * OT_WIDTH + ELL] = (at[5 * OT_WIDTH + ELL] + 1) % ORDER
            m2 = _replace(m2, a_tilde=at)
        elif what == "eta":
            m2 = _replace(m2, eta=[(m2.eta[0] + 1) % ORDER])
        elif what == "mu":
            m2 = _replace(m2, mu=bytes(32))
        else:
            m2 = _replace(m2, nonce=secrets.token_bytes(32))
    with pytest.raises(MultiplicationCheckError) as err:
        state.finish(m2)
    assert err.value.culprits == {ALICE}


def test_reply_from_another_session_or_pair_is_refused(setups: Setups) -> None:
    alice, bob = setups
    ctx = sign_ctx()
    state, m1 = bob_round1(bob, ctx)
    other = sign_ctx()
    _, m1_other = bob_round1(bob, other)
    _, m2_other = alice_round2(alice, other, [1, 2], m1_other)
    with pytest.raises(ForeignSessionError) as err:
        state.finish(m2_other)
    assert err.value.culprits == {ALICE}
    forged = _replace(
        m2_other,
        tag=PairContext(session_id=ctx.session_id, alice=3, bob=BOB).binding_tag(
            b"rvole/alice-message"
        ),
    )
    with pytest.raises(ForeignSessionError):
        state.finish(forged)
    # a foreign message does not burn the state: the genuine reply still works
    c, m2 = alice_round2(alice, ctx, [1, 2], m1)
    d = state.finish(m2)
    assert (c[1] + d[1]) % ORDER == 2 * state.b % ORDER


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[:-1],
        lambda d: d + b"\x00",
        lambda d: b"\x05" + d[1:],
        lambda d: d[:65] + ORDER.to_bytes(32, "big") + d[97:],
        lambda d: d[:65] + b"\xff" * 32 + d[97:],
    ],
    ids=["truncated", "oversized", "version", "scalar-equals-q", "scalar-above-q"],
)
def test_malformed_reply_names_alice(setups: Setups, mutate) -> None:  # type: ignore[no-untyped-def]
    alice, bob = setups
    ctx = sign_ctx()
    _, m1 = bob_round1(bob, ctx)
    _, m2 = alice_round2(alice, ctx, [1, 2], m1)
    data = m2.to_bytes()
    assert MulRound2Message.from_bytes(data, sender=ALICE) == m2
    with pytest.raises(InvalidMessageError) as err:
        MulRound2Message.from_bytes(mutate(data), sender=ALICE)
    assert err.value.culprits == {ALICE}


# ------------------------------------------------------------------ hostile Bob


def test_hostile_bob_matrix_yields_no_output_for_alice(setups: Setups) -> None:
    alice, bob = setups
    ctx = sign_ctx()
    col = next(i for i in range(128) if (alice.delta[i >> 3] >> (i & 7)) & 1)

    def tamper(u: bytearray) -> None:
        u[col * 80 + 1] ^= 0x10

    _, m1 = hostile_bob_extend(bob, ctx, secrets.token_bytes(XI // 8), tamper)
    with pytest.raises(OtConsistencyError) as err:
        alice_round2(alice, ctx, [1, 2], m1)
    assert err.value.culprits == {BOB}


def test_bob_message_from_another_session_is_refused(setups: Setups) -> None:
    alice, bob = setups
    _, m1 = bob_round1(bob, sign_ctx())
    with pytest.raises(ForeignSessionError) as err:
        alice_round2(alice, sign_ctx(), [1, 2], m1)
    assert err.value.culprits == {BOB}
