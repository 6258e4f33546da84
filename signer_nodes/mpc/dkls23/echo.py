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

The rule is the DKG's (:mod:`signer_nodes.mpc.dkg.echo`, one implementation for
every echo round); :func:`check_echoes` raises :class:`~signer_nodes.mpc.errors.EquivocationError`
with exactly the attributable culprits (possibly none).
"""

from signer_nodes.mpc.dkg.echo import check_echoes

__all__ = ["check_echoes"]
