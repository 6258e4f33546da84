"""Explicit, length-prefixed framing and domain-separated SHA-256 for everything the
policy layer hashes or signs.

Every hashed or signed byte string in ``policy/`` starts with ``tag(name)`` =
``u8(len(s)) || ascii(s)`` where ``s = "custody-policy/v1/" + name``, so two objects of
different kinds never share an encoding, and the format version is bound into every
signature. Variable-length fields are ``lp(b) = u32(len(b)) || b``; integers are fixed-width
big-endian. The scheme mirrors ``docs/por-format.md`` so that one reader can check both.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FORMAT_PREFIX = "custody-policy/v1/"
ZERO_HASH = bytes(32)


def tag(name: str) -> bytes:
    """The domain tag of one kind of hashed or signed object."""
    s = (FORMAT_PREFIX + name).encode("ascii")
    return len(s).to_bytes(1, "big") + s


def lp(data: bytes) -> bytes:
    """``u32(len) || data``: a field whose boundaries cannot be shifted."""
    if len(data) >= 1 << 32:
        raise ValueError("field longer than 2^32-1 bytes")
    return len(data).to_bytes(4, "big") + data


def lps(text: str) -> bytes:
    return lp(text.encode("utf-8"))


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def i64(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


def uint_var(value: int) -> bytes:
    """A non-negative integer of any size: its minimal big-endian bytes, length-prefixed."""
    if value < 0:
        raise ValueError("negative integer")
    return lp(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def hash_tagged(name: str, *parts: bytes) -> bytes:
    """SHA-256 over ``tag(name) || parts...`` (the parts must already be framed)."""
    h = hashlib.sha256(tag(name))
    for part in parts:
        h.update(part)
    return h.digest()


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def ed25519_ok(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """``True`` iff ``signature`` is a valid Ed25519 signature of ``message`` under ``key``."""
    if len(signature) != 64:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
