"""FROST round one: nonce generation and commitment (RFC 9591 sections 4.1, 5.1).

``commit`` returns the secret :class:`SigningNonces`, which the signer keeps,
and the public :class:`SigningCommitments`, which it sends. Nonces are
single-use objects: :meth:`SigningNonces.consume` hands out the scalars once
and raises :class:`~signer_nodes.mpc.errors.NonceReuseError` afterwards. The
node layer persists "used" before a share leaves the node; this object is the
in-memory half of that guarantee.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EncodingError, NonceReuseError
from signer_nodes.mpc.frost.ciphersuite import Ciphersuite
from signer_nodes.mpc.groups import Element

RandomBytes = Callable[[int], bytes]


def nonce_generate(suite: Ciphersuite, secret: int, random_bytes: bytes) -> int:
    """Section 4.1: H3(random_bytes || SerializeScalar(secret)).

    Mixing in the secret share protects against a weak RNG; the 32 random
    bytes are what make each nonce fresh.
    """
    if len(random_bytes) != 32:
        raise ValueError("nonce_generate needs 32 random bytes")
    return suite.h3(random_bytes + suite.group.serialize_scalar(secret))


@dataclass(frozen=True, slots=True)
class SigningCommitments:
    """A participant's public nonce commitments (D_i, E_i)."""

    identifier: int
    hiding: Element
    binding: Element

    def encode(self, suite: Ciphersuite) -> bytes:
        g = suite.group
        return bytes(
            Writer()
            .u16(self.identifier)
            .fixed(g.serialize_element(self.hiding))
            .fixed(g.serialize_element(self.binding))
        )

    @classmethod
    def decode(cls, suite: Ciphersuite, data: bytes) -> SigningCommitments:
        g = suite.group
        r = Reader(data)
        identifier = r.u16()
        hiding = g.deserialize_element(r.fixed(g.element_len))
        binding = g.deserialize_element(r.fixed(g.element_len))
        r.finish()
        if identifier == 0:
            raise EncodingError("identifier 0 is not allowed")
        return cls(identifier, hiding, binding)


class SigningNonces:
    """Secret hiding and binding nonces (d_i, e_i); usable exactly once."""

    __slots__ = ("_binding", "_hiding", "_used", "commitments")

    def __init__(self, hiding: int, binding: int, commitments: SigningCommitments) -> None:
        self._hiding = hiding
        self._binding = binding
        self._used = False
        self.commitments = commitments

    @property
    def used(self) -> bool:
        return self._used

    def consume(self) -> tuple[int, int]:
        """Return (hiding, binding) and make this object unusable."""
        if self._used:
            raise NonceReuseError("signing nonces were already used")
        self._used = True
        out = (self._hiding, self._binding)
        self._hiding = self._binding = 0
        return out

    def to_bytes(self, suite: Ciphersuite) -> bytes:
        """Serialise for sealed storage in the node's nonce pool."""
        if self._used:
            raise NonceReuseError("used nonces must not be stored")
        g = suite.group
        return bytes(
            Writer()
            .fixed(b"FSN")
            .u8(1)
            .fixed(g.serialize_scalar(self._hiding))
            .fixed(g.serialize_scalar(self._binding))
            .var(self.commitments.encode(suite))
        )

    @classmethod
    def from_bytes(cls, suite: Ciphersuite, data: bytes) -> SigningNonces:
        g = suite.group
        r = Reader(data)
        if r.fixed(3) != b"FSN" or r.u8() != 1:
            raise EncodingError("not a version-1 nonce record")
        hiding = g.deserialize_scalar(r.fixed(g.scalar_len))
        binding = g.deserialize_scalar(r.fixed(g.scalar_len))
        commitments = SigningCommitments.decode(suite, r.var(256))
        r.finish()
        if g.base_mult(hiding) != commitments.hiding or g.base_mult(binding) != commitments.binding:
            raise EncodingError("nonce record does not match its commitments")
        return cls(hiding, binding, commitments)

    def __repr__(self) -> str:
        state = "used" if self._used else "unused"
        return f"SigningNonces(identifier={self.commitments.identifier}, {state}, <redacted>)"


def commit(
    suite: Ciphersuite,
    identifier: int,
    signing_share: int,
    *,
    _random_bytes: RandomBytes = secrets.token_bytes,
) -> tuple[SigningNonces, SigningCommitments]:
    """Section 5.1 ``commit``: two fresh nonces and their commitments.

    ``_random_bytes`` is the private test seam through which the RFC vectors
    inject their nonce randomness; production code never passes it.
    """
    g = suite.group
    hiding = nonce_generate(suite, signing_share, _random_bytes(32))
    binding = nonce_generate(suite, signing_share, _random_bytes(32))
    commitments = SigningCommitments(identifier, g.base_mult(hiding), g.base_mult(binding))
    return SigningNonces(hiding, binding, commitments), commitments
