"""FROST for BIP340 Schnorr signatures and BIP341 Taproot key-path spends.

RFC 9591's FROST(secp256k1, SHA-256) produces signatures that Bitcoin cannot
check. This variant keeps the RFC's rounds, binding factors and share
verification and changes exactly what BIP340/BIP341 require:

* the group key is x-only: when its y is odd, every share and verifying share
  is negated (BIP340 "Public Key Generation": keys have implicitly even y);
* Taproot (BIP341 "Constructing and spending Taproot outputs"): the output key
  is Q = P + t*G with t = int(hash_TapTweak(x(P) || merkle_root)); each share
  becomes s_i + t, since the Lagrange coefficients sum to one; Q is then
  normalised to even y in turn;
* when the group commitment R has odd y every signer negates its nonces
  (section 5.2's d_i + e_i * rho_i becomes -(d_i + e_i * rho_i)), so the
  signature's R is the even-y lift of x(R);
* the challenge is BIP340's tagged hash of x(R) || x(Q) || m, and the
  signature is x(R) || z.

The context string differs from the RFC suite's so binding factors of the two
suites never coincide. :func:`bip340_verify` is the verification algorithm of
BIP340 built on the group layer; the tests run it over the BIP's vectors and
cross-check every produced signature with libsecp256k1's own verifier.
"""

from __future__ import annotations

from signer_nodes.mpc.errors import EncodingError, LocalMisuseError
from signer_nodes.mpc.frost.ciphersuite import KeyView, Secp256k1Sha256
from signer_nodes.mpc.groups import SECP256K1, Element
from signer_nodes.mpc.groups.secp256k1 import FIELD_PRIME, Secp256k1Point
from signer_nodes.mpc.transcript import tagged_hash

ORDER = SECP256K1.order


def _point(e: Element) -> Secp256k1Point:
    if not isinstance(e, Secp256k1Point):
        raise TypeError("expected a secp256k1 point")
    return e


def bip340_challenge(r_x: bytes, p_x: bytes, msg: bytes) -> int:
    return int.from_bytes(tagged_hash("BIP0340/challenge", r_x + p_x + msg), "big") % ORDER


def taproot_tweak(internal_key_x: bytes, merkle_root: bytes) -> int:
    """BIP341 ``taproot_tweak_pubkey``'s t; ``merkle_root`` is b"" for a key-path-only output."""
    if len(merkle_root) not in (0, 32):
        raise LocalMisuseError("a Taproot merkle root is 32 bytes (or empty)")
    t = int.from_bytes(tagged_hash("TapTweak", internal_key_x + merkle_root), "big")
    if t >= ORDER:
        raise LocalMisuseError("Taproot tweak out of range")
    return t


def _even(view: KeyView) -> KeyView:
    if _point(view.group_public_key).has_even_y():
        return view
    return KeyView(-view.signing_share % ORDER, -view.verifying_share, -view.group_public_key)


class Bip340Suite(Secp256k1Sha256):
    """FROST(secp256k1, SHA-256) adapted to BIP340 / BIP341."""

    name = "FROST(secp256k1, SHA-256, BIP340)"
    context_string = b"FROST-secp256k1-SHA256-TR-v1"

    def challenge(self, group_commitment: Element, group_public_key: Element, msg: bytes) -> int:
        return bip340_challenge(
            _point(group_commitment).x_bytes(), _point(group_public_key).x_bytes(), msg
        )

    def nonce_sign(self, group_commitment: Element) -> int:
        return 1 if _point(group_commitment).has_even_y() else -1

    def tweak_key(self, key: KeyView, tweak: bytes | None) -> KeyView:
        view = _even(key)
        if tweak is None:
            return view
        t = taproot_tweak(_point(view.group_public_key).x_bytes(), tweak)
        g = SECP256K1
        tweaked = view.group_public_key + g.base_mult(t)
        if tweaked.is_identity:
            raise LocalMisuseError("Taproot tweak gives the point at infinity")
        return _even(
            KeyView(
                (view.signing_share + t) % ORDER, view.verifying_share + g.base_mult(t), tweaked
            )
        )

    def serialize_signature(self, group_commitment: Element, z: int) -> bytes:
        return _point(group_commitment).x_bytes() + z.to_bytes(32, "big")

    def serialize_public_key(self, group_public_key: Element) -> bytes:
        return _point(group_public_key).x_bytes()

    def verify(self, public_key: Element, msg: bytes, signature: bytes) -> bool:
        return bip340_verify(_point(public_key).x_bytes(), msg, signature)


def bip340_verify(public_key_x: bytes, msg: bytes, signature: bytes) -> bool:
    """BIP340 ``Verify(pk, m, sig)``, step by step as the BIP specifies."""
    if len(public_key_x) != 32 or len(signature) != 64:
        return False
    try:
        p = SECP256K1.lift_x(public_key_x)  # fails if x >= p or not on the curve
    except EncodingError:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if r >= FIELD_PRIME or s >= ORDER:
        return False
    e = bip340_challenge(signature[:32], public_key_x, msg)
    big_r = _point(SECP256K1.base_mult(s) - p * e)
    if big_r.is_identity or not big_r.has_even_y():
        return False
    return big_r.x_bytes() == signature[:32]


FROST_BIP340 = Bip340Suite()
