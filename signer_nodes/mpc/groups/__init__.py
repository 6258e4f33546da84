"""Prime-order groups backed by audited libraries (libsecp256k1, libsodium)."""

from signer_nodes.mpc.groups.base import Element, Group
from signer_nodes.mpc.groups.ed25519 import ED25519
from signer_nodes.mpc.groups.secp256k1 import SECP256K1

__all__ = ["ED25519", "SECP256K1", "Element", "Group"]
