"""The prime-order group interface that every protocol core is written against.

Elements are immutable values with ``+``, ``-``, unary ``-`` and integer
scalar multiplication (``P * k`` or ``k * P``). Scalars are plain Python
integers reduced modulo :attr:`Group.order`; only their serialisation is group
specific. The identity element is represented explicitly because neither
libsecp256k1 nor libsodium's scalar multiplication will represent it, and the
protocols meet it legitimately (a refresh polynomial commits to zero; a sum of
commitments can cancel).

Serialisation follows RFC 9591 section 3.1: ``serialize_element`` refuses the
identity, ``deserialize_element`` refuses non-canonical encodings, points off
the curve, the identity and (for Ed25519) points outside the prime-order
subgroup, and ``deserialize_scalar`` refuses values >= the group order.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from typing import Any


class Element(ABC):
    """An element of a prime-order group; subclasses are immutable."""

    __slots__ = ()

    group: Group

    @property
    @abstractmethod
    def is_identity(self) -> bool: ...

    @abstractmethod
    def __add__(self, other: Element) -> Element: ...

    @abstractmethod
    def __neg__(self) -> Element: ...

    @abstractmethod
    def __mul__(self, scalar: int) -> Element: ...

    @abstractmethod
    def to_bytes(self) -> bytes:
        """Canonical encoding; unlike ``serialize_element`` it also encodes the identity."""

    def __sub__(self, other: Element) -> Element:
        return self + (-other)

    def __rmul__(self, scalar: int) -> Element:
        return self * scalar

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element) or other.group is not self.group:
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash((self.group.name, self.to_bytes()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_bytes().hex()})"


class Group(ABC):
    """A prime-order group together with its RFC 9591 serialisation."""

    name: str
    order: int
    element_len: int
    scalar_len: int

    @property
    @abstractmethod
    def identity(self) -> Element: ...

    @property
    @abstractmethod
    def generator(self) -> Element: ...

    @abstractmethod
    def base_mult(self, scalar: int) -> Element:
        """``scalar * G``; a zero scalar gives the identity."""

    @abstractmethod
    def deserialize_element(self, data: bytes) -> Element:
        """Decode an element; raise ``EncodingError`` as RFC 9591 requires."""

    @abstractmethod
    def element_from_bytes(self, data: bytes) -> Element:
        """Inverse of ``Element.to_bytes``: like ``deserialize_element`` but
        admitting the identity (for commitments that may legitimately be zero)."""

    @abstractmethod
    def serialize_scalar(self, scalar: int) -> bytes: ...

    @abstractmethod
    def deserialize_scalar(self, data: bytes) -> int:
        """Decode a scalar; raise ``EncodingError`` for wrong length or >= order."""

    def serialize_element(self, element: Element) -> bytes:
        """RFC 9591 SerializeElement: the identity has no encoding."""
        from signer_nodes.mpc.errors import EncodingError

        self.check_member(element)
        if element.is_identity:
            raise EncodingError(f"{self.name}: the identity element has no encoding")
        return element.to_bytes()

    def check_member(self, element: Any) -> None:
        if not isinstance(element, Element) or element.group is not self:
            raise TypeError(f"expected an element of {self.name}")

    def random_scalar(self) -> int:
        """A uniformly random non-zero scalar from the OS CSPRNG."""
        return secrets.randbelow(self.order - 1) + 1

    def __repr__(self) -> str:
        return f"<group {self.name}>"
