"""Shared helpers for the DKLs23 pairwise tests: in-memory key setup, a
deterministic randomness seam and a hostile Alice."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from signer_nodes.mpc.dkls23 import multiplication as mul
from signer_nodes.mpc.dkls23.base_ot import (
    BaseOtReceiverMessage,
    BaseOtSenderMessage,
    base_ot_receiver_round1,
    base_ot_sender_round1,
)
from signer_nodes.mpc.dkls23.context import PairContext, RandomSource, system_random
from signer_nodes.mpc.dkls23.ot_extension import (
    OteReceiverBatch,
    OtExtensionMessage,
    ote_sender_extend,
)
from signer_nodes.mpc.dkls23.params import ELL, OT_WIDTH, RHO, XI
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.groups.secp256k1 import ORDER

ALICE = 1
BOB = 2


class DetRandom:
    """Deterministic RandomSource: SHA-256 in counter mode over a seed."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._ctr = 0
        self._buf = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._buf += hashlib.sha256(self._seed + self._ctr.to_bytes(8, "big")).digest()
            self._ctr += 1
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def setup_pair(ctx: PairContext, rand: RandomSource = system_random) -> tuple[AliceSetup, BobSetup]:
    """Run the key-setup base OTs, messages passing through their encodings."""
    rstate, rmsg = base_ot_receiver_round1(ctx, rand=rand)
    sstate, smsg = base_ot_sender_round1(ctx, rand=rand)
    alice = rstate.finish(BaseOtSenderMessage.from_bytes(smsg.to_bytes(), sender=ctx.bob))
    bob = sstate.finish(BaseOtReceiverMessage.from_bytes(rmsg.to_bytes(), sender=ctx.alice))
    return alice, bob


def sign_ctx(alice: int = ALICE, bob: int = BOB) -> PairContext:
    return PairContext(session_id=secrets.token_bytes(32), alice=alice, bob=bob)


def hostile_alice_round2(
    setup: AliceSetup,
    ctx: PairContext,
    a: Sequence[int],
    msg: OtExtensionMessage,
    *,
    row_inputs: Mapping[int, Sequence[int]] | None = None,
    eta_offset: int = 0,
) -> tuple[tuple[int, ...], mul.MulRound2Message]:
    """Alice following pi_RVOLE except that row ``j`` in ``row_inputs`` uses a
    different input vector (an inconsistent correlation), and ``eta`` may be
    shifted.  Fiat-Shamir values are recomputed honestly over her message."""
    overrides = row_inputs or {}
    batch = ote_sender_extend(setup, ctx, msg)
    nonce = secrets.token_bytes(32)
    cols0, cols1 = batch.raw_pads(nonce)
    p0 = [v for row in zip(*cols0, strict=True) for v in row]  # row-major
    p1 = [v for row in zip(*cols1, strict=True) for v in row]
    a_hat = [secrets.randbelow(ORDER) for _ in range(RHO)]
    a_tilde: list[int] = []
    for j in range(XI):
        row = list(overrides.get(j, a)) + a_hat
        o = j * OT_WIDTH
        a_tilde.extend((p0[o + w] - p1[o + w] + row[w]) % ORDER for w in range(OT_WIDTH))
    theta = mul._theta(ctx, batch.ote_digest, nonce, mul._encode_scalars(a_tilde))
    eta = [
        (a_hat[k] + sum(theta[k][i] * a[i] for i in range(ELL)) + eta_offset) % ORDER
        for k in range(RHO)
    ]
    g = mul.gadget_vector()
    mu_values = []
    acc = [0] * ELL
    for j in range(XI):
        o = j * OT_WIDTH
        for i in range(ELL):
            acc[i] += g[j] * p0[o + i]
        for k in range(RHO):
            v = p0[o + ELL + k] + sum(theta[k][i] * p0[o + i] for i in range(ELL))
            mu_values.append(v % ORDER)
    mu = mul._mu_digest(ctx, batch.ote_digest, nonce, mu_values)
    reply = mul.MulRound2Message(
        tag=ctx.binding_tag(b"rvole/alice-message"), nonce=nonce, a_tilde=a_tilde, eta=eta, mu=mu
    )
    return tuple(-v % ORDER for v in acc), reply


def hostile_bob_extend(
    setup: BobSetup,
    ctx: PairContext,
    choices: bytes,
    tamper_u: Callable[[bytearray], None],
) -> tuple[OteReceiverBatch, OtExtensionMessage]:
    """Bob following the extension except that he alters the matrix ``u``
    before the Fiat-Shamir challenge, then answers the check honestly for his
    real ``t`` and ``x``: the strongest form of an inconsistent ``u``."""
    from signer_nodes.mpc.dkls23 import ot_extension as ote

    nonce = secrets.token_bytes(32)
    x = np.frombuffer(choices + secrets.token_bytes(16), dtype=np.uint8)
    prefix = ctx.transcript(ote._PRG_DOMAIN).append(b"bob-nonce", nonce).digest(b"prg-key")
    t = ote._prg(prefix, setup.seeds0)
    u = bytearray((t ^ ote._prg(prefix, setup.seeds1) ^ x).tobytes())
    tamper_u(u)
    chis, digest = ote._check_challenges(ctx, nonce, bytes(u))
    tables = ote._hash_tables(chis)
    msg = OtExtensionMessage(
        tag=ctx.binding_tag(ote.MSG_OTE),
        nonce=nonce,
        u=bytes(u),
        x_check=ote._hash_columns(x.reshape(1, -1), tables).tobytes(),
        t_check=ote._hash_columns(t, tables).tobytes(),
    )
    batch = OteReceiverBatch(
        ctx=ctx,
        nonce=nonce,
        ote_digest=digest,
        choices=choices,
        rows=ote._transpose_rows(t).tobytes(),
    )
    return batch, msg
