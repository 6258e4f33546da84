"""Canonical byte encodings and hashes of the Proof-of-Reserves format (versions 1 and 2).

Everything hashed or signed in the format is built here, so that
``docs/por-format.md`` can state it byte for byte. Conventions:

* SHA-256, full 32-byte output, everywhere.
* A domain tag is ``u8 len || ascii("custody-por/v<version>/" + name)``; every hash
  input starts with exactly one tag, so a leaf can never be read as a node, a padding
  node or a challenge, and the format version is bound into every hash: a version 2
  root can never equal a version 1 root. The builder writes :data:`FORMAT_VERSION`;
  verifiers read every version in :data:`SUPPORTED_VERSIONS` (the hash functions take
  the version of the file being checked).
* Integers are big-endian, fixed width: ``u8``, ``u16``, ``u64``.
* Variable-length byte strings are ``u16 len || bytes`` (``lp16``), so that
  ``("ab", "c")`` and ``("a", "bc")`` encode differently.
* A balance vector is ``u64(b_0) || ... || u64(b_{k-1})`` in the order of the
  snapshot's sorted asset list; every balance is in ``[0, 2^64)``.

Leaf and node follow ARCHITECTURE.md section 5: a node commits *both* children's
sum vectors, not only their total, which closes the sibling-shifting attack of
Chalkias, Chatzigiannis and Ji, "Broken Proofs of Solvency in Blockchain
Custodial Wallets and Exchanges", ePrint 2022/043, section 4.

This module imports only ``hashlib`` and language-level modules: the standalone
verifier depends on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
U64_LIMIT = 1 << 64
SALT_LEN = 32
HASH_LEN = 32
MAX_ID_BYTES = 1024


def tag_prefix(version: int = FORMAT_VERSION) -> str:
    """``custody-por/v<version>/``: the text every tag of that version starts with."""
    return f"custody-por/v{version}/"


TAG_PREFIX = tag_prefix()


def tag(name: str, version: int = FORMAT_VERSION) -> bytes:
    """Domain tag ``u8 len || ascii("custody-por/v<version>/" + name)``."""
    raw = (tag_prefix(version) + name).encode("ascii")
    return len(raw).to_bytes(1, "big") + raw


# Tags of the version the builder writes. ``TAG_CHALLENGE`` is also what the signer
# nodes require a ``por_attestation`` payload to start with (policy/payloads/messages.py),
# so the cluster attests challenges of the current version only.
TAG_CUSTOMER = tag("customer")
TAG_LEAF = tag("leaf")
TAG_NODE = tag("node")
TAG_PAD = tag("pad")
TAG_CHALLENGE = tag("challenge")
TAG_SNAPSHOT = tag("snapshot")
TAG_NAMES = ("customer", "leaf", "node", "pad", "challenge", "snapshot")
_TAGS = {(name, v): tag(name, v) for name in TAG_NAMES for v in SUPPORTED_VERSIONS}


def _tag(name: str, version: int) -> bytes:
    """``tag(name, version)``, precomputed for the supported versions (hot path)."""
    cached = _TAGS.get((name, version))
    return cached if cached is not None else tag(name, version)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u64(value: int) -> bytes:
    """Big-endian u64; raises ``OverflowError`` outside ``[0, 2^64)``."""
    return value.to_bytes(8, "big", signed=False)


def lp16(data: bytes) -> bytes:
    """``u16 len || data``; raises ``OverflowError`` for 64 KiB or more."""
    return len(data).to_bytes(2, "big") + data


def balances_bytes(balances: Sequence[int]) -> bytes:
    """Balance vector: ``u64`` per asset, in snapshot asset order."""
    return b"".join(b.to_bytes(8, "big", signed=False) for b in balances)


def customer_hash(customer_id: str, salt: bytes, version: int = FORMAT_VERSION) -> bytes:
    """``H(tag("customer") || lp16(utf8(customer_id)) || salt)``, salt 32 bytes.

    The 32-byte random salt hides the id from everyone who sees the hash (other
    customers see it as a sibling); the length prefix makes the id/salt split
    unambiguous.
    """
    return sha256(_tag("customer", version) + lp16(customer_id.encode("utf-8")) + salt)


def leaf_hash(cust_hash: bytes, balances: Sequence[int], version: int = FORMAT_VERSION) -> bytes:
    """``H(tag("leaf") || customer_hash || balances)``."""
    return sha256(_tag("leaf", version) + cust_hash + balances_bytes(balances))


def node_hash(
    left: bytes,
    left_sums: Sequence[int],
    right: bytes,
    right_sums: Sequence[int],
    version: int = FORMAT_VERSION,
) -> bytes:
    """``H(tag("node") || h_L || sums_L || h_R || sums_R)``: both children's sums committed."""
    return sha256(
        _tag("node", version)
        + left
        + balances_bytes(left_sums)
        + right
        + balances_bytes(right_sums)
    )


def pad_hash(level: int, index: int, version: int = FORMAT_VERSION) -> bytes:
    """Padding node at ``(level, index)``: ``H(tag("pad") || u8 level || u64 index)``, sums zero.

    A level with an odd number of nodes (more than one) gets one padding node
    appended at index ``m``. Its tag differs from ``TAG_LEAF`` so no customer proof can
    end in it, its sums are zero so it adds nothing to liabilities, and it is a
    public function of its position so a verifier can recognise and check it.
    """
    return sha256(_tag("pad", version) + u8(level) + u64(index))


def level_sizes(leaf_count: int) -> list[int]:
    """Unpadded node counts per level, leaves first, root (1) last."""
    if leaf_count < 1:
        raise ValueError("a tree has at least one leaf")
    sizes = [leaf_count]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def tree_depth(leaf_count: int) -> int:
    """Number of path elements in every proof: ``ceil(log2(leaf_count))``."""
    return (leaf_count - 1).bit_length() if leaf_count >= 1 else 0
