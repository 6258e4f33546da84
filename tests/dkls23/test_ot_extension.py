"""SoftSpokenOT (k = 1) / KOS15 Fig. 10 correlated OT extension."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from signer_nodes.mpc.dkls23.context import PairContext
from signer_nodes.mpc.dkls23.ot_extension import (
    OtExtensionMessage,
    ote_receiver_extend,
    ote_sender_extend,
    unpack_bits,
)
from signer_nodes.mpc.dkls23.params import (
    BASE_OT_COUNT,
    COLUMN_BYTES,
    OT_WIDTH,
    ROW_BYTES,
    XI,
)
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.errors import (
    ForeignSessionError,
    InvalidMessageError,
    LocalMisuseError,
    OtConsistencyError,
)
from signer_nodes.mpc.groups.secp256k1 import ORDER
from tests.dkls23.helpers import ALICE, BOB, hostile_bob_extend, sign_ctx

Setups = tuple[AliceSetup, BobSetup]


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit >> 3] ^= 1 << (bit & 7)
    return bytes(out)


def _with(msg: OtExtensionMessage, **fields: bytes) -> OtExtensionMessage:
    kw = dict(tag=msg.tag, nonce=msg.nonce, u=msg.u, x_check=msg.x_check, t_check=msg.t_check)
    kw.update(fields)
    return OtExtensionMessage(**kw)


@pytest.mark.parametrize("choices", ["random", "zeros", "ones"])
def test_correlation_and_random_ot_pads(setups: Setups, choices: str) -> None:
    alice, bob = setups
    ctx = sign_ctx()
    packed = {
        "random": secrets.token_bytes(XI // 8),
        "zeros": bytes(XI // 8),
        "ones": b"\xff" * (XI // 8),
    }[choices]
    batch, msg = ote_receiver_extend(bob, ctx, packed)
    sender = ote_sender_extend(
        alice, ctx, OtExtensionMessage.from_bytes(msg.to_bytes(), sender=BOB)
    )
    x = unpack_bits(packed, XI)
    t_rows = np.frombuffer(batch.rows, dtype=np.uint8).reshape(XI, ROW_BYTES)
    delta = np.frombuffer(alice.delta, dtype=np.uint8)
    # q_j = t_j XOR x_j * Delta
    expected = t_rows ^ (x[:, None] * delta[None, :]).astype(np.uint8)
    assert np.array_equal(sender.rows, expected)
    nonce = secrets.token_bytes(32)
    v0, v1 = sender.pads(nonce)
    vx = batch.pads(nonce)
    for j in range(XI):
        assert vx[j] == (v1[j] if x[j] else v0[j])
        assert vx[j] != (v0[j] if x[j] else v1[j])
        assert len(vx[j]) == OT_WIDTH and all(0 <= v < ORDER for v in vx[j])
    # pads depend on Alice's nonce: a replayed extension never repeats pads
    assert batch.pads(secrets.token_bytes(32))[0] != vx[0]


def test_message_round_trip_and_size(setups: Setups) -> None:
    _, bob = setups
    _, msg = ote_receiver_extend(bob, sign_ctx(), secrets.token_bytes(XI // 8))
    data = msg.to_bytes()
    assert OtExtensionMessage.from_bytes(data, sender=BOB) == msg
    assert len(data) == 1 + 32 + 32 + BASE_OT_COUNT * COLUMN_BYTES + 16 + BASE_OT_COUNT * 16
    assert "redacted" in repr(ote_receiver_extend(bob, sign_ctx(), bytes(XI // 8))[0])


def test_local_misuse(setups: Setups) -> None:
    alice, bob = setups
    with pytest.raises(LocalMisuseError):
        ote_receiver_extend(bob, sign_ctx(), bytes(3))
    with pytest.raises(LocalMisuseError):
        ote_receiver_extend(bob, sign_ctx(alice=ALICE, bob=3), bytes(XI // 8))
    _, msg = ote_receiver_extend(bob, sign_ctx(), bytes(XI // 8))
    with pytest.raises(LocalMisuseError):
        ote_sender_extend(alice, sign_ctx(alice=BOB, bob=ALICE), msg)


# ------------------------------------------------------------------ hostile Bob


def _delta_bit(alice: AliceSetup, i: int) -> int:
    return (alice.delta[i >> 3] >> (i & 7)) & 1


def test_flipped_matrix_bit_in_checked_column_is_detected(setups: Setups) -> None:
    alice, bob = setups
    ctx = sign_ctx()
    _, msg = ote_receiver_extend(bob, ctx, secrets.token_bytes(XI // 8))
    col = next(i for i in range(BASE_OT_COUNT) if _delta_bit(alice, i))
    for pos in (3, XI + 5):  # in beta's part and in the padding part
        bad = _with(msg, u=_flip(msg.u, col * COLUMN_BYTES * 8 + pos))
        with pytest.raises(OtConsistencyError) as err:
            ote_sender_extend(alice, ctx, bad)
        assert err.value.culprits == {BOB}
        # also when Bob answers the check for the altered matrix
        bit = col * COLUMN_BYTES * 8 + pos

        def tamper(u: bytearray, bit: int = bit) -> None:
            u[bit >> 3] ^= 1 << (bit & 7)

        _, hostile = hostile_bob_extend(bob, ctx, secrets.token_bytes(XI // 8), tamper)
        with pytest.raises(OtConsistencyError):
            ote_sender_extend(alice, ctx, hostile)


def test_flipped_matrix_bit_in_unused_column_is_harmless(setups: Setups) -> None:
    """Where ``Delta_i = 0`` Alice never reads column ``u_i``, so a change
    there passes and leaves the correlation intact; it tells Bob that bit of
    Delta, the leakage KOS15/SoftSpokenOT's analysis tolerates (which is why
    a pair's setup is retired after any abort)."""
    alice, bob = setups
    ctx = sign_ctx()
    col = next(i for i in range(BASE_OT_COUNT) if not _delta_bit(alice, i))

    def tamper(u: bytearray) -> None:
        u[col * COLUMN_BYTES] ^= 1

    batch, msg = hostile_bob_extend(bob, ctx, secrets.token_bytes(XI // 8), tamper)
    sender = ote_sender_extend(alice, ctx, msg)
    nonce = secrets.token_bytes(32)
    v0, v1 = sender.pads(nonce)
    x = batch.choice_bits()
    assert all(p == (v1[j] if x[j] else v0[j]) for j, p in enumerate(batch.pads(nonce)))


@pytest.mark.parametrize("field", ["t_check", "x_check", "nonce"])
def test_wrong_check_values_are_detected(setups: Setups, field: str) -> None:
    alice, bob = setups
    ctx = sign_ctx()
    _, msg = ote_receiver_extend(bob, ctx, secrets.token_bytes(XI // 8))
    bad = _with(msg, **{field: _flip(getattr(msg, field), 9)})
    with pytest.raises(OtConsistencyError) as err:
        ote_sender_extend(alice, ctx, bad)
    assert err.value.culprits == {BOB}


def test_inconsistent_choice_bits_across_columns_are_detected(setups: Setups) -> None:
    """Bob uses choices x in some columns and x' in others (the selective
    failure attack on Delta the check exists for); with Delta_i = 1 for
    a changed column the check fails."""
    alice, bob = setups
    ctx = sign_ctx()

    def tamper(u: bytearray) -> None:
        for i in range(0, BASE_OT_COUNT, 2):  # half the columns get x' = x XOR e_0
            u[i * COLUMN_BYTES] ^= 1

    _, msg = hostile_bob_extend(bob, ctx, bytes(XI // 8), tamper)
    with pytest.raises(OtConsistencyError) as err:
        ote_sender_extend(alice, ctx, msg)
    assert err.value.culprits == {BOB}


def test_message_of_another_session_or_pair_is_refused(setups: Setups) -> None:
    alice, bob = setups
    ctx = sign_ctx()
    _, old = ote_receiver_extend(bob, sign_ctx(), bytes(XI // 8))  # another session
    with pytest.raises(ForeignSessionError) as err:
        ote_sender_extend(alice, ctx, old)
    assert err.value.culprits == {BOB}
    other_pair = PairContext(session_id=ctx.session_id, alice=ALICE, bob=3)
    forged = _with(old, tag=other_pair.binding_tag(b"ote/receiver-message"))
    with pytest.raises(ForeignSessionError):
        ote_sender_extend(alice, ctx, forged)


@pytest.mark.parametrize(
    "mutate",
    [lambda d: d[:-1], lambda d: d + b"\x00", lambda d: b"\x02" + d[1:], lambda d: b""],
    ids=["truncated", "oversized", "version", "empty"],
)
def test_malformed_message_names_bob(setups: Setups, mutate) -> None:  # type: ignore[no-untyped-def]
    _, bob = setups
    _, msg = ote_receiver_extend(bob, sign_ctx(), bytes(XI // 8))
    with pytest.raises(InvalidMessageError) as err:
        OtExtensionMessage.from_bytes(mutate(msg.to_bytes()), sender=BOB)
    assert err.value.culprits == {BOB}


def _gf128_mul_reference(a: int, b: int) -> int:
    """Schoolbook GF(2^128) product mod X^128 + X^7 + X^2 + X + 1."""
    r = 0
    for i in range(128):
        if (b >> i) & 1:
            r ^= a << i
    for i in range(254, 127, -1):
        if (r >> i) & 1:
            r ^= ((1 << 128) | 0x87) << (i - 128)
    return r


def test_check_hash_is_the_gf128_universal_hash() -> None:
    """The table-driven check hash equals sum_b chi_b * y_b + y_last in GF(2^128)."""
    from signer_nodes.mpc.dkls23 import ot_extension as ote

    chis = [int.from_bytes(secrets.token_bytes(16), "little") for _ in range(XI // 128)]
    cols = np.frombuffer(secrets.token_bytes(3 * COLUMN_BYTES), dtype=np.uint8).reshape(3, -1)
    got = ote._hash_columns(cols, ote._hash_tables(chis))
    for c in range(3):
        data = cols[c].tobytes()
        blocks = [int.from_bytes(data[16 * b : 16 * b + 16], "little") for b in range(5)]
        expected = blocks[4]
        for b, chi in enumerate(chis):
            expected ^= _gf128_mul_reference(blocks[b], chi)
        assert int.from_bytes(got[c].tobytes(), "little") == expected
