"""The snapshot-signing key: created once, private, then only loaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from custody.por.errors import SnapshotCode, SnapshotError
from custody.por.keys import ensure_snapshot_key


def test_created_once_then_loaded(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "por-snapshot.key"
    first = ensure_snapshot_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_snapshot_key(path).public_key == first.public_key
    assert [p.name for p in path.parent.iterdir()] == ["por-snapshot.key"]
    assert path.read_text().strip() not in repr(first)
    message = b"m"
    from nacl.signing import VerifyKey

    VerifyKey(first.public_key).verify(message, first.sign(message))


def test_other_keys_differ(tmp_path: Path) -> None:
    assert (
        ensure_snapshot_key(tmp_path / "a").public_key
        != ensure_snapshot_key(tmp_path / "b").public_key
    )


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        ("00" * 32, 0o644, "accessible by others"),
        ("zz" * 32, 0o600, "not hex"),
        ("00" * 31, 0o600, "32-byte seed"),
    ],
)
def test_unusable_key_files_are_refused(
    tmp_path: Path, content: str, mode: int, words: str
) -> None:
    path = tmp_path / "k"
    path.write_text(content)
    os.chmod(path, mode)
    with pytest.raises(SnapshotError) as info:
        ensure_snapshot_key(path)
    assert info.value.code is SnapshotCode.SERVICE_KEY_INVALID and words in info.value.detail
    assert content not in str(info.value)
