"""FROST ciphersuites of RFC 9591 section 6.

A ciphersuite is a group plus five hash functions H1..H5 under a context
string (section 6). ``FROST(Ed25519, SHA-512)`` (section 6.1) and
``FROST(secp256k1, SHA-256)`` (section 6.5) are implemented exactly; the
BIP340/Taproot variant lives in :mod:`signer_nodes.mpc.frost.bip340` and
overrides the challenge, the signature encoding and the key/nonce
normalisation hooks declared here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from signer_nodes.mpc.errors import EncodingError, LocalMisuseError
from signer_nodes.mpc.groups import ED25519, SECP256K1, Element, Group


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 section 5.3.1 ``expand_message_xmd`` with SHA-256.

    Written here rather than imported because the only packaged version
    (py-ecc's) drags in 0.4 s of BLS12-381 set-up at import; the tests check
    this one against RFC 9380 Appendix K.1 and against py-ecc.
    """
    b_in_bytes, s_in_bytes = 32, 64
    ell = -(-len_in_bytes // b_in_bytes)
    if ell > 255 or len_in_bytes > 65535 or len(dst) > 255:
        raise ValueError("expand_message_xmd: requested output or DST too long")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(s_in_bytes) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha256(msg_prime).digest()
    b_i = hashlib.sha256(b0 + b"\x01" + dst_prime).digest()
    out = [b_i]
    for i in range(2, ell + 1):
        b_i = hashlib.sha256(
            bytes(x ^ y for x, y in zip(b0, b_i, strict=True)) + bytes([i]) + dst_prime
        ).digest()
        out.append(b_i)
    return b"".join(out)[:len_in_bytes]


@dataclass(frozen=True, slots=True)
class KeyView:
    """The key material one signing operation uses, after any suite-specific
    normalisation (BIP340 even-y, Taproot tweak). ``signing_share`` is secret."""

    signing_share: int
    verifying_share: Element
    group_public_key: Element

    def __repr__(self) -> str:
        return f"KeyView(verifying_share={self.verifying_share!r}, signing_share=<redacted>)"


class Ciphersuite:
    """RFC 9591 ciphersuite: a group, a context string and H1..H5."""

    name: str
    context_string: bytes
    group: Group

    def h1(self, m: bytes) -> int:
        raise NotImplementedError

    def h2(self, m: bytes) -> int:
        raise NotImplementedError

    def h3(self, m: bytes) -> int:
        raise NotImplementedError

    def h4(self, m: bytes) -> bytes:
        raise NotImplementedError

    def h5(self, m: bytes) -> bytes:
        raise NotImplementedError

    # -- hooks the BIP340 variant overrides ---------------------------------

    def challenge(self, group_commitment: Element, group_public_key: Element, msg: bytes) -> int:
        """RFC 9591 section 4.6 ``compute_challenge``."""
        g = self.group
        return self.h2(
            g.serialize_element(group_commitment) + g.serialize_element(group_public_key) + msg
        )

    def nonce_sign(self, group_commitment: Element) -> int:
        """+1, or -1 when the suite requires the nonce to be negated (BIP340 odd R)."""
        return 1

    def tweak_key(self, key: KeyView, tweak: bytes | None) -> KeyView:
        """Normalise / tweak the key before signing; RFC suites take no tweak."""
        if tweak is not None:
            raise LocalMisuseError(f"{self.name} does not support key tweaks")
        return key

    def tweak_public_key(self, group_public_key: Element, tweak: bytes | None) -> Element:
        return self.tweak_key(
            KeyView(0, group_public_key, group_public_key), tweak
        ).group_public_key

    def serialize_signature(self, group_commitment: Element, z: int) -> bytes:
        """RFC 9591 section 5.3: SerializeElement(R) || SerializeScalar(z)."""
        g = self.group
        return g.serialize_element(group_commitment) + g.serialize_scalar(z)

    def serialize_public_key(self, group_public_key: Element) -> bytes:
        return self.group.serialize_element(group_public_key)

    def verify(self, public_key: Element, msg: bytes, signature: bytes) -> bool:
        """The verification equation of RFC 9591 Appendix B: z*G == R + c*PK.

        Elements are decoded with DeserializeElement, so R is in the
        prime-order subgroup and the cofactored and cofactorless equations
        agree.
        """
        g = self.group
        if len(signature) != g.element_len + g.scalar_len:
            return False
        try:
            r = g.deserialize_element(signature[: g.element_len])
            z = g.deserialize_scalar(signature[g.element_len :])
        except EncodingError:
            return False
        return g.base_mult(z) == r + public_key * self.challenge(r, public_key, msg)

    def __repr__(self) -> str:
        return f"<ciphersuite {self.name}>"


class Ed25519Sha512(Ciphersuite):
    """FROST(Ed25519, SHA-512), RFC 9591 section 6.1."""

    name = "FROST(Ed25519, SHA-512)"
    context_string = b"FROST-ED25519-SHA512-v1"
    group = ED25519

    def _scalar(self, data: bytes) -> int:
        return int.from_bytes(hashlib.sha512(data).digest(), "little") % ED25519.order

    def h1(self, m: bytes) -> int:
        return self._scalar(self.context_string + b"rho" + m)

    def h2(self, m: bytes) -> int:
        # No context string: the challenge is RFC 8032's, so signatures are plain Ed25519.
        return self._scalar(m)

    def h3(self, m: bytes) -> int:
        return self._scalar(self.context_string + b"nonce" + m)

    def h4(self, m: bytes) -> bytes:
        return hashlib.sha512(self.context_string + b"msg" + m).digest()

    def h5(self, m: bytes) -> bytes:
        return hashlib.sha512(self.context_string + b"com" + m).digest()


class Secp256k1Sha256(Ciphersuite):
    """FROST(secp256k1, SHA-256), RFC 9591 section 6.5."""

    name = "FROST(secp256k1, SHA-256)"
    context_string = b"FROST-secp256k1-SHA256-v1"
    group = SECP256K1

    def _hash_to_field(self, m: bytes, tag: bytes) -> int:
        # hash_to_field(m, 1) of RFC 9380 section 5.2 with L = 48, big-endian.
        uniform = expand_message_xmd(m, self.context_string + tag, 48)
        return int.from_bytes(uniform, "big") % SECP256K1.order

    def h1(self, m: bytes) -> int:
        return self._hash_to_field(m, b"rho")

    def h2(self, m: bytes) -> int:
        return self._hash_to_field(m, b"chal")

    def h3(self, m: bytes) -> int:
        return self._hash_to_field(m, b"nonce")

    def h4(self, m: bytes) -> bytes:
        return hashlib.sha256(self.context_string + b"msg" + m).digest()

    def h5(self, m: bytes) -> bytes:
        return hashlib.sha256(self.context_string + b"com" + m).digest()


FROST_ED25519 = Ed25519Sha512()
FROST_SECP256K1 = Secp256k1Sha256()
