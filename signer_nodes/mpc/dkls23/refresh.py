"""Proactive refresh of DKLs23 key shares (Herzberg, Jarecki, Krawczyk,
Yung, "Proactive Secret Sharing", CRYPTO 1995; DKLs23 ePrint 2023/765
discusses refresh of the OT-based setup alongside the key).

All current share holders run :class:`RefreshParty`, which is
:class:`~signer_nodes.mpc.dkls23.keygen.KeygenParty` with ``refresh_of``:

* the inner :class:`~signer_nodes.mpc.dkg.pedersen.DkgParty` re-shares zero
  (every dealer's constant term is 0, the echo check and the VSS checks name
  culprits as in the DKG); new shares are ``p(i) + sum_l f_l(i)``, the group
  key and the chain code are unchanged;
* every ordered pair runs fresh MR19 base OTs and every pair a fresh F_Zero
  seed, so the new setup shares nothing with the old one (but after an
  :class:`~signer_nodes.mpc.errors.OtConsistencyError` a refresh is not
  enough: the culprit takes part in it and can probe the new Delta; exclude
  it and reshare without it, see :mod:`.faults`);
* the new :class:`~signer_nodes.mpc.dkls23.keyshare.KeyShare` has a new
  ``share_id``: :func:`~signer_nodes.mpc.dkls23.sign.signature_share` refuses
  every presignature made before the refresh, and old shares neither
  interpolate with new ones nor share base-OT seeds with them.

The node layer deletes the old share and the old presignatures once the new
share is sealed.
"""

from __future__ import annotations

from signer_nodes.mpc.dkls23.context import RandomSource, system_random
from signer_nodes.mpc.dkls23.keygen import KeygenParty
from signer_nodes.mpc.dkls23.keyshare import KeyShare


class RefreshParty(KeygenParty):
    """One share holder of a refresh; output: the new :class:`KeyShare`."""

    protocol = "dkls23-refresh"

    def __init__(
        self, session_id: bytes, key_share: KeyShare, *, rand: RandomSource = system_random
    ) -> None:
        super().__init__(
            session_id,
            key_share.identifier,
            key_share.parties,
            key_share.threshold,
            refresh_of=key_share,
            rand=rand,
        )
