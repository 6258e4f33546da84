"""The echo check of the DKG's broadcast round, with sound blame.

Round 1 of Komlo-Goldberg Figure 1 assumes a broadcast channel; we emulate it
by having every party echo, in its round-2 message, one digest per party of
the round-1 envelope it accepted from that party.  Comparing a peer's echo
with one's own view reveals that *someone* deviated, but not always who:

* a mismatch on **my own** entry: I sent the same broadcast to every party,
  so the echoing party misreports what it received -- it is the culprit;
* a mismatch on the **echoing party's own** entry: its echo contradicts the
  broadcast it sent me (it equivocated or lies) -- it is the culprit;
* a mismatch on a **third** party ``p``'s entry: either dealer ``p`` sent
  different broadcasts to different parties or the echoing party lies about
  what it got.  Envelopes are authenticated but the echo carries no proof of
  what was received, so no honest party can tell which: this is abort-only,
  and naming ``p`` would let a liar frame an honest dealer (the service
  excludes named culprits).

This is the rule of :mod:`signer_nodes.mpc.dkls23.echo`, kept local to the
DKG because the DKG sits below DKLs23 (its keygen and refresh run an inner
:class:`~signer_nodes.mpc.dkg.pedersen.DkgParty`) and must not import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from signer_nodes.mpc.errors import EquivocationError


def check_echoes(
    self_id: int,
    parties: Sequence[int],
    mine: Sequence[bytes],
    echoes: Mapping[int, Sequence[bytes]],
    what: str,
) -> None:
    """Compare every peer's echo with ours (one digest per entry of ``parties``).

    Every echo is examined before raising, so a provable culprit is named
    even when another echo only shows an unattributable mismatch.  Raises
    EquivocationError naming every echoing party whose echo contradicts our
    entry or its own, or naming no one when every mismatch concerns third
    parties only.  Echo lengths must already equal ``len(parties)`` (the
    decoder checks it); a mismatch here is a local bug and raises ValueError.
    """
    provable: list[int] = []
    unattributed: set[int] = set()
    for sender, theirs in sorted(echoes.items()):
        differing = {p for p, a, b in zip(parties, mine, theirs, strict=True) if a != b}
        if self_id in differing or sender in differing:
            provable.append(sender)
        unattributed |= differing - {self_id, sender}
    if provable:
        raise EquivocationError(
            f"parties {provable} echoed {what} that contradict what they or we sent (echo check)",
            provable,
        )
    if unattributed:
        raise EquivocationError(
            f"{what} of parties {sorted(unattributed)} seen differently by other parties: "
            "equivocation or a false echo, not attributable (echo check, abort only)",
            [],
        )
