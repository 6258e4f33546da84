"""Node identities: an Ed25519 key that signs every envelope the node sends,
and an X25519 key to which point-to-point payloads are encrypted.

The public halves of every node form a :class:`NodeDirectory`, distributed by
``custody init`` in each node's configuration; a node trusts only the keys in
its own directory, never keys that arrive with a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EncodingError


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class NodePublicIdentity:
    node_id: int
    signing_key: bytes  # Ed25519, 32 bytes
    encryption_key: bytes  # X25519, 32 bytes

    def __post_init__(self) -> None:
        if (
            len(self.signing_key) != 32
            or len(self.encryption_key) != 32
            or not 0 < self.node_id < 2**16
        ):
            raise ValueError("a node identity is an id and two 32-byte public keys")

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.signing_key)

    def recipient_key(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(self.encryption_key)


class NodeIdentity:
    """A node's private identity keys; ``repr`` shows only the public half."""

    __slots__ = ("_encryption", "_signing", "node_id")

    def __init__(
        self, node_id: int, signing: Ed25519PrivateKey, encryption: X25519PrivateKey
    ) -> None:
        self.node_id = node_id
        self._signing = signing
        self._encryption = encryption

    @classmethod
    def generate(cls, node_id: int) -> NodeIdentity:
        return cls(node_id, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @property
    def public(self) -> NodePublicIdentity:
        return NodePublicIdentity(
            self.node_id,
            _raw_public(self._signing.public_key()),
            _raw_public(self._encryption.public_key()),
        )

    def sign(self, data: bytes) -> bytes:
        return self._signing.sign(data)

    @property
    def private_signing_key(self) -> Ed25519PrivateKey:
        """For signers that need the key object (policy history heads, which are
        domain-separated from envelopes by their own tag)."""
        return self._signing

    @property
    def decryption_key(self) -> X25519PrivateKey:
        return self._encryption

    def to_bytes(self) -> bytes:
        """Private serialisation, for the node's sealed key store only."""
        raw = Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        return bytes(
            Writer()
            .fixed(b"NID")
            .u8(1)
            .u16(self.node_id)
            .fixed(self._signing.private_bytes(*raw))
            .fixed(self._encryption.private_bytes(*raw))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> NodeIdentity:
        r = Reader(data)
        if r.fixed(3) != b"NID" or r.u8() != 1:
            raise EncodingError("not a version-1 node identity")
        node_id = r.u16()
        signing = Ed25519PrivateKey.from_private_bytes(r.fixed(32))
        encryption = X25519PrivateKey.from_private_bytes(r.fixed(32))
        r.finish()
        return cls(node_id, signing, encryption)

    def __repr__(self) -> str:
        key = self.public.signing_key.hex()
        return f"NodeIdentity(node_id={self.node_id}, signing_key={key}, <private redacted>)"


class NodeDirectory:
    """The public identities of every node, by node id."""

    def __init__(self, nodes: Mapping[int, NodePublicIdentity]) -> None:
        for node_id, ident in nodes.items():
            if ident.node_id != node_id:
                raise ValueError("directory entry under the wrong id")
        self._nodes = dict(nodes)

    def __getitem__(self, node_id: int) -> NodePublicIdentity:
        return self._nodes[node_id]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def ids(self) -> list[int]:
        return sorted(self._nodes)
