"""The signed-bundle codec (custody/governance/bundle.py): canonical, strict, total."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custody.governance.bundle import BundleError, decode_bundle, encode_bundle
from policy._codec import lp
from policy.governance import OfficerSignature, SignedPolicyVersion
from tests.policy.service.fixtures import GENESIS, GENESIS_BUNDLE, signed


def test_round_trip_and_canonical_order() -> None:
    s = signed(GENESIS, "off-c", "off-a")
    data = encode_bundle(s)
    back = decode_bundle(data)
    assert back.version == GENESIS
    assert [x.officer for x in back.signatures] == ["off-a", "off-c"]
    assert encode_bundle(back) == data
    assert decode_bundle(GENESIS_BUNDLE).version.version_id == GENESIS.version_id


def test_duplicate_officers_cannot_be_encoded() -> None:
    s = signed(GENESIS, "off-a")
    with pytest.raises(ValueError):
        encode_bundle(SignedPolicyVersion(GENESIS, s.signatures * 2))


def _swap_signatures(data: bytes) -> bytes:
    """Re-frame the two signatures of a bundle in the wrong order."""
    s = decode_bundle(data)
    head = data[: len(data) - sum(4 + len(x.officer) + 64 for x in s.signatures)]
    tail = b"".join(lp(x.officer.encode()) + x.signature for x in reversed(s.signatures))
    return head + tail


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[:-1],  # truncated
        lambda d: d + b"\x00",  # trailing bytes
        lambda d: b"\x00" + d[1:],  # tag
        lambda d: d[:27] + b"\x02" + d[28:],  # format version (after the 27-byte tag)
        _swap_signatures,  # unsorted
        lambda d: b"",
    ],
)
def test_malformed_bundles_are_refused(mutate: object) -> None:
    data = encode_bundle(signed(GENESIS, "off-a", "off-b"))
    with pytest.raises(BundleError) as err:
        decode_bundle(mutate(data))  # type: ignore[operator]
    assert err.value.code == "POLICY_BUNDLE_MALFORMED"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 600), st.binary(max_size=8))
def test_any_bytes_decode_canonically_or_raise_the_bundle_error(
    junk: bytes, cut: int, insert: bytes
) -> None:
    data = GENESIS_BUNDLE[:cut] + insert + GENESIS_BUNDLE[cut:] if cut % 2 else junk
    try:
        s = decode_bundle(data)
    except BundleError:
        return
    assert encode_bundle(s) == data
    assert all(isinstance(x, OfficerSignature) for x in s.signatures)
