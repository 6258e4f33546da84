"""Loaders for the copied public test vectors (see tests/vectors/README.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"


def frost_vectors(name: str) -> dict[str, Any]:
    with (VECTORS / "frost" / f"{name}.json").open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def bip340_vectors() -> list[dict[str, str]]:
    with (VECTORS / "bip340" / "test-vectors.csv").open(newline="") as f:
        return list(csv.DictReader(f))
