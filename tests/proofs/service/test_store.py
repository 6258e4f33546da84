"""The snapshot store: proofs re-issued from it equal the built ones; publishing is all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from custody.por.errors import SnapshotCode, SnapshotError
from custody.por.publish import publish
from custody.por.snapshot import load_liabilities, take_snapshot
from custody.por.store import (
    PAGE_NODES,
    CustomerRow,
    SnapshotRow,
    SnapshotStore,
    StoreCorruptError,
    TreePageRow,
)
from proofs.build import BuiltSnapshot, proof_filename
from proofs.errors import PorInputError, ReasonCode
from proofs.snapshot import canonical_json
from tests.proofs.service.helpers import CUTOFF, SERVICE, SoftwareKeys, custody_keys, rows

TENANTS = ("acme", "globex")


def _built(n: int, snapshot_id: str | None = None) -> BuiltSnapshot:
    return take_snapshot(
        load_liabilities(rows(n), TENANTS),
        custody=custody_keys(),
        sign_challenge=SoftwareKeys(),
        service=SERVICE,
        cutoff=CUTOFF,
        snapshot_id=snapshot_id,
    )


def _sqlite(tmp_path: Path) -> SnapshotStore:
    (tmp_path / "db").mkdir()
    return SnapshotStore(f"sqlite:///{tmp_path / 'db' / 'c.db'}")


def _count(store: SnapshotStore, table: type) -> int:
    with store.transaction() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize("n", [1, 2, 3, PAGE_NODES + 1, 2 * PAGE_NODES + 37])
def test_every_reissued_proof_equals_the_built_one(db_url: str, n: int) -> None:
    store = SnapshotStore(db_url)
    built = _built(n)
    store.publish(built)
    for row, cid in enumerate(built.liabilities.customer_ids):
        found = store.proof(built.snapshot.snapshot_id, cid)
        assert found is not None and found[1] == built.proof(row)
    published, document = store.get_snapshot(built.snapshot.snapshot_id) or (None, b"")
    assert document == canonical_json(built.raw) + b"\n"
    assert published is not None and published.leaf_count == n
    assert published.assets == ("BTC", "ETH", "USDC")


def test_lookups_that_find_nothing(db_url: str) -> None:
    store = SnapshotStore(db_url)
    assert store.get_snapshot(None) is None and store.proof(None, "acme/x") is None
    built = _built(3)
    store.publish(built)
    assert store.proof("por-other", "acme/cust-0000") is None
    found = store.proof(None, "acme/nobody")
    assert found is not None and found[0].snapshot_id == built.snapshot.snapshot_id
    assert found[1] is None


def test_a_published_id_cannot_be_published_again(db_url: str) -> None:
    store = SnapshotStore(db_url)
    store.publish(_built(3, "por-fixed"))
    with pytest.raises(SnapshotError) as info:
        store.publish(_built(4, "por-fixed"))
    assert info.value.code is SnapshotCode.SNAPSHOT_EXISTS
    assert _count(store, CustomerRow) == 3


def test_listing_is_newest_first_and_pages_by_keyset(db_url: str) -> None:
    store = SnapshotStore(db_url)
    ids = [f"por-{i}" for i in range(5)]
    for sid in ids:
        store.publish(_built(2, sid))
    first = store.list_snapshots(2)
    assert first is not None and [s.snapshot_id for s in first] == ["por-4", "por-3"]
    rest = store.list_snapshots(10, first[-1].snapshot_id)
    assert rest is not None and [s.snapshot_id for s in rest] == ["por-2", "por-1", "por-0"]
    assert store.list_snapshots(10, "por-unknown") is None
    newest = store.get_snapshot(None)
    assert newest is not None and newest[0].snapshot_id == "por-4"


def test_a_corrupted_tree_page_is_detected_not_served(db_url: str) -> None:
    store = SnapshotStore(db_url)
    built = _built(5)
    store.publish(built)
    cid = built.liabilities.customer_ids[0]
    sibling = int(built.tree.position[0]) ^ 1  # level 0, page 0 (5 leaves + padding)
    offset = sibling * (32 + 8 * 3) + 32 + 7  # lowest byte of the sibling's BTC sum
    with store.transaction() as s:
        page = s.execute(select(TreePageRow).where(TreePageRow.level == 0)).scalar_one()
        nodes = bytearray(page.nodes)
        nodes[offset] ^= 1
        s.execute(update(TreePageRow).where(TreePageRow.level == 0).values(nodes=bytes(nodes)))
    with pytest.raises(StoreCorruptError):
        store.proof(None, cid)


def test_publish_writes_files_and_rows_together(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    built = _built(4)
    out = publish(built, store, tmp_path / "out")
    assert (out / "snapshot.json").read_bytes() == canonical_json(built.raw) + b"\n"
    names = sorted(p.name for p in (out / "proofs").iterdir())
    assert names == sorted(proof_filename(c) for c in built.liabilities.customer_ids)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_existing_output_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(PorInputError) as info:
        publish(_built(2), store, tmp_path / "out")
    assert info.value.code is ReasonCode.IO
    assert _count(store, SnapshotRow) == 0


def test_a_taken_id_leaves_no_output(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    publish(_built(2, "por-x"), store, tmp_path / "a")
    with pytest.raises(SnapshotError):
        publish(_built(2, "por-x"), store, tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "db"]


def test_failing_to_move_the_files_rolls_the_store_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _sqlite(tmp_path)

    def refuse(self: Path, target: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(OSError):
        publish(_built(3), store, tmp_path / "out")
    assert (
        _count(store, SnapshotRow) == _count(store, CustomerRow) == _count(store, TreePageRow) == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]
