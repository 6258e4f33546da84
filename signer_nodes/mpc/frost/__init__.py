"""FROST threshold Schnorr signatures (RFC 9591) and a BIP340/Taproot variant."""

from signer_nodes.mpc.frost.aggregate import aggregate, verify_signature_share
from signer_nodes.mpc.frost.bip340 import FROST_BIP340, bip340_verify
from signer_nodes.mpc.frost.ciphersuite import FROST_ED25519, FROST_SECP256K1, Ciphersuite
from signer_nodes.mpc.frost.dealer import trusted_dealer_keygen
from signer_nodes.mpc.frost.keys import KeyPackage, PublicKeyPackage
from signer_nodes.mpc.frost.round1 import SigningCommitments, SigningNonces, commit
from signer_nodes.mpc.frost.round2 import SignatureShare, SigningPackage, sign
from signer_nodes.mpc.frost.suites import SUITES

__all__ = [
    "FROST_BIP340",
    "FROST_ED25519",
    "FROST_SECP256K1",
    "SUITES",
    "Ciphersuite",
    "KeyPackage",
    "PublicKeyPackage",
    "SignatureShare",
    "SigningCommitments",
    "SigningNonces",
    "SigningPackage",
    "aggregate",
    "bip340_verify",
    "commit",
    "sign",
    "trusted_dealer_keygen",
    "verify_signature_share",
]
