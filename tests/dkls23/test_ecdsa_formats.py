"""Versioned formats of DKLs23 key shares and presignatures: round trips,
a stored v1 fixture that later versions must keep loading, and refusals."""

from __future__ import annotations

import hashlib
import json
import secrets

import pytest

from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.dkls23.presign import Presignature, PresignaturePublic
from signer_nodes.mpc.dkls23.sign import SignatureShare, combine, signature_share
from signer_nodes.mpc.errors import EncodingError
from signer_nodes.mpc.groups import SECP256K1
from tests.dkls23.ecdsa_helpers import cached_keygen, presign, sign_direct, verify_independently
from tests.dkls23.make_ecdsa_fixture import FIXTURE


def _fixture() -> dict[str, object]:
    data: dict[str, object] = json.loads(FIXTURE.read_text())
    return data


def test_key_share_round_trip_signs() -> None:
    shares = cached_keygen(2, 3)
    restored = {i: KeyShare.from_bytes(s.to_bytes()) for i, s in shares.items()}
    for i in shares:
        assert restored[i].to_bytes() == shares[i].to_bytes()
        assert restored[i].share_id == shares[i].share_id
    msg = hashlib.sha256(b"round trip").digest()
    sig = sign_direct(restored, presign(restored, (1, 3)), msg)
    verify_independently(shares[1].group_public_key, msg, sig)


def test_v1_fixture_loads_byte_stable_and_signs() -> None:
    data = _fixture()
    assert data["key_share_version"] == 1 and data["presignature_version"] == 1
    raw_shares = data["key_shares"]
    raw_presigs = data["presignatures"]
    assert isinstance(raw_shares, dict) and isinstance(raw_presigs, dict)
    shares = {int(i): KeyShare.from_bytes(bytes.fromhex(h)) for i, h in raw_shares.items()}
    for i, h in raw_shares.items():
        assert shares[int(i)].to_bytes().hex() == h
    pk = SECP256K1.deserialize_element(bytes.fromhex(str(data["public_key"])))
    assert all(s.group_public_key == pk for s in shares.values())
    presigs = {int(i): Presignature.from_bytes(bytes.fromhex(h)) for i, h in raw_presigs.items()}
    for i, h in raw_presigs.items():
        assert presigs[int(i)].to_bytes().hex() == h
    msg = bytes.fromhex(str(data["message_hash"]))
    parts = {i: signature_share(p, shares[i], msg) for i, p in presigs.items()}
    verify_independently(pk, msg, combine(presigs[1].public, parts, msg))
    # and the stored key shares still run a fresh presign session
    msg2 = hashlib.sha256(secrets.token_bytes(8)).digest()
    verify_independently(pk, msg2, sign_direct(shares, presign(shares, (1, 2)), msg2))


@pytest.mark.parametrize(
    "parse", [KeyShare.from_bytes, Presignature.from_bytes, PresignaturePublic.from_bytes]
)
def test_truncated_or_wrong_version_is_refused(parse: object) -> None:
    data = _fixture()
    assert isinstance(data["key_shares"], dict) and isinstance(data["presignatures"], dict)
    raw = {
        KeyShare.from_bytes: bytes.fromhex(data["key_shares"]["1"]),
        Presignature.from_bytes: bytes.fromhex(data["presignatures"]["1"]),
    }.get(parse)  # type: ignore[call-overload]
    if raw is None:
        raw = Presignature.from_bytes(bytes.fromhex(data["presignatures"]["1"])).public.to_bytes()
    assert callable(parse)
    parse(raw)
    with pytest.raises(EncodingError):
        parse(raw[:-1])
    with pytest.raises(EncodingError):
        parse(raw + b"\0")
    with pytest.raises(EncodingError):
        parse(raw[:3] + bytes([2]) + raw[4:])


def test_key_share_with_mismatched_pair_roles_is_refused() -> None:
    share = cached_keygen(2, 3)[1]
    with pytest.raises(ValueError):
        KeyShare(
            share.key_package,
            share.public,
            share.share_id,
            {2: share.bob_setups[2], 3: share.alice_setups[3]},  # type: ignore[dict-item]
            share.bob_setups,
            share.zero_seeds,
        )


def test_signature_share_round_trip_and_refusal() -> None:
    share = SignatureShare(b"\x01" * 32, 3, 5, 7)
    assert SignatureShare.from_bytes(share.to_bytes()) == share
    with pytest.raises(EncodingError):
        SignatureShare.from_bytes(share.to_bytes()[:-1])
