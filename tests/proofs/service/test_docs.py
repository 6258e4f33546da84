"""Every code and reason the service can return is documented (docs/por-format.md section 11)."""

from __future__ import annotations

import re
from pathlib import Path

from custody.por.errors import SnapshotCode

ROOT = Path(__file__).resolve().parents[3]
SECTION = (ROOT / "docs" / "por-format.md").read_text().split("## 11. ", 1)[1]


def test_snapshot_codes_are_documented() -> None:
    for code in SnapshotCode:
        assert f"| `{code.value}` |" in SECTION, code


def test_grpc_reasons_are_documented() -> None:
    source = (ROOT / "custody" / "por" / "service.py").read_text()
    reasons = set(re.findall(r'ServiceError\(\s*[\w.]+,\s*"([A-Z_]+)"', source))
    assert len(reasons) >= 10
    for reason in reasons:
        assert f"`{reason}`" in SECTION, reason
