"""Files of format version 1 keep verifying (docs/por-format.md section 12), and versions
cannot be mixed: the version is bound into every hash."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from proofs import encoding as enc
from proofs.cli import main as custody_por
from proofs.errors import ReasonCode
from proofs.inclusion import InclusionProof, recompute_root
from proofs.snapshot import Snapshot
from proofs.verifier import audit, verify_customer
from tests.proofs.helpers import build, expect_code, roundtrip, sample_rows

VECTORS = Path(__file__).resolve().parent / "vectors"
V1_SNAPSHOT: dict[str, Any] = json.loads((VECTORS / "v1-snapshot.json").read_text())
V1_PROOFS = [json.loads(line) for line in (VECTORS / "v1-proofs.jsonl").read_text().splitlines()]
V1_SERVICE_KEY = bytes.fromhex(V1_SNAPSHOT["service_signature"]["public_key"])


def test_version_1_files_verify() -> None:
    assert V1_SNAPSHOT["version"] == 1 and "unit_exponents" not in V1_SNAPSHOT
    report = audit(V1_SNAPSHOT, trusted_service_key=V1_SERVICE_KEY)
    assert report.version == 1 and [a.unit_exponent for a in report.assets] == [0, 0]
    for raw in V1_PROOFS:
        got = verify_customer(
            V1_SNAPSHOT,
            raw,
            trusted_service_key=V1_SERVICE_KEY,
            customer_id=raw["customer_id"],
            expected_minor_balances={a: int(v) for a, v in raw["balances"].items()},
        )
        assert got.version == 1 and got.unit_exponents == {"BTC": 0, "ETH": 0}


def test_version_1_binary_proof_parses_to_the_json_proof() -> None:
    blob = bytes.fromhex((VECTORS / "v1-proof-alice.bin.hex").read_text().strip())
    proof = InclusionProof.from_binary(blob)
    assert proof == InclusionProof.from_json(V1_PROOFS[0]) and proof.version == 1
    assert proof.to_binary() == blob


def test_parsing_and_writing_again_gives_the_published_object() -> None:
    assert Snapshot.from_json(V1_SNAPSHOT).to_json() == V1_SNAPSHOT
    v2 = roundtrip(build(sample_rows(5)).raw)
    assert Snapshot.from_json(v2).to_json() == v2
    for raw in V1_PROOFS:
        assert InclusionProof.from_json(raw).to_json() == raw


def test_version_1_cli(tmp_path: Path) -> None:
    snap, proof = tmp_path / "s.json", tmp_path / "p.json"
    snap.write_text(json.dumps(V1_SNAPSHOT))
    proof.write_text(json.dumps(V1_PROOFS[1]))
    key = V1_SERVICE_KEY.hex()
    assert custody_por(["audit", "--snapshot", str(snap), "--service-key", key]) == 0
    argv = ["verify", "--snapshot", str(snap), "--proof", str(proof), "--service-key", key]
    assert custody_por(argv) == 0


@pytest.mark.parametrize("name", enc.TAG_NAMES)
def test_every_tag_names_its_version(name: str) -> None:
    assert enc.tag(name, 1) != enc.tag(name, 2)
    assert enc.tag(name, 1).replace(b"/v1/", b"/v2/") == enc.tag(name, 2)


def test_hashes_of_one_version_never_verify_as_the_other() -> None:
    salt = bytes(32)
    assert enc.customer_hash("a", salt, 1) != enc.customer_hash("a", salt, 2)
    assert enc.leaf_hash(salt, [1], 1) != enc.leaf_hash(salt, [1], 2)
    assert enc.node_hash(salt, [1], salt, [2], 1) != enc.node_hash(salt, [1], salt, [2], 2)
    assert enc.pad_hash(0, 3, 1) != enc.pad_hash(0, 3, 2)
    # a version 1 proof relabelled as version 2 (with exponent 0) no longer reaches its root
    p = copy.deepcopy(V1_PROOFS[1])  # bob: no padding on his path
    assert p["customer_id"] == "bob" and p["leaf_index"] == 0
    p["version"] = 2
    p["unit_exponents"] = {"BTC": 0, "ETH": 0}
    s = copy.deepcopy(V1_SNAPSHOT)
    s["version"] = 2
    s["unit_exponents"] = {"BTC": 0, "ETH": 0}
    for c in s["custody"]:
        c["minor_balances"] = c["balances"]
    expect_code(ReasonCode.CHALLENGE_MISMATCH, lambda: audit(s))  # v2 challenge tag differs
    root, _ = recompute_root(InclusionProof.from_json(p))
    assert root.hex() != V1_SNAPSHOT["root_hash"]
