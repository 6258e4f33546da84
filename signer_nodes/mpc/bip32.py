"""BIP32 non-hardened public derivation (``CKDpub``) for threshold keys.

A threshold key has no single private key to derive hardened children from,
but non-hardened children need only the public key and the chain code (the
DKG agrees on one, committed then revealed). Each step adds I_L*G to the key;
the signers add the accumulated sum of the I_L values to their shares (the
Lagrange coefficients sum to one, so every share moves by the same amount)
and the signature verifies under the derived public key.

Follows BIP32 "Public parent key -> public child key" exactly, including the
invalid-child rule (I_L >= n or the point at infinity): such an index raises
rather than silently skipping, so callers choose the next index explicitly.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from signer_nodes.mpc.errors import LocalMisuseError
from signer_nodes.mpc.groups import SECP256K1, Element

HARDENED = 0x80000000
MAX_DEPTH = 255


class InvalidChildError(LocalMisuseError):
    """BIP32: this index yields an invalid key; proceed with the next index."""

    code = "BIP32_INVALID_CHILD"


class InvalidPathError(LocalMisuseError):
    code = "BIP32_INVALID_PATH"


@dataclass(frozen=True, slots=True)
class ExtendedPublicKey:
    public_key: Element
    chain_code: bytes
    depth: int = 0
    parent_fingerprint: bytes = b"\x00\x00\x00\x00"
    child_number: int = 0

    def __post_init__(self) -> None:
        SECP256K1.check_member(self.public_key)
        if len(self.chain_code) != 32 or self.public_key.is_identity:
            raise ValueError("an extended public key needs a point and a 32-byte chain code")

    @property
    def fingerprint(self) -> bytes:
        """The first 32 bits of HASH160(serP(K)) (BIP32 "Key identifiers")."""
        sha = hashlib.sha256(SECP256K1.serialize_element(self.public_key)).digest()
        return hashlib.new("ripemd160", sha).digest()[:4]


def ckd_pub(parent: ExtendedPublicKey, index: int) -> tuple[ExtendedPublicKey, int]:
    """BIP32 CKDpub((K_par, c_par), i) for i < 2^31; returns the child and I_L."""
    if not 0 <= index < HARDENED:
        raise InvalidPathError(
            "hardened derivation needs the private key; threshold keys use non-hardened paths"
        )
    if parent.depth >= MAX_DEPTH:
        raise InvalidPathError("BIP32 depth limit reached")
    data = SECP256K1.serialize_element(parent.public_key) + index.to_bytes(4, "big")
    digest = hmac.new(parent.chain_code, data, hashlib.sha512).digest()
    i_l, i_r = int.from_bytes(digest[:32], "big"), digest[32:]
    if i_l >= SECP256K1.order:
        raise InvalidChildError(f"index {index} gives I_L >= n")
    child_key = SECP256K1.base_mult(i_l) + parent.public_key
    if child_key.is_identity:
        raise InvalidChildError(f"index {index} gives the point at infinity")
    child = ExtendedPublicKey(child_key, i_r, parent.depth + 1, parent.fingerprint, index)
    return child, i_l


def parse_path(path: str) -> tuple[int, ...]:
    """``m/0/1/2`` -> (0, 1, 2); hardened steps (``'`` or ``h``) are refused."""
    parts = path.strip().split("/")
    if parts[0] != "m":
        raise InvalidPathError("a derivation path starts with 'm'")
    out = []
    for part in parts[1:]:
        if part.endswith(("'", "h", "H")):
            raise InvalidPathError("hardened steps cannot be derived from a threshold public key")
        if not part.isdigit() or int(part) >= HARDENED or (len(part) > 1 and part[0] == "0"):
            raise InvalidPathError(f"invalid path component {part!r}")
        out.append(int(part))
    return tuple(out)


def derive(root: ExtendedPublicKey, path: Sequence[int] | str) -> tuple[ExtendedPublicKey, int]:
    """Derive along ``path``; returns the child and the total additive tweak
    (the sum of the I_L values mod n) that the signers add to their shares."""
    indices = parse_path(path) if isinstance(path, str) else tuple(path)
    key, tweak = root, 0
    for index in indices:
        key, i_l = ckd_pub(key, index)
        tweak = (tweak + i_l) % SECP256K1.order
    return key, tweak
