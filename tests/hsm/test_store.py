"""Sealed records at rest: no clear shares on disk, atomic inserts, rotation
of a live store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hsm.errors import Code, HsmError
from hsm.sealer import RecordKind, SealedBlob, Sealer
from hsm.store import (
    SealedRecord,
    SqliteSealedStore,
    get_secret,
    put_secret,
    reseal_store,
    retire_old_keys,
    rotate_store,
    seal_record,
)
from signer_nodes.mpc.frost import FROST_ED25519, trusted_dealer_keygen
from tests.hsm.scan import assert_absent


def fill(sealer: Sealer, store: SqliteSealedStore, n: int = 5) -> dict[tuple, bytes]:
    secrets = {}
    for i in range(n):
        for kind in RecordKind:
            value = os.urandom(48)
            put_secret(sealer, store, kind, f"key-{i}", i, value)
            secrets[(kind, f"key-{i}", i)] = value
    return secrets


def test_store_never_holds_a_share_in_the_clear(world, tmp_path: Path) -> None:
    suite = FROST_ED25519
    packages, _ = trusted_dealer_keygen(suite, suite.group.random_scalar(), 3, 2)
    with Sealer.open(world.fresh(), create_key=True) as sealer:
        store = SqliteSealedStore(tmp_path / "node" / "node.db", 1)
        put_secret(sealer, store, RecordKind.SHARE, "k", 0, packages[1].to_bytes())
        sealer.rotate()
        reseal_store(sealer, store)
        store.close()
    secrets = [packages[1].to_bytes(), suite.group.serialize_scalar(packages[1].signing_share)]
    assert assert_absent([tmp_path, world.home.root], secrets) >= 2


def test_scanner_finds_a_planted_share(tmp_path: Path) -> None:
    share = os.urandom(32)
    (tmp_path / "leak.db").write_bytes(b"prefix" + share.hex().encode() + b"suffix")
    with pytest.raises(AssertionError, match="in the clear"):
        assert_absent([tmp_path], [share])


def test_put_get_and_atomic_insert(sealer: Sealer, tmp_path: Path) -> None:
    store = SqliteSealedStore(tmp_path / "s.db", 3)
    put_secret(sealer, store, RecordKind.SHARE, "k", 1, b"s" * 20)
    assert get_secret(sealer, store, RecordKind.SHARE, "k", 1) == b"s" * 20
    with pytest.raises(HsmError) as exc:
        get_secret(sealer, store, RecordKind.SHARE, "k", 2)
    assert exc.value.code == Code.STORE_RECORD_NOT_FOUND
    fresh = seal_record(sealer, 3, RecordKind.SHARE, "k2", 1, b"x")
    dup = seal_record(sealer, 3, RecordKind.SHARE, "k", 1, b"y")
    with pytest.raises(HsmError) as exc:
        store.insert_all([fresh, dup])
    assert exc.value.code == Code.STORE_RECORD_EXISTS
    assert [r.key_id for r in store.records()] == ["k"]  # neither inserted
    assert "s" * 20 not in repr(store.records())


def test_record_of_another_node_does_not_open(sealer: Sealer, tmp_path: Path) -> None:
    a = SqliteSealedStore(tmp_path / "a.db", 1)
    b = SqliteSealedStore(tmp_path / "b.db", 2)
    record = put_secret(sealer, a, RecordKind.SHARE, "k", 0, b"secret")
    b.insert_all([record])  # copied between node databases
    with pytest.raises(HsmError) as exc:
        get_secret(sealer, b, RecordKind.SHARE, "k", 0)
    assert exc.value.code == Code.HSM_CONTEXT_MISMATCH


def test_rotate_store_reseals_everything(sealer: Sealer, tmp_path: Path) -> None:
    store = SqliteSealedStore(tmp_path / "s.db", 4)
    secrets = fill(sealer, store)
    old_blobs = {(r.kind, r.key_id, r.epoch): r.blob for r in store.records()}
    report = rotate_store(sealer, store)
    assert (report.active_version, report.resealed, report.unchanged) == (2, len(secrets), 0)
    for r in store.records():
        assert SealedBlob.parse(r.blob).key_label == "seal-key-v2"
        assert (
            get_secret(sealer, store, r.kind, r.key_id, r.epoch)
            == secrets[(r.kind, r.key_id, r.epoch)]
        )
    # Old blobs (e.g. in a not-yet-migrated replica) still open until v1 is destroyed.
    key = next(iter(old_blobs))
    old = SealedRecord(key[0], key[1], key[2], old_blobs[key])
    assert sealer.unseal(old.blob, old.context(4)) == secrets[key]
    assert reseal_store(sealer, store).unchanged == len(secrets)  # idempotent
    assert retire_old_keys(sealer, [store]) == [1]
    assert sealer.key_versions() == [2]
    with pytest.raises(HsmError) as exc:
        sealer.unseal(old.blob, old.context(4))
    assert exc.value.code == Code.HSM_KEY_NOT_FOUND


def test_retire_keeps_keys_still_in_use(sealer: Sealer, tmp_path: Path) -> None:
    store = SqliteSealedStore(tmp_path / "s.db", 4)
    fill(sealer, store, 1)
    sealer.rotate()  # rotated, but nothing resealed yet
    assert retire_old_keys(sealer, [store]) == []
    assert sealer.key_versions() == [1, 2]


class RacingStore(SqliteSealedStore):
    """Simulates the live node: during rotation, one presignature is consumed
    and one share is rewritten (refresh) between read and compare-and-swap."""

    def __init__(self, path: Path, node_id: int, sealer: Sealer) -> None:
        super().__init__(path, node_id)
        self.sealer = sealer
        self.raced = False

    def replace(self, old: SealedRecord, new: SealedRecord) -> None:
        if not self.raced:
            self.raced = True
            for r in self.records():
                if r.kind == RecordKind.PRESIGNATURE:
                    self.delete(r)
                elif r.kind == RecordKind.SHARE and r.key_id == old.key_id:
                    fresh = seal_record(self.sealer, self.node_id, r.kind, r.key_id, r.epoch, b"R")
                    super().replace(r, fresh)
        super().replace(old, new)


def test_rotation_while_the_node_serves(sealer: Sealer, tmp_path: Path) -> None:
    store = RacingStore(tmp_path / "s.db", 4, sealer)
    fill(sealer, store, 1)
    report = rotate_store(sealer, store)
    assert report.vanished == 1  # the consumed presignature
    assert report.resealed + report.unchanged == len(store.records())
    assert get_secret(sealer, store, RecordKind.SHARE, "key-0", 0) == b"R"
    assert {sealer.key_version_of(r.blob) for r in store.records()} == {2}
