"""Applying a BIP32 path to a threshold key's packages (signers and coordinator alike)."""

from __future__ import annotations

from signer_nodes.mpc.bip32 import ExtendedPublicKey, InvalidPathError, derive, parse_path
from signer_nodes.mpc.frost.keys import (
    KeyPackage,
    PublicKeyPackage,
    derive_key_package,
    derive_public_key_package,
)
from signer_nodes.mpc.groups import SECP256K1


def derivation_tweak(public: PublicKeyPackage, path: str) -> tuple[int, bytes]:
    """(additive tweak, child chain code) for ``path``; the root for "" or "m"."""
    if path in ("", "m"):
        return 0, public.chain_code
    if public.suite.group is not SECP256K1:
        raise InvalidPathError("BIP32 derivation is defined for secp256k1 keys only")
    parse_path(path)
    child, tweak = derive(ExtendedPublicKey(public.group_public_key, public.chain_code), path)
    return tweak, child.chain_code


def derived_packages(
    key: KeyPackage | None, public: PublicKeyPackage, path: str
) -> tuple[KeyPackage | None, PublicKeyPackage]:
    tweak, chain_code = derivation_tweak(public, path)
    if tweak == 0 and path in ("", "m"):
        return key, public
    return (
        None if key is None else derive_key_package(key, tweak, chain_code),
        derive_public_key_package(public, tweak, chain_code),
    )
