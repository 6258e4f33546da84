"""Backup, verify and restore on real SoftHSM2, ending in a verified signature."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hsm.backup import (
    BackupPublicKey,
    ManifestEntry,
    _build_backup,
    create_backup,
    restore_backup,
    verify_backup,
)
from hsm.errors import Code, HsmError
from hsm.sealer import RecordKind, Sealer
from hsm.store import SqliteSealedStore, get_secret, put_secret
from signer_nodes.mpc.frost import (
    FROST_ED25519,
    KeyPackage,
    SigningPackage,
    aggregate,
    commit,
    sign,
    trusted_dealer_keygen,
)
from tests.hsm.scan import assert_absent

CLUSTER = "cluster-test"
KEY_ID = "ed25519-key-1"


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }


def test_backup_restore_drill_ends_in_verified_signature(world, tmp_path: Path) -> None:
    suite = FROST_ED25519
    packages, public = trusted_dealer_keygen(suite, suite.group.random_scalar(), 3, 2)
    sealers = {i: Sealer.open(world.nodes[i], create_key=True) for i in (1, 2, 3)}
    stores = {i: SqliteSealedStore(tmp_path / f"node-{i}" / "node.db", i) for i in (1, 2, 3)}
    secrets_in_clear: list[bytes] = []
    for i in (1, 2, 3):
        share = packages[i].to_bytes()
        scalar = suite.group.serialize_scalar(packages[i].signing_share)
        secrets_in_clear += [share, scalar]
        put_secret(sealers[i], stores[i], RecordKind.SHARE, KEY_ID, 0, share)
        put_secret(sealers[i], stores[i], RecordKind.IDENTITY, "node-identity", 0, os.urandom(32))
        put_secret(sealers[i], stores[i], RecordKind.PRESIGNATURE, "presig-1", 0, os.urandom(96))
        put_secret(sealers[i], stores[i], RecordKind.NONCE, "nonce-1", 0, os.urandom(64))

    # The nodes back up to the public key alone (as a PEM file: the token can stay offline).
    holder = world.holders["backup"]
    pem = tmp_path / "backup-key.pem"
    pem.write_bytes(holder.public_key.to_pem())
    public_key = BackupPublicKey.from_pem(pem.read_bytes())
    backups = {i: tmp_path / "backups" / f"node-{i}.backup.json" for i in (1, 2, 3)}
    for i in (1, 2, 3):
        manifest = create_backup(
            backups[i],
            sealer=sealers[i],
            store=stores[i],
            cluster_id=CLUSTER,
            public_key=public_key,
            oaep_hash=world.backup.oaep_hash,
        )
        assert manifest.node_id == i and manifest.counts == {"share": 1, "identity": 1}
        assert verify_backup(backups[i], holder, cluster_id=CLUSTER, node_id=i) == manifest

    # Node 2 is lost: its database and its token are gone.
    stores[2].close()
    shutil.rmtree(tmp_path / "node-2")
    sealers.pop(2).close()

    target = Sealer.open(world.fresh())
    assert target.key_versions() == []
    restored_store = SqliteSealedStore(tmp_path / "node-2-restored" / "node.db", 2)
    manifest = restore_backup(
        backups[2], holder, target=target, store=restored_store, cluster_id=CLUSTER
    )
    assert manifest.entries == (
        ManifestEntry(RecordKind.IDENTITY, "node-identity", 0, 1),
        ManifestEntry(RecordKind.SHARE, KEY_ID, 0, 1),
    )
    assert target.key_versions() == [1]
    kinds = {r.kind for r in restored_store.records()}
    assert kinds == {RecordKind.SHARE, RecordKind.IDENTITY}  # no presignature, no nonce

    # The restored node 2 and node 3 sign 2-of-3; an independent library verifies.
    key2 = KeyPackage.from_bytes(get_secret(target, restored_store, RecordKind.SHARE, KEY_ID, 0))
    key3 = KeyPackage.from_bytes(get_secret(sealers[3], stores[3], RecordKind.SHARE, KEY_ID, 0))
    assert key2.to_bytes() == packages[2].to_bytes()
    message = b"restore drill: transfer 1 BTC to cold storage"
    n2, c2 = commit(suite, 2, key2.signing_share)
    n3, c3 = commit(suite, 3, key3.signing_share)
    package = SigningPackage((c2, c3), message)
    signature = aggregate(
        suite, package, [sign(suite, package, n2, key2), sign(suite, package, n3, key3)], public
    )
    verifier = Ed25519PublicKey.from_public_bytes(
        suite.group.serialize_element(public.group_public_key)
    )
    verifier.verify(signature, message)
    with pytest.raises(InvalidSignature):
        verifier.verify(signature, message + b"!")

    # Nothing at rest holds a share in the clear: node databases, backups, tokens.
    restored_store.close()
    for s in stores.values():
        s.close()
    assert_absent([tmp_path, world.home.root], secrets_in_clear)
    for s in sealers.values():
        s.close()
    target.close()


# -- error cases ---------------------------------------------------------------


@pytest.fixture
def backed_up(world, tmp_path: Path):
    """A node (fresh token) with a share, an identity and a presignature, and its backup."""
    sealer = Sealer.open(world.fresh(), create_key=True)
    store = SqliteSealedStore(tmp_path / "node-5" / "node.db", 5)
    put_secret(sealer, store, RecordKind.SHARE, KEY_ID, 3, os.urandom(110))
    put_secret(sealer, store, RecordKind.IDENTITY, "node-identity", 0, os.urandom(32))
    put_secret(sealer, store, RecordKind.PRESIGNATURE, "p", 0, os.urandom(64))
    path = tmp_path / "backups" / "node-5.json"
    create_backup(
        path,
        sealer=sealer,
        store=store,
        cluster_id=CLUSTER,
        public_key=world.holders["backup"].public_key,
        oaep_hash=world.backup.oaep_hash,
    )
    yield path, sealer, store
    store.close()
    sealer.close()


def restore_fails(world, path: Path, node_id: int = 5, cluster: str = CLUSTER, holder=None):
    target = Sealer.open(world.restore_probe)
    store = SqliteSealedStore(path.parent / f"restore-{os.urandom(4).hex()}.db", node_id)
    try:
        with pytest.raises(HsmError) as exc:
            restore_backup(
                path,
                holder or world.holders["backup"],
                target=target,
                store=store,
                cluster_id=cluster,
            )
        assert store.records() == []  # nothing half-written
        assert target.key_versions() == []
        return exc.value.code
    finally:
        store.close()
        target.close()


def edit(path: Path, change) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    out = path.with_name(f"edited-{os.urandom(4).hex()}.json")
    out.write_text(json.dumps(doc))
    return out


def flip_b64(value: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[index] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def rehash(doc) -> None:
    canonical = json.dumps(doc["manifest"], sort_keys=True, separators=(",", ":")).encode()
    doc["manifest_sha256"] = hashlib.sha256(canonical).hexdigest()


def corruptions():
    def ct(doc):
        doc["records"][0]["ct"] = flip_b64(doc["records"][0]["ct"], 5)

    def tag(doc):
        doc["records"][1]["ct"] = flip_b64(doc["records"][1]["ct"], -1)

    def iv(doc):
        doc["records"][0]["iv"] = flip_b64(doc["records"][0]["iv"])

    def swap(doc):
        doc["records"].reverse()

    def wrapped(doc):
        doc["wrapped_key"] = flip_b64(doc["wrapped_key"], 100)

    def seal(doc):
        doc["manifest_seal"]["tag"] = flip_b64(doc["manifest_seal"]["tag"])

    def epoch_no_rehash(doc):
        doc["manifest"]["records"][1]["epoch"] = 4

    def epoch_rehashed(doc):  # consistent manifest, but the records' AAD says otherwise
        doc["manifest"]["records"][1]["epoch"] = 4
        rehash(doc)

    def drop_record(doc):
        doc["records"].pop()

    def counts(doc):
        doc["manifest"]["counts"]["share"] = 2
        rehash(doc)

    def version(doc):
        doc["version"] = 2

    def bad_b64(doc):
        doc["records"][0]["ct"] = "@@@"

    return [
        *(ct, tag, iv, swap, wrapped, seal, epoch_no_rehash, epoch_rehashed, drop_record),
        *(counts, version, bad_b64),
    ]


@pytest.mark.parametrize("change", corruptions(), ids=lambda f: f.__name__)
def test_corrupted_backup_refused(world, backed_up, change) -> None:
    path = edit(backed_up[0], change)
    with pytest.raises(HsmError) as exc:
        verify_backup(path, world.holders["backup"])
    assert exc.value.code == Code.BACKUP_CORRUPTED
    assert restore_fails(world, path) == Code.BACKUP_CORRUPTED


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"format": "zip"}', None])
def test_unreadable_backup_refused(world, tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "junk.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(HsmError) as exc:
        verify_backup(path, world.holders["backup"])
    assert exc.value.code == Code.BACKUP_CORRUPTED


def test_truncated_backup_refused(world, backed_up) -> None:
    path = backed_up[0].with_name("truncated.json")
    data = backed_up[0].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert restore_fails(world, path) == Code.BACKUP_CORRUPTED


def test_foreign_backup_key(world, backed_up) -> None:
    with pytest.raises(HsmError) as exc:
        verify_backup(backed_up[0], world.holders["foreign"])
    assert exc.value.code == Code.BACKUP_FOREIGN
    assert restore_fails(world, backed_up[0], holder=world.holders["foreign"]) == (
        Code.BACKUP_FOREIGN
    )


def test_foreign_cluster(world, backed_up) -> None:
    with pytest.raises(HsmError) as exc:
        verify_backup(backed_up[0], world.holders["backup"], cluster_id="other-cluster")
    assert exc.value.code == Code.BACKUP_FOREIGN
    assert restore_fails(world, backed_up[0], cluster="other-cluster") == Code.BACKUP_FOREIGN


def test_wrong_node(world, backed_up) -> None:
    with pytest.raises(HsmError) as exc:
        verify_backup(backed_up[0], world.holders["backup"], node_id=4)
    assert exc.value.code == Code.BACKUP_WRONG_NODE
    assert restore_fails(world, backed_up[0], node_id=4) == Code.BACKUP_WRONG_NODE


@pytest.mark.parametrize("kind", [RecordKind.PRESIGNATURE, RecordKind.NONCE])
def test_presignatures_and_nonces_never_backed_up(world, backed_up, tmp_path, kind) -> None:
    _, sealer, store = backed_up
    with pytest.raises(HsmError) as exc:
        create_backup(
            tmp_path / "refused.json",
            sealer=sealer,
            store=store,
            cluster_id=CLUSTER,
            public_key=world.holders["backup"].public_key,
            kinds={RecordKind.SHARE, kind},
        )
    assert exc.value.code == Code.BACKUP_KIND_REFUSED
    assert not (tmp_path / "refused.json").exists()
    # A well-formed, correctly encrypted file that carries one is refused too.
    crafted = tmp_path / "crafted.json"
    _build_backup(
        crafted,
        cluster_id=CLUSTER,
        node_id=5,
        public_key=world.holders["backup"].public_key,
        oaep_hash=world.backup.oaep_hash,
        items=[(ManifestEntry(kind, "p", 0, 1), os.urandom(64))],
        created_at="2025-01-01T00:00:00+00:00",
    )
    with pytest.raises(HsmError) as exc:
        verify_backup(crafted, world.holders["backup"])
    assert exc.value.code == Code.BACKUP_KIND_REFUSED
    assert restore_fails(world, crafted) == Code.BACKUP_KIND_REFUSED


def test_verify_writes_nothing(world, backed_up, tmp_path: Path) -> None:
    before = tree_state(tmp_path), tree_state(world.home.root)
    manifest = verify_backup(backed_up[0], world.holders["backup"], cluster_id=CLUSTER, node_id=5)
    assert manifest.counts == {"share": 1, "identity": 1}
    assert (tree_state(tmp_path), tree_state(world.home.root)) == before


def test_restore_refuses_non_empty_target(world, backed_up) -> None:
    path, sealer, store = backed_up
    before = store.records()
    with pytest.raises(HsmError) as exc:
        restore_backup(
            path, world.holders["backup"], target=sealer, store=store, cluster_id=CLUSTER
        )
    assert exc.value.code == Code.RESTORE_TARGET_NOT_EMPTY
    assert store.records() == before


def test_existing_backup_not_overwritten(world, backed_up) -> None:
    path, sealer, store = backed_up
    before = path.read_bytes()
    with pytest.raises(HsmError) as exc:
        create_backup(
            path,
            sealer=sealer,
            store=store,
            cluster_id=CLUSTER,
            public_key=world.holders["backup"].public_key,
            oaep_hash=world.backup.oaep_hash,
        )
    assert exc.value.code == Code.BACKUP_EXISTS
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files


def test_backup_of_tampered_store_fails_before_writing(world, backed_up, tmp_path) -> None:
    _, sealer, store = backed_up
    record = store.get(RecordKind.SHARE, KEY_ID, 3)
    bad = bytearray(record.blob)
    bad[-3] ^= 1
    store.replace(record, type(record)(record.kind, record.key_id, record.epoch, bytes(bad)))
    out = tmp_path / "never.json"
    with pytest.raises(HsmError) as exc:
        create_backup(
            out,
            sealer=sealer,
            store=store,
            cluster_id=CLUSTER,
            public_key=world.holders["backup"].public_key,
        )
    assert exc.value.code == Code.HSM_SEALED_BLOB_INVALID
    assert not out.exists()


def test_empty_backup_manifest_is_authenticated(world, tmp_path) -> None:
    with Sealer.open(world.fresh(), create_key=True) as sealer:
        store = SqliteSealedStore(tmp_path / "empty.db", 6)
        path = tmp_path / "empty.json"
        create_backup(
            path,
            sealer=sealer,
            store=store,
            cluster_id=CLUSTER,
            public_key=world.holders["backup"].public_key,
            oaep_hash=world.backup.oaep_hash,
        )
        assert verify_backup(path, world.holders["backup"]).entries == ()

        def retarget(doc):
            doc["manifest"]["node_id"] = 7
            rehash(doc)

        with pytest.raises(HsmError) as exc:
            verify_backup(edit(path, retarget), world.holders["backup"], node_id=7)
        assert exc.value.code == Code.BACKUP_CORRUPTED
        store.close()
