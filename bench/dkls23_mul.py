"""Micro-benchmark of the DKLs23 pairwise layer: ``python -m bench.dkls23_mul``.

Prints median wall-clock times (one process, both parties) for the base-OT
key setup of one ordered pair, one SoftSpokenOT extension of the size a
signature needs, one pi_RVOLE multiplication (both sides, through the byte
encodings), and the bytes each multiplication sends.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable

from signer_nodes.mpc.dkls23 import (
    BaseOtReceiverMessage,
    BaseOtSenderMessage,
    BobRound1State,
    MulRound1Message,
    MulRound2Message,
    OtExtensionMessage,
    PairContext,
    alice_round2,
    base_ot_receiver_round1,
    base_ot_sender_round1,
    bob_round1,
    gadget_vector,
    ote_receiver_extend,
    ote_sender_extend,
)
from signer_nodes.mpc.dkls23.params import BASE_OT_COUNT, XI
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.groups.secp256k1 import ORDER


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _ctx(alice: int = 1, bob: int = 2) -> PairContext:
    return PairContext(session_id=secrets.token_bytes(32), alice=alice, bob=bob)


def base_ot_setup(ctx: PairContext) -> tuple[AliceSetup, BobSetup]:
    rstate, rmsg = base_ot_receiver_round1(ctx)
    sstate, smsg = base_ot_sender_round1(ctx)
    alice = rstate.finish(BaseOtSenderMessage.from_bytes(smsg.to_bytes(), sender=ctx.bob))
    bob = sstate.finish(BaseOtReceiverMessage.from_bytes(rmsg.to_bytes(), sender=ctx.alice))
    return alice, bob


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    runs = args.runs

    gadget_vector()  # one-time public constant
    alice, bob = base_ot_setup(_ctx())

    def ote_batch() -> None:
        ctx = _ctx()
        batch, msg = ote_receiver_extend(bob, ctx, secrets.token_bytes(XI // 8))
        sender = ote_sender_extend(
            alice, ctx, OtExtensionMessage.from_bytes(msg.to_bytes(), sender=2)
        )
        nonce = secrets.token_bytes(32)
        sender.raw_pads(nonce)
        batch.raw_pads(nonce)

    sizes: dict[str, int] = {}
    steps: dict[str, list[float]] = {"bob_round1": [], "alice_round2": [], "bob_finish": []}

    def multiplication() -> None:
        ctx = _ctx()
        a = [secrets.randbelow(ORDER), secrets.randbelow(ORDER)]
        t0 = time.perf_counter()
        state, m1 = bob_round1(bob, ctx)
        m1_bytes = m1.to_bytes()
        stored = state.to_bytes()
        t1 = time.perf_counter()
        c, m2 = alice_round2(alice, ctx, a, MulRound1Message.from_bytes(m1_bytes, sender=2))
        m2_bytes = m2.to_bytes()
        t2 = time.perf_counter()
        restored = BobRound1State.from_bytes(stored)
        d = restored.finish(MulRound2Message.from_bytes(m2_bytes, sender=1))
        t3 = time.perf_counter()
        steps["bob_round1"].append(t1 - t0)
        steps["alice_round2"].append(t2 - t1)
        steps["bob_finish"].append(t3 - t2)
        assert (c[0] + d[0]) % ORDER == a[0] * restored.b % ORDER
        sizes.update(round1=len(m1_bytes), round2=len(m2_bytes), state=len(stored))

    setup_ms = _median_ms(lambda: base_ot_setup(_ctx()), max(5, runs // 3))
    ote_ms = _median_ms(ote_batch, runs)
    mul_ms = _median_ms(multiplication, runs)
    per_mul = sizes["round1"] + sizes["round2"]

    print(f"DKLs23 pairwise layer (secp256k1), median of {runs} runs, one process")
    print(
        f"  base-OT setup per ordered pair, {BASE_OT_COUNT} MR19 OTs (both sides):"
        f" {setup_ms:7.2f} ms"
    )
    print(f"  OT extension, {XI} OTs + pads (SoftSpokenOT k=1, both sides):  {ote_ms:7.2f} ms")
    print(f"  multiplication pair pi_RVOLE, ell=2 (both sides, encoded):   {mul_ms:7.2f} ms")
    for name, values in steps.items():
        print(f"    {name:<13} {statistics.median(values) * 1e3:7.2f} ms")
    print(
        f"  bytes per multiplication: {per_mul} "
        f"(Bob->Alice {sizes['round1']}, Alice->Bob {sizes['round2']}); "
        f"stored Bob state {sizes['state']}"
    )
    print(
        f"  2-of-3 signature estimate: 2 ordered pairs -> {2 * mul_ms:.2f} ms, "
        f"{2 * per_mul / 1000:.1f} kB; key setup for 6 ordered pairs -> {6 * setup_ms:.0f} ms"
    )


if __name__ == "__main__":
    main()
