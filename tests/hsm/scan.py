"""Search files for secrets in the clear (raw, hex and base64 forms)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path


def forms(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
    ]


def assert_absent(roots: Iterable[Path], secrets: Iterable[bytes]) -> int:
    """Fail if any file under ``roots`` contains any secret; return files scanned."""
    needles = [f for s in secrets for f in forms(s)]
    assert needles and all(len(n) >= 16 for n in needles)
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
