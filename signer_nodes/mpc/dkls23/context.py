"""Shared pieces of the DKLs23 pairwise layer: the pair context, the
randomness seam and the message-binding tag.

Every ordered pair of signers ``(alice, bob)`` runs its own instance:
``alice`` is the OT-extension *sender* (she inputs the scalar vector of
pi_RVOLE), ``bob`` the OT-extension *receiver* (he obtains the random scalar
``b``).  In the base OTs the roles flip: Alice is the base-OT receiver (her
choice bits become the extension's global correlation Delta) and Bob the
base-OT sender.  The DKLs23 signing protocol runs one instance in each
direction for every pair of signers.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from signer_nodes.mpc.encoding import Reader
from signer_nodes.mpc.errors import (
    EncodingError,
    ForeignSessionError,
    InvalidMessageError,
    LocalMisuseError,
)
from signer_nodes.mpc.groups.secp256k1 import ORDER
from signer_nodes.mpc.transcript import Transcript

#: Source of uniformly random bytes; tests inject a deterministic one.
RandomSource = Callable[[int], bytes]

#: Version byte at the front of every message and stored state of this package.
FORMAT_VERSION = 1

_MAX_SESSION_ID = 256
_MAX_PARTY_ID = (1 << 32) - 1


def system_random(n: int) -> bytes:
    """The OS CSPRNG (the default :data:`RandomSource`)."""
    return secrets.token_bytes(n)


def random_scalar(rand: RandomSource) -> int:
    """A uniform non-zero scalar mod the secp256k1 order (64 bytes reduced)."""
    while True:
        k = int.from_bytes(rand(64), "big") % ORDER
        if k:
            return k


@dataclass(frozen=True, slots=True, kw_only=True)
class PairContext:
    """Who runs an instance and in which session.

    ``session_id`` must be unique per instance (the caller derives it from the
    DKG or signing session and the pair); hashes additionally mix in fresh
    nonces of both parties, so a repeated ``session_id`` cannot make an honest
    party reuse pads, but messages from another session are recognised by
    their binding tag.
    """

    session_id: bytes
    alice: int
    bob: int

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, bytes) or not 1 <= len(self.session_id) <= (
            _MAX_SESSION_ID
        ):
            raise LocalMisuseError("session id must be 1..256 bytes")
        for pid in (self.alice, self.bob):
            if not isinstance(pid, int) or not 0 <= pid <= _MAX_PARTY_ID:
                raise LocalMisuseError("party ids must be integers in [0, 2^32)")
        if self.alice == self.bob:
            raise LocalMisuseError("alice and bob must be different parties")

    def transcript(self, domain: bytes) -> Transcript:
        """A transcript for ``domain`` bound to session id and both party ids."""
        t = Transcript(domain)
        t.append(b"session-id", self.session_id)
        t.append_int(b"alice", self.alice, 4)
        t.append_int(b"bob", self.bob, 4)
        return t

    def binding_tag(self, message: bytes) -> bytes:
        """Public 32-byte tag naming session, pair and message kind."""
        return self.transcript(b"dkls23/message-binding/v1").digest(message)

    def check_binding(self, tag: bytes, message: bytes, sender: int) -> None:
        if tag != self.binding_tag(message):
            raise ForeignSessionError(
                f"{message.decode()} is bound to another session or pair", [sender]
            )


def invalid(sender: int, what: str) -> InvalidMessageError:
    return InvalidMessageError(what, [sender])


T = TypeVar("T")


def parse_message(data: bytes, sender: int, what: str, body: Callable[[Reader], T]) -> T:
    """Decode one pairwise message: the version byte, ``body``, nothing left.

    Every decoding failure becomes :class:`InvalidMessageError` naming
    ``sender`` (the base-OT, OT-extension and pi_RVOLE messages share this).
    """
    try:
        r = Reader(data)
        if r.u8() != FORMAT_VERSION:
            raise EncodingError("unknown format version")
        out = body(r)
        r.finish()
        return out
    except EncodingError as exc:
        raise invalid(sender, f"{what}: {exc}") from exc


def scalars_from_bytes(raw: bytes, width: int = 32) -> list[int]:
    """Big-endian ``width``-byte integers (range checks are the caller's)."""
    return [int.from_bytes(raw[o : o + width], "big") for o in range(0, len(raw), width)]
