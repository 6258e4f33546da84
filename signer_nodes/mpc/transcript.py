"""Domain-separated, length-prefixed hashing for every Fiat-Shamir challenge.

All proofs in the cores that are not fixed by an external specification (the
DKG proof of knowledge, commitments, echo digests, OT consistency challenges)
hash through :class:`Transcript`. Each transcript starts from a protocol
domain tag; each appended field carries its own label; every label and value
is prefixed with its length, so no two different sequences of fields hash
alike. Session ids and party ids are appended by the callers, which binds
every proof to its session and prover.

Where an RFC fixes the hash (RFC 9591's H1..H5, BIP340 tagged hashes), the
ciphersuite implements that exact function instead.
"""

from __future__ import annotations

import hashlib

_PREFIX = b"mpc-custody/transcript/v1"


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


class Transcript:
    """A running SHA-512 over labelled, length-prefixed fields."""

    __slots__ = ("_h",)

    def __init__(self, domain: bytes) -> None:
        self._h = hashlib.sha512()
        self._h.update(_frame(_PREFIX))
        self._h.update(_frame(domain))

    def append(self, label: bytes, value: bytes) -> Transcript:
        self._h.update(_frame(label))
        self._h.update(_frame(value))
        return self

    def append_int(self, label: bytes, value: int, width: int = 8) -> Transcript:
        return self.append(label, value.to_bytes(width, "big"))

    def fork(self) -> Transcript:
        out = Transcript.__new__(Transcript)
        out._h = self._h.copy()
        return out

    def digest(self, label: bytes = b"digest") -> bytes:
        """A 32-byte digest, final for ``label``; the transcript stays usable."""
        h = self._h.copy()
        h.update(_frame(b"output:" + label))
        return h.digest()[:32]

    def challenge_scalar(self, order: int, label: bytes = b"challenge") -> int:
        """A scalar mod ``order`` from 512 bits of output (bias < 2^-250)."""
        h = self._h.copy()
        h.update(_frame(b"scalar:" + label))
        return int.from_bytes(h.digest(), "big") % order


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP340 tagged hash: SHA256(SHA256(tag) || SHA256(tag) || data)."""
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()
