"""BIP32 CKDpub against the BIP's vectors and against the `bip32` package."""

from __future__ import annotations

import itertools
import re

import pytest
from bip32 import BIP32
from hypothesis import given, settings
from hypothesis import strategies as st

from signer_nodes.mpc.bip32 import ExtendedPublicKey, InvalidPathError, derive, parse_path
from signer_nodes.mpc.groups import SECP256K1
from tests.vectors import VECTORS


def _chains() -> list[tuple[str, str]]:
    text = (VECTORS / "bip32" / "bip-0032-test-vectors.mediawiki").read_text()
    out = []
    for m in re.finditer(r"\* Chain (\S+)\n\*\* ext pub: (\w+)", text):
        out.append((m.group(1).replace("<sub>H</sub>", "H"), m.group(2)))
    return out


def _xpub(xpub: str) -> ExtendedPublicKey:
    node = BIP32.from_xpub(xpub)
    return ExtendedPublicKey(SECP256K1.deserialize_element(node.pubkey), node.chaincode)


def _public_derivation_cases() -> list[tuple[str, str, int]]:
    """(parent xpub, child xpub, index) wherever the BIP lists a non-hardened child."""
    chains = _chains()
    cases = []
    for (parent_path, parent_xpub), (child_path, child_xpub) in itertools.pairwise(chains):
        if not child_path.startswith(parent_path + "/"):
            continue
        last = child_path.rsplit("/", 1)[1]
        if last.endswith("H"):
            continue
        cases.append((parent_xpub, child_xpub, int(last)))
    return cases


CASES = _public_derivation_cases()


def test_enough_public_derivation_cases_found() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize(("parent", "child", "index"), CASES)
def test_bip32_vectors_public_derivation(parent: str, child: str, index: int) -> None:
    derived, _ = derive(_xpub(parent), [index])
    expected = _xpub(child)
    assert derived.public_key == expected.public_key
    assert derived.chain_code == expected.chain_code
    assert derived.parent_fingerprint == _xpub(parent).fingerprint


@settings(max_examples=25, deadline=None)
@given(
    secret=st.integers(1, SECP256K1.order - 1),
    chain=st.binary(min_size=32, max_size=32),
    path=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=4),
)
def test_matches_bip32_package_and_tweak_is_additive(
    secret: int, chain: bytes, path: list[int]
) -> None:
    root = ExtendedPublicKey(SECP256K1.base_mult(secret), chain)
    child, tweak = derive(root, path)
    reference = BIP32(chaincode=chain, pubkey=SECP256K1.serialize_element(root.public_key))
    assert SECP256K1.serialize_element(child.public_key) == reference.get_pubkey_from_path(path)
    assert SECP256K1.base_mult(secret + tweak) == child.public_key


def test_paths() -> None:
    assert parse_path("m") == ()
    assert parse_path("m/0/1/2147483647") == (0, 1, 2147483647)
    for bad in ("m/0'", "m/1h", "0/1", "m/-1", "m/2147483648", "m/01", "m//1", "m/x"):
        with pytest.raises(InvalidPathError):
            parse_path(bad)
