"""Search files and databases for secrets in the clear (raw, reversed, hex and base64)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import MetaData, create_engine, select


def forms(secret: bytes) -> list[bytes]:
    """The encodings a secret leaks in: raw, byte-reversed (a scalar written in the
    other endianness), hex (both cases) and base64 (both alphabets)."""
    return [
        secret,
        secret[::-1],
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
    ]


def _needles(secrets: Iterable[bytes]) -> list[bytes]:
    needles = [f for s in secrets for f in forms(s)]
    assert needles and all(len(n) >= 16 for n in needles)
    return needles


def assert_absent(roots: Iterable[Path], secrets: Iterable[bytes]) -> int:
    """Fail if any file under ``roots`` contains any secret; return files scanned."""
    needles = _needles(secrets)
    scanned = 0
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            data = path.read_bytes()
            scanned += 1
            for needle in needles:
                assert needle not in data, f"secret found in the clear in {path}"
    assert scanned > 0
    return scanned


def assert_absent_in_database(url: str, secrets: Iterable[bytes]) -> int:
    """Fail if any value of any table of the database at ``url`` (SQLite or
    PostgreSQL) contains any secret; return the number of values scanned. Reads
    rows through SQL, so it also covers databases that are not files."""
    needles = _needles(secrets)
    engine = create_engine(url)
    scanned = 0
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)):
                    for column, value in zip(table.columns, row, strict=True):
                        if value is None:
                            continue
                        data = (
                            bytes(value)
                            if isinstance(value, bytes | memoryview)
                            else str(value).encode()
                        )
                        scanned += 1
                        for needle in needles:
                            assert needle not in data, (
                                f"secret found in the clear in {table.name}.{column.name}"
                            )
    finally:
        engine.dispose()
    assert scanned > 0
    return scanned
