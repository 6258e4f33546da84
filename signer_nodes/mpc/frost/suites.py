"""The registry of FROST ciphersuites by stable id (used in serialised formats)."""

from __future__ import annotations

from signer_nodes.mpc.frost.bip340 import FROST_BIP340
from signer_nodes.mpc.frost.ciphersuite import FROST_ED25519, FROST_SECP256K1, Ciphersuite

SUITES: dict[str, Ciphersuite] = {
    "frost-ed25519": FROST_ED25519,
    "frost-secp256k1": FROST_SECP256K1,
    "frost-bip340": FROST_BIP340,
}
