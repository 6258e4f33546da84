"""The group layer: explicit identity, RFC 9591 (de)serialisation rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signer_nodes.mpc.errors import EncodingError
from signer_nodes.mpc.groups import ED25519, SECP256K1, Group
from signer_nodes.mpc.groups.secp256k1 import FIELD_PRIME

GROUPS = [ED25519, SECP256K1]


@pytest.mark.parametrize("g", GROUPS, ids=lambda g: g.name)
def test_identity_is_explicit_and_has_no_encoding(g: Group) -> None:
    p = g.base_mult(7)
    assert (p - p).is_identity and (p * 0).is_identity and (p * g.order).is_identity
    assert g.identity + p == p and p + g.identity == p and -g.identity == g.identity
    assert g.identity * 5 == g.identity and g.base_mult(0) == g.identity
    with pytest.raises(EncodingError):
        g.serialize_element(g.identity)
    assert g.element_from_bytes(g.identity.to_bytes()).is_identity
    with pytest.raises(EncodingError):
        g.deserialize_element(g.identity.to_bytes())


@pytest.mark.parametrize("g", GROUPS, ids=lambda g: g.name)
@given(a=st.integers(0, 2**256), b=st.integers(0, 2**256))
def test_arithmetic_is_consistent(g: Group, a: int, b: int) -> None:
    assert g.base_mult(a) + g.base_mult(b) == g.base_mult(a + b)
    assert g.base_mult(a) * b == g.base_mult(a * b)
    assert g.base_mult(a) - g.base_mult(b) == g.base_mult(a - b)


@pytest.mark.parametrize("g", GROUPS, ids=lambda g: g.name)
def test_scalars_must_be_reduced_and_sized(g: Group) -> None:
    with pytest.raises(EncodingError):
        g.deserialize_scalar(g.serialize_scalar(0)[:-1])
    big = g.order.to_bytes(32, "little" if g is ED25519 else "big")
    with pytest.raises(EncodingError):
        g.deserialize_scalar(big)
    assert g.deserialize_scalar(g.serialize_scalar(g.order - 1)) == g.order - 1


def test_ed25519_rejects_small_order_noncanonical_and_torsion() -> None:
    eight_torsion = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ]
    for h in eight_torsion:
        with pytest.raises(EncodingError):
            ED25519.deserialize_element(bytes.fromhex(h))
    # y = p (non-canonical encoding of y = 0)
    with pytest.raises(EncodingError):
        ED25519.deserialize_element(
            bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
        )
    # a point of mixed order: generator + a 2-torsion point is not in the prime-order subgroup
    g_enc = ED25519.generator.to_bytes()
    from nacl.bindings import crypto_core_ed25519_add

    mixed = crypto_core_ed25519_add(
        g_enc, bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
    )
    with pytest.raises(EncodingError):
        ED25519.deserialize_element(mixed)
    with pytest.raises(EncodingError):
        ED25519.deserialize_element(b"\x01" * 31)


def test_secp256k1_rejects_bad_encodings() -> None:
    g_enc = SECP256K1.generator.to_bytes()
    for bad in (
        b"\x04" + g_enc[1:],  # not compressed
        g_enc[:-1],  # short
        b"\x02" + FIELD_PRIME.to_bytes(32, "big"),  # x = p
        b"\x02" + bytes(31) + b"\x05",  # x = 5 is not on the curve
    ):
        with pytest.raises(EncodingError):
            SECP256K1.deserialize_element(bad)
    assert SECP256K1.deserialize_element(g_enc) == SECP256K1.generator


def test_mixing_groups_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        ED25519.generator + SECP256K1.generator  # type: ignore[operator]
