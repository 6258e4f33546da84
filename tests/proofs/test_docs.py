"""The format document matches the code: worked example, tags, and JSON Schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from proofs import encoding as enc
from proofs.errors import PorError, ReasonCode
from proofs.verifier import audit, verify_customer
from tests.proofs import worked_example
from tests.proofs.helpers import build, roundtrip, sample_rows

DOCS = Path(__file__).resolve().parents[2] / "docs"
FORMAT = (DOCS / "por-format.md").read_text()


def _schema(name: str) -> dict[str, Any]:
    schema = json.loads((DOCS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


SNAPSHOT_SCHEMA = _schema("por-snapshot.schema.json")
PROOF_SCHEMA = _schema("por-proof.schema.json")


def _validate(obj: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(obj)


def test_worked_example_in_docs_is_what_the_code_produces() -> None:
    begin, end = "<!-- worked-example:begin -->\n", "\n<!-- worked-example:end -->"
    documented = FORMAT[FORMAT.index(begin) + len(begin) : FORMAT.index(end)]
    assert documented == worked_example.render()


def test_worked_example_files_verify_and_validate() -> None:
    blocks = re.findall(r"```json\n(.*?)\n```", FORMAT, flags=re.S)
    assert len(blocks) == 2
    snapshot, proof = (json.loads(b) for b in blocks)
    _validate(snapshot, SNAPSHOT_SCHEMA)
    _validate(proof, PROOF_SCHEMA)
    key = bytes.fromhex(snapshot["service_signature"]["public_key"])
    assert verify_customer(snapshot, proof, trusted_service_key=key).customer_id == "alice"
    assert audit(snapshot, trusted_service_key=key).custody_keys == 2


def test_documented_tags_match_code() -> None:
    for name in enc.TAG_NAMES:
        assert f"| `{name}` | `{enc.tag(name).hex()}` |" in FORMAT
    assert f'`tag("leaf")` = `{enc.tag("leaf", 1).hex()}`' in FORMAT  # section 12


def test_every_reason_code_is_documented() -> None:
    for code in ReasonCode:
        assert f"| `{code.value}` |" in FORMAT


def test_built_files_validate_against_schemas() -> None:
    built = build(sample_rows(9))
    _validate(roundtrip(built.raw), SNAPSHOT_SCHEMA)
    for row in range(9):
        _validate(roundtrip(built.proof(row).to_json()), PROOF_SCHEMA)


def test_version_1_vectors_validate_against_schemas() -> None:
    vectors = Path(__file__).resolve().parent / "vectors"
    _validate(json.loads((vectors / "v1-snapshot.json").read_text()), SNAPSHOT_SCHEMA)
    for line in (vectors / "v1-proofs.jsonl").read_text().splitlines():
        _validate(json.loads(line), PROOF_SCHEMA)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), 3),
        (("version",), 1),  # a version 2 file relabelled: unit_exponents is unknown in v1
        (("unit_exponents", "BTC"), 78),
        (("unit_exponents", "BTC"), "0"),
        (("unit_exponents", "BTC"), -1),
        (("custody", 0, "minor_balances", "BTC"), "1" + "0" * 78),
        (("custody", 0, "minor_balances"), ["1"]),
        (("root_hash",), "AB" * 32),
        (("liabilities", "BTC"), "-1"),
        (("liabilities", "BTC"), "01"),
        (("custody", 0, "signature"), "00"),
        (("extra",), 1),
    ],
)
def test_schema_rejects_what_the_verifier_rejects(path: tuple[Any, ...], value: Any) -> None:
    snapshot = roundtrip(build(sample_rows(3)).raw)
    target = snapshot
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        _validate(snapshot, SNAPSHOT_SCHEMA)
    with pytest.raises(PorError):
        audit(snapshot)
