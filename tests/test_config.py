"""``custody.json`` is refused when a tenant takes a reserved client name: the
``coordinator`` and ``auditor`` client certificates would then act as that tenant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custody.config import ClusterConfig, ConfigError
from custody.init import init_cluster


@pytest.mark.parametrize("name", ["auditor", "coordinator"])
def test_a_reserved_name_cannot_be_a_tenant(tmp_path: Path, name: str) -> None:
    root = tmp_path / "data"
    init_cluster(root, 3, 2)
    raw = json.loads((root / "custody.json").read_text())
    assert ClusterConfig.load(root).tenants == tuple(raw["tenants"])
    raw["tenants"].append(name)  # a hand edit
    (root / "custody.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=f"{name} cannot be a tenant name"):
        ClusterConfig.load(root)
