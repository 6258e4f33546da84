"""Which DKLs23 aborts oblige this node to stop working with a peer for good.

Most aborts cost an honest party nothing beyond the session: the values a
cheater can learn from them are fresh per session (Bob's choice bits
``beta`` in pi_RVOLE are re-sampled every time, and ``XI = KAPPA + 2
LAMBDA_S`` makes the bits an abort reveals useless).

One abort is different.  The OT-extension consistency check (KOS15 revised,
Fig. 10; SoftSpokenOT with ``k = 1``) guards Alice's *long-term* correlation
``Delta`` -- her base-OT choice bits, fixed at key generation and reused by
every signature of the pair.  A receiver who corrupts column ``i`` passes the
check exactly when ``Delta_i = 0``, so each attempt that aborts or not leaks a
bit; after about 128 attempts it knows ``Delta`` and can read Alice's
multiplication inputs ``(r_i, sk_i)`` -- her key share.  DKLs23 therefore
requires a party whose check fails to abort, abort every concurrent session
with that counterparty, and refuse every later session that includes it
(the requirement the Trail of Bits review of Silence Laboratories' DKLs23,
finding TOB-SILA-12, enforces).  A refresh does not help on its own: it
re-runs the base OTs *with the same peer*, who can start over.  Only a
resharing that leaves the peer out restores the guarantee.

:func:`peers_to_exclude` states this rule as code for the node layer, which
owns the durable state: persist the returned ids with the key and refuse any
DKLs23 session (presign, sign, refresh) of that key that includes them.
"""

from __future__ import annotations

from signer_nodes.mpc.errors import OtConsistencyError


def peers_to_exclude(error: BaseException) -> frozenset[int]:
    """The parties this node must never again run a DKLs23 session with under
    the key share that raised ``error`` (empty for every other abort)."""
    if isinstance(error, OtConsistencyError):
        return frozenset(error.culprits)
    return frozenset()
