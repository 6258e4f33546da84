"""Payloads that are not transactions: messages, raw digests, PoR attestations.

* ``message``: any bytes (at most 1 MiB, the request limit). Every key scheme signs
  the 32-byte digest ``hash_tag("custody/message/v1", message)`` (BIP340 tagged hash,
  ``SHA256(SHA256(tag) || SHA256(tag) || message)``), never the message itself or its
  plain SHA-256. Domain separation is the point: a plain ``SHA-256(m)`` for an ECDSA
  key would let a "message" ``m = SHA256(preimage)`` produce a Bitcoin legacy/segwit-v0
  signature (``SHA256d``), and a raw BIP340 message of 32 bytes could be a Taproot
  sighash; neither can equal a tagged hash with this tag. Verifiers recompute the
  digest with :func:`message_digest`.
* ``raw_digest``: exactly 32 bytes, signed as they are. The node cannot tell what they
  mean, which is why policy must allow this request type explicitly.
* ``por_attestation``: the *preimage* of a Proof-of-Reserves challenge
  (``docs/por-format.md``, "Challenge"): ``TAG_CHALLENGE || lp16(snapshot_id) ||
  lp16(cutoff) || root_hash || u64 leaf_count || u16 k || k * (lp16(asset) || u64
  total)``. The node parses it, so only a real challenge is signed (never an arbitrary
  32-byte value dressed up as one), and computes ``challenge = SHA-256(preimage)``
  exactly as :func:`proofs.snapshot.compute_challenge`. The signing input is then what
  ``proofs/control.py`` verifies: ``SHA-256(challenge)`` for ECDSA, the challenge
  itself for BIP340 and Ed25519.
"""

from __future__ import annotations

import hashlib

from policy.payloads.bitcoin import tagged_hash
from policy.payloads.errors import invalid
from policy.payloads.interpretation import Signing
from proofs.encoding import TAG_CHALLENGE

MESSAGE_TAG = "custody/message/v1"


def message_digest(message: bytes) -> bytes:
    """What every key signs for a ``message`` request."""
    return tagged_hash(MESSAGE_TAG, message)


def raw_digest(payload: bytes) -> bytes:
    if len(payload) != 32:
        raise invalid("a raw digest is exactly 32 bytes", "payload")
    return payload


def _printable(raw: bytes, field: str) -> None:
    if not raw or any(not 0x20 <= b < 0x7F for b in raw):
        raise invalid("printable ASCII expected", field)


def por_challenge(preimage: bytes) -> bytes:
    """Validate a PoR challenge preimage and return the 32-byte challenge."""
    if not preimage.startswith(TAG_CHALLENGE):
        raise invalid("not a Proof-of-Reserves challenge (tag)", "payload")
    pos = len(TAG_CHALLENGE)

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(preimage):
            raise invalid("truncated challenge", "payload")
        out = preimage[pos : pos + n]
        pos += n
        return out

    def lp16(field: str) -> None:
        _printable(take(int.from_bytes(take(2), "big")), field)

    lp16("snapshot_id")
    lp16("cutoff")
    take(32 + 8)  # root hash, leaf count
    for _ in range(int.from_bytes(take(2), "big")):
        lp16("asset")
        take(8)
    if pos != len(preimage):
        raise invalid("trailing bytes after the challenge", "payload")
    return hashlib.sha256(preimage).digest()


def por_signing_input(preimage: bytes, signing: Signing) -> bytes:
    challenge = por_challenge(preimage)
    return hashlib.sha256(challenge).digest() if signing == "ecdsa" else challenge
