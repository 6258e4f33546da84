"""Which aborts force a node to stop working with a peer (:mod:`.faults`).

The OT-extension check leaks one bit of Alice's long-term ``Delta`` per
attempt (pass exactly when the probed bit is 0), so a receiver probing
column after column recovers ``Delta``; the tests play that attack and check
that the abort is the one :func:`peers_to_exclude` turns into an exclusion,
while aborts that reveal only per-session values do not.
"""

from __future__ import annotations

import secrets

from signer_nodes.mpc.dkls23 import peers_to_exclude
from signer_nodes.mpc.dkls23.ot_extension import ote_sender_extend
from signer_nodes.mpc.dkls23.params import BASE_OT_COUNT, COLUMN_BYTES, XI
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.errors import (
    Dkls23ConsistencyError,
    EquivocationError,
    MultiplicationCheckError,
    OtConsistencyError,
    SignatureAbortError,
)
from tests.dkls23.helpers import BOB, hostile_bob_extend, sign_ctx


def _probe(setups: tuple[AliceSetup, BobSetup], column: int) -> OtConsistencyError | None:
    """One session of the selective-failure attack on ``Delta_column``."""
    alice, bob = setups
    ctx = sign_ctx()

    def tamper(u: bytearray) -> None:
        u[column * COLUMN_BYTES] ^= 1

    _, msg = hostile_bob_extend(bob, ctx, secrets.token_bytes(XI // 8), tamper)
    try:
        ote_sender_extend(alice, ctx, msg)
    except OtConsistencyError as exc:
        return exc
    return None


def test_each_probe_reveals_a_bit_of_delta_and_aborts_name_the_prober(
    setups: tuple[AliceSetup, BobSetup],
) -> None:
    alice, _ = setups
    for column in range(8):
        delta_bit = (alice.delta[column >> 3] >> (column & 7)) & 1
        error = _probe(setups, column)
        assert (error is not None) == bool(delta_bit)  # the outcome is the secret bit
        if error is not None:
            assert error.culprits == {BOB}
            assert peers_to_exclude(error) == {BOB}
    assert BASE_OT_COUNT == 128  # so ~128 unexcluded probes would expose Delta


def test_aborts_that_reveal_only_session_values_exclude_no_one() -> None:
    for error in (
        MultiplicationCheckError("pi_RVOLE check failed", [2]),
        Dkls23ConsistencyError("Gamma check failed", [2]),
        EquivocationError("echo", [2]),
        SignatureAbortError("step 10", []),
        ValueError("not a protocol error"),
    ):
        assert peers_to_exclude(error) == frozenset()
