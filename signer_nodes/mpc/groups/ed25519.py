"""Edwards25519 through libsodium (PyNaCl's ``crypto_core_ed25519_*`` bindings).

Elements are canonical 32-byte encodings (RFC 8032 section 5.1.2). Addition and
subtraction are ``crypto_core_ed25519_add/sub`` (which accept the identity);
scalar multiplication is ``crypto_scalarmult_ed25519_noclamp`` and
``crypto_scalarmult_ed25519_base_noclamp``, which refuse the identity as input
and output, so the identity is special-cased here. libsodium's scalar
multiplication also refuses points outside the prime-order subgroup, which
every element here is in: elements only enter through
``deserialize_element`` (which checks the subgroup) or arithmetic on elements.

Encoding (RFC 9591 section 6.1): 32-byte points, 32-byte little-endian scalars.
DeserializeElement rejects non-canonical encodings, the identity and points of
small order or outside the prime-order subgroup
(``crypto_core_ed25519_is_valid_point``).
"""

from __future__ import annotations

from nacl import bindings as sodium

from signer_nodes.mpc.errors import EncodingError
from signer_nodes.mpc.groups.base import Element, Group

ORDER = 2**252 + 27742317777372353535851937790883648493
_IDENTITY_BYTES = b"\x01" + b"\x00" * 31


class Ed25519Point(Element):
    __slots__ = ("_enc",)

    def __init__(self, enc: bytes) -> None:
        self._enc = enc

    @property
    def group(self) -> Group:  # type: ignore[override]
        return ED25519

    @property
    def is_identity(self) -> bool:
        return self._enc == _IDENTITY_BYTES

    def to_bytes(self) -> bytes:
        return self._enc

    def __add__(self, other: Element) -> Element:
        if not isinstance(other, Ed25519Point):
            return NotImplemented
        return Ed25519Point(sodium.crypto_core_ed25519_add(self._enc, other._enc))

    def __sub__(self, other: Element) -> Element:
        if not isinstance(other, Ed25519Point):
            return NotImplemented
        return Ed25519Point(sodium.crypto_core_ed25519_sub(self._enc, other._enc))

    def __neg__(self) -> Element:
        return Ed25519Point(sodium.crypto_core_ed25519_sub(_IDENTITY_BYTES, self._enc))

    def __mul__(self, scalar: int) -> Element:
        if not isinstance(scalar, int):
            return NotImplemented
        k = scalar % ORDER
        if k == 0 or self.is_identity:
            return _IDENTITY
        if k == 1:
            return self
        return Ed25519Point(
            sodium.crypto_scalarmult_ed25519_noclamp(k.to_bytes(32, "little"), self._enc)
        )


class Ed25519Group(Group):
    name = "ed25519"
    order = ORDER
    element_len = 32
    scalar_len = 32

    @property
    def identity(self) -> Element:
        return _IDENTITY

    @property
    def generator(self) -> Element:
        return _GENERATOR

    def base_mult(self, scalar: int) -> Element:
        k = scalar % ORDER
        if k == 0:
            return _IDENTITY
        return Ed25519Point(sodium.crypto_scalarmult_ed25519_base_noclamp(k.to_bytes(32, "little")))

    def deserialize_element(self, data: bytes) -> Element:
        if len(data) != 32:
            raise EncodingError("ed25519: expected a 32-byte point")
        if not sodium.crypto_core_ed25519_is_valid_point(bytes(data)):
            raise EncodingError(
                "ed25519: non-canonical, off-curve, small-order or non-prime-order point"
            )
        return Ed25519Point(bytes(data))

    def element_from_bytes(self, data: bytes) -> Element:
        if data == _IDENTITY_BYTES:
            return _IDENTITY
        return self.deserialize_element(data)

    def serialize_scalar(self, scalar: int) -> bytes:
        return (scalar % ORDER).to_bytes(32, "little")

    def deserialize_scalar(self, data: bytes) -> int:
        if len(data) != 32:
            raise EncodingError("ed25519: expected a 32-byte scalar")
        k = int.from_bytes(data, "little")
        if k >= ORDER:
            raise EncodingError("ed25519: scalar is not reduced modulo the order")
        return k


ED25519 = Ed25519Group()
_IDENTITY = Ed25519Point(_IDENTITY_BYTES)
_GENERATOR = ED25519.base_mult(1)
