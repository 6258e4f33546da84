"""secp256k1 through libsecp256k1 (``coincurve``).

Elements wrap :class:`coincurve.PublicKey`; ``None`` stands for the identity,
which libsecp256k1 cannot represent. Point addition is
``secp256k1_ec_pubkey_combine``, scalar multiplication
``secp256k1_ec_pubkey_tweak_mul``; negation flips the parity byte of the
compressed encoding (y is never zero on this curve, so -P is the point with
the other parity). No field arithmetic is written here.

Encoding (RFC 9591 section 6.5, SEC 1 section 2.3.3): 33-byte compressed
points, 32-byte big-endian scalars.
"""

from __future__ import annotations

from coincurve import PublicKey

from signer_nodes.mpc.errors import EncodingError
from signer_nodes.mpc.groups.base import Element, Group

ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
FIELD_PRIME = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
_IDENTITY_BYTES = b"\x00"


class Secp256k1Point(Element):
    __slots__ = ("_enc", "_pk")

    def __init__(self, pk: PublicKey | None, enc: bytes | None = None) -> None:
        self._pk = pk
        self._enc = enc

    @property
    def group(self) -> Group:  # type: ignore[override]
        return SECP256K1

    @property
    def is_identity(self) -> bool:
        return self._pk is None

    def to_bytes(self) -> bytes:
        if self._enc is None:
            self._enc = _IDENTITY_BYTES if self._pk is None else self._pk.format(compressed=True)
        return self._enc

    @property
    def public_key(self) -> PublicKey:
        """The coincurve key (for verifiers); the identity has none."""
        if self._pk is None:
            raise EncodingError("secp256k1: the identity is not a public key")
        return self._pk

    def x_bytes(self) -> bytes:
        """32-byte big-endian affine x coordinate."""
        return self.to_bytes_checked()[1:]

    def has_even_y(self) -> bool:
        return self.to_bytes_checked()[0] == 0x02

    def to_bytes_checked(self) -> bytes:
        if self._pk is None:
            raise EncodingError("secp256k1: the identity has no coordinates")
        return self.to_bytes()

    def __add__(self, other: Element) -> Element:
        if not isinstance(other, Secp256k1Point):
            return NotImplemented
        if self._pk is None:
            return other
        if other._pk is None:
            return self
        try:
            return Secp256k1Point(PublicKey.combine_keys([self._pk, other._pk]))
        except ValueError:  # the only failure for two valid points: P + (-P)
            return _IDENTITY

    def __neg__(self) -> Element:
        if self._pk is None:
            return self
        enc = self.to_bytes()
        flipped = bytes([enc[0] ^ 0x01]) + enc[1:]
        return Secp256k1Point(PublicKey(flipped), flipped)

    def __mul__(self, scalar: int) -> Element:
        if not isinstance(scalar, int):
            return NotImplemented
        k = scalar % ORDER
        if k == 0 or self._pk is None:
            return _IDENTITY
        if k == 1:
            return self
        return Secp256k1Point(self._pk.multiply(k.to_bytes(32, "big")))


class Secp256k1Group(Group):
    name = "secp256k1"
    order = ORDER
    element_len = 33
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
        return Secp256k1Point(PublicKey.from_valid_secret(k.to_bytes(32, "big")))

    def deserialize_element(self, data: bytes) -> Element:
        if len(data) != 33 or data[0] not in (0x02, 0x03):
            raise EncodingError("secp256k1: expected a 33-byte compressed point")
        if int.from_bytes(data[1:], "big") >= FIELD_PRIME:
            raise EncodingError("secp256k1: non-canonical x coordinate")
        try:
            pk = PublicKey(bytes(data))
        except ValueError as exc:
            raise EncodingError("secp256k1: point is not on the curve") from exc
        return Secp256k1Point(pk, bytes(data))

    def element_from_bytes(self, data: bytes) -> Element:
        if data == _IDENTITY_BYTES:
            return _IDENTITY
        return self.deserialize_element(data)

    def serialize_scalar(self, scalar: int) -> bytes:
        return (scalar % ORDER).to_bytes(32, "big")

    def deserialize_scalar(self, data: bytes) -> int:
        if len(data) != 32:
            raise EncodingError("secp256k1: expected a 32-byte scalar")
        k = int.from_bytes(data, "big")
        if k >= ORDER:
            raise EncodingError("secp256k1: scalar is not reduced modulo the order")
        return k

    def lift_x(self, x: bytes) -> Secp256k1Point:
        """BIP340 lift_x: the point with x coordinate ``x`` and even y."""
        if len(x) != 32 or int.from_bytes(x, "big") >= FIELD_PRIME:
            raise EncodingError("secp256k1: x coordinate out of range")
        try:
            return Secp256k1Point(PublicKey(b"\x02" + x), b"\x02" + x)
        except ValueError as exc:
            raise EncodingError("secp256k1: x is not on the curve") from exc


SECP256K1 = Secp256k1Group()
_IDENTITY = Secp256k1Point(None)
_GENERATOR = SECP256K1.base_mult(1)
