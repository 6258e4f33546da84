"""Sealing through the token: round trips, tampering, context binding,
non-extractability, rotation."""

from __future__ import annotations

import os
import struct
import time

import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e

from hsm.errors import Code, HsmError
from hsm.sealer import IV_LEN, TAG_LEN, RecordKind, SealContext, SealedBlob, Sealer, _header

CTX = SealContext(node_id=2, key_id="key-abc", epoch=7, kind=RecordKind.SHARE)


def code_of(exc: pytest.ExceptionInfo[HsmError]) -> Code:
    return exc.value.code


@pytest.mark.parametrize("size", [0, 1, 32, 4096])
def test_round_trip(sealer: Sealer, size: int) -> None:
    secret = os.urandom(size)
    blob = sealer.seal(secret, CTX)
    assert sealer.unseal(blob, CTX) == secret
    if size >= 16:
        assert secret not in blob
    parsed = SealedBlob.parse(blob)
    assert parsed.key_label == "seal-key-v1" and parsed.context == CTX
    assert len(parsed.iv) == IV_LEN and len(parsed.ciphertext) == size + TAG_LEN


def test_ivs_are_fresh(sealer: Sealer) -> None:
    blobs = {SealedBlob.parse(sealer.seal(b"same", CTX)).iv for _ in range(50)}
    assert len(blobs) == 50


def test_every_single_byte_change_is_refused(sealer: Sealer) -> None:
    secret = os.urandom(40)
    blob = sealer.seal(secret, CTX)
    parsed = SealedBlob.parse(blob)
    body_start = len(parsed.header)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(HsmError) as exc:
            sealer.unseal(bytes(bad), CTX)
        if i >= body_start or body_start - len(parsed.context.encode()) - 2 - IV_LEN <= i < (
            body_start - len(parsed.context.encode()) - 2
        ):  # IV, ciphertext, tag: only the GCM check can notice
            assert code_of(exc) == Code.HSM_SEALED_BLOB_INVALID, i
        else:
            assert code_of(exc) in {
                Code.HSM_SEALED_BLOB_INVALID,
                Code.HSM_CONTEXT_MISMATCH,
                Code.HSM_KEY_NOT_FOUND,
            }, i


def test_truncated_and_extended_blobs_refused(sealer: Sealer) -> None:
    blob = sealer.seal(b"x" * 32, CTX)
    for bad in (b"", blob[:5], blob[:30], blob[:-1], blob + b"\x00"):
        with pytest.raises(HsmError) as exc:
            sealer.unseal(bad, CTX)
        assert code_of(exc) == Code.HSM_SEALED_BLOB_INVALID


def test_rewritten_context_fails_gcm(sealer: Sealer) -> None:
    """An attacker who rewrites the cleartext context to match what the reader
    expects (moving a share to another node) still fails: the context is AAD."""
    blob = sealer.seal(b"share of node 2", CTX)
    parsed = SealedBlob.parse(blob)
    other = SealContext(3, CTX.key_id, CTX.epoch, CTX.kind)
    moved = _header(parsed.key_label, parsed.iv, other) + parsed.ciphertext
    with pytest.raises(HsmError) as exc:
        sealer.unseal(moved, other)
    assert code_of(exc) == Code.HSM_SEALED_BLOB_INVALID


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("node_id", SealContext(1, "key-abc", 7, RecordKind.SHARE)),
        ("key_id", SealContext(2, "key-abd", 7, RecordKind.SHARE)),
        ("epoch", SealContext(2, "key-abc", 8, RecordKind.SHARE)),
        ("kind", SealContext(2, "key-abc", 7, RecordKind.NONCE)),
        ("format_version", SealContext(2, "key-abc", 7, RecordKind.SHARE, 2)),
    ],
)
def test_wrong_context_refused(sealer: Sealer, field: str, expected: SealContext) -> None:
    blob = sealer.seal(b"s", CTX)
    with pytest.raises(HsmError) as exc:
        sealer.unseal(blob, expected)
    assert code_of(exc) == Code.HSM_CONTEXT_MISMATCH
    assert field in exc.value.message


def test_blob_from_another_token_refused(world, sealer: Sealer) -> None:
    with Sealer.open(world.fresh(), create_key=True) as other:
        blob = other.seal(b"elsewhere", CTX)  # same label seal-key-v1, different key
        with pytest.raises(HsmError) as exc:
            sealer.unseal(blob, CTX)
        assert code_of(exc) == Code.HSM_SEALED_BLOB_INVALID


def test_unknown_key_version_refused(sealer: Sealer) -> None:
    blob = sealer.seal(b"s", CTX)
    parsed = SealedBlob.parse(blob)
    relabelled = _header("seal-key-v9", parsed.iv, CTX) + parsed.ciphertext
    with pytest.raises(HsmError) as exc:
        sealer.unseal(relabelled, CTX)
    assert code_of(exc) == Code.HSM_KEY_NOT_FOUND


def test_token_without_key(world) -> None:
    with Sealer.open(world.fresh()) as s:
        assert s.key_versions() == []
        with pytest.raises(HsmError) as exc:
            s.seal(b"s", CTX)
        assert code_of(exc) == Code.HSM_KEY_NOT_FOUND


def test_sealing_key_is_not_extractable(sealer: Sealer) -> None:
    session = sealer._session
    key = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label="seal-key-v1")
    attrs = key.get_attributes(
        [
            Attribute.SENSITIVE,
            Attribute.EXTRACTABLE,
            Attribute.ALWAYS_SENSITIVE,
            Attribute.NEVER_EXTRACTABLE,
            Attribute.TOKEN,
            Attribute.PRIVATE,
            Attribute.VALUE_LEN,
        ]
    )
    assert attrs == {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.ALWAYS_SENSITIVE: True,
        Attribute.NEVER_EXTRACTABLE: True,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.VALUE_LEN: 32,
    }
    with pytest.raises(p11e.AttributeSensitive):
        key[Attribute.VALUE]
    wrapper = session.generate_key(KeyType.AES, 256, store=False)
    with pytest.raises((p11e.KeyUnextractable, p11e.KeyNotWrappable)):
        wrapper.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP)
    with pytest.raises(p11e.PKCS11Error):
        key[Attribute.EXTRACTABLE] = True
    assert key[Attribute.EXTRACTABLE] is False


def test_rotation_and_destroy(sealer: Sealer) -> None:
    old = sealer.seal(b"old", CTX)
    assert sealer.rotate() == 2 and sealer.key_versions() == [1, 2]
    new = sealer.seal(b"new", CTX)
    assert SealedBlob.parse(new).key_label == "seal-key-v2"
    assert sealer.unseal(old, CTX) == b"old"  # old key kept
    resealed = sealer.reseal(old, CTX)
    assert SealedBlob.parse(resealed).key_label == "seal-key-v2"
    assert sealer.reseal(resealed, CTX) is resealed
    with pytest.raises(HsmError) as exc:
        sealer.destroy_key(2)
    assert code_of(exc) == Code.HSM_KEY_IN_USE
    sealer.destroy_key(1)
    with pytest.raises(HsmError) as exc:
        sealer.unseal(old, CTX)
    assert code_of(exc) == Code.HSM_KEY_NOT_FOUND
    assert sealer.unseal(resealed, CTX) == b"old"


def test_keys_survive_reopen(world) -> None:
    config = world.fresh()
    with Sealer.open(config, create_key=True) as s:
        s.rotate()
        blob = s.seal(b"persist", CTX)
    with Sealer.open(config) as s:
        assert s.key_versions() == [1, 2]
        assert s.unseal(blob, CTX) == b"persist"


def test_context_encoding_is_injective() -> None:
    a = SealContext(1, "ab", 1, RecordKind.SHARE).encode()
    b = SealContext(1, "a", 1, RecordKind.SHARE).encode()
    assert a != b and SealContext.decode(a).key_id == "ab"
    with pytest.raises(HsmError):
        SealContext.decode(a + b"\x00")
    with pytest.raises(ValueError):
        SealContext(0, "k", 0, RecordKind.SHARE)
    assert struct.calcsize(">QH") == 10


def test_latency(sealer: Sealer, capsys: pytest.CaptureFixture[str]) -> None:
    """Measured, printed for the report; the bound only catches pathologies."""
    share = os.urandom(110)  # a FROST Ed25519 key package is ~110 bytes
    n = 300
    t0 = time.perf_counter()
    blobs = [sealer.seal(share, CTX) for _ in range(n)]
    t1 = time.perf_counter()
    for b in blobs:
        sealer.unseal(b, CTX)
    t2 = time.perf_counter()
    seal_us, unseal_us = (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6
    with capsys.disabled():
        print(f"\n[hsm] SoftHSM2 seal {seal_us:.0f} us/record, unseal {unseal_us:.0f} us/record")
    assert seal_us < 20_000 and unseal_us < 20_000
