"""The echo check of the presign and resharing rounds, with sound blame.

An echo is one digest per party of the values that party sent to
everyone (its instance point and public share in presigning, its Feldman
commitment in resharing) as the echoing party received them.  Comparing a
peer's echo with one's own view reveals that *someone* deviated, but not
always who:

* a mismatch on **my own** entry: I sent the same values to every party, so
  the echoing party misreports what it received -- it is the culprit;
* a mismatch on the **echoing party's own** entry: its echo contradicts the
  values it sent me -- it is the culprit;
* a mismatch on a **third** party ``p``'s entry: either ``p`` sent different
  values to different parties or the echoing party lies about what it got.
  Messages are authenticated but the echo carries no proof of what was
  received, so no honest party can tell which: this is abort-only, and
  naming ``p`` would let a liar frame an honest party (the service excludes
  named culprits).

:func:`check_echoes` raises :class:`~signer_nodes.mpc.errors.EquivocationError`
with exactly the attributable culprits (possibly none).
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

    All echoes are examined before raising, so a provable culprit is named
    even when another echo only shows an unattributable mismatch.  Raises
    EquivocationError naming every echoing party whose echo contradicts our
    entry or its own, or naming no one when every mismatch concerns third
    parties only.
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
