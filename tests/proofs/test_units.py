"""PoR units (docs/por-format.md section 1.1): liabilities round up, reserves round down,
out-of-range amounts are refused with POR_BALANCE_RANGE, and the verifier checks both
roundings; a lying service cannot rescale an asset."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofs import units
from proofs.build import Liabilities, ServiceSigner, build_snapshot, prepare_snapshot
from proofs.errors import PorInputError, ReasonCode
from proofs.rows import read_custody_csv
from proofs.verifier import audit, verify_customer
from tests.proofs.helpers import (
    CREATED,
    CUTOFF,
    SERVICE_SEED,
    custody_signers,
    det_bytes,
    expect_code,
    resign,
    roundtrip,
)

GWEI = 10**9
U64 = 2**64
UNITS = {"ETH": 9}


@pytest.mark.parametrize(
    ("minor", "up", "down"),
    [
        (0, 0, 0),
        (1, 1, 0),  # 1 wei is owed as a whole gwei, and held as none
        (GWEI - 1, 1, 0),
        (GWEI, 1, 1),  # exact multiples are exact both ways
        (GWEI + 1, 2, 1),
        (18_500_000_000 * GWEI, 18_500_000_000, 18_500_000_000),  # 18.5 ETH > 2^64 wei
        ((U64 - 1) * GWEI, U64 - 1, U64 - 1),
        ((U64 - 1) * GWEI + 1, U64, U64 - 1),
    ],
)
def test_rounding_edges(minor: int, up: int, down: int) -> None:
    assert units.liability_units(minor, 9) == up
    assert units.reserve_units(minor, 9) == down


@given(st.integers(0, 2**256 - 1), st.integers(0, units.MAX_EXPONENT))
def test_rounding_brackets_the_exact_amount(minor: int, e: int) -> None:
    up, down = units.liability_units(minor, e), units.reserve_units(minor, e)
    assert down * 10**e <= minor <= up * 10**e
    assert up - down == (0 if minor % 10**e == 0 else 1)


def test_exponent_range_is_checked() -> None:
    with pytest.raises(ValueError):
        units.liability_units(1, units.MAX_EXPONENT + 1)
    with pytest.raises(ValueError):
        units.reserve_units(-1, 0)


def test_liabilities_round_up_and_near_2_64_units_is_refused() -> None:
    table = Liabilities.from_mapping(
        {"a": {"ETH": 1}, "b": {"ETH": 18_500_000_000 * GWEI, "BTC": 7}}, UNITS
    )
    assert table.unit_exponents == (0, 9)  # BTC undeclared: its minor unit
    assert table.balances.tolist() == [[0, 1], [7, 18_500_000_000]]
    ok = Liabilities.from_mapping({"a": {"ETH": (U64 - 1) * GWEI}}, UNITS)
    assert ok.balances.tolist() == [[U64 - 1]]
    err = expect_code(
        ReasonCode.BALANCE_RANGE,
        lambda: Liabilities.from_mapping({"a": {"ETH": (U64 - 1) * GWEI + 1}}, UNITS),
    )
    assert "is 18446744073709551616 units of 10^9 minor units, not below 2^64" in err.detail
    assert "declare a larger unit for ETH (exponent 10 or more)" in err.detail
    # without a unit, 18.5 ETH in wei does not fit at all
    err = expect_code(
        ReasonCode.BALANCE_RANGE,
        lambda: Liabilities.from_mapping({"a": {"ETH": 18_500_000_000 * GWEI}}),
    )
    assert "(exponent 1 or more)" in err.detail
    expect_code(ReasonCode.BALANCE_RANGE, lambda: Liabilities.from_mapping({"a": {"ETH": 2**256}}))


def test_totals_that_reach_2_64_units_are_refused() -> None:
    rows = {"a": {"BTC": 1, "ETH": (U64 // 2) * GWEI}, "b": {"ETH": (U64 // 2) * GWEI}}
    table = Liabilities.from_mapping(rows, UNITS)
    err = expect_code(
        ReasonCode.OVERFLOW,
        lambda: prepare_snapshot(table, snapshot_id="s", cutoff=CUTOFF, created_at=CREATED),
    )
    assert "the ETH total reaches 2^64" in err.detail and "declare a larger unit" in err.detail


def test_csv_amounts_are_minor_units(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text(f"customer_id,asset,amount\na,ETH,{18_500_000_000 * GWEI + 1}\nb,ETH,1\n")
    assert Liabilities.from_csv(path, UNITS).balances.tolist() == [[18_500_000_001], [1]]
    path.write_text(f"customer_id,asset,amount\na,ETH,{U64 * GWEI}\n")
    with pytest.raises(PorInputError) as info:
        Liabilities.from_csv(path, UNITS)
    assert info.value.code is ReasonCode.BALANCE_RANGE
    assert "CSV line 2: ETH amount" in info.value.detail
    path.write_text("customer_id,asset,amount\na,ETH,1" + "0" * 78 + "\n")  # 79 digits
    with pytest.raises(PorInputError) as info:
        Liabilities.from_csv(path, UNITS)
    assert info.value.code is ReasonCode.BALANCE_RANGE
    custody = tmp_path / "c.csv"
    custody.write_text(f"key_id,asset,amount\nk,ETH,{U64 * GWEI}\n")  # exact, above 2^64
    assert read_custody_csv(custody) == {"k": (None, {"ETH": U64 * GWEI})}


ROWS = {
    "alice": {"BTC": 150_000_000, "ETH": 2 * 10**18},  # exact: 2e9 gwei
    "bob": {"BTC": 5, "ETH": 1},  # 1 wei: 1 gwei
    "carol": {"ETH": 18_500_000_000 * GWEI + GWEI - 1},  # rounds up to ...001 gwei
}
HELD = {"BTC": 10**9, "ETH": 21 * 10**18 + GWEI - 1}  # the odd wei are not counted


def _built() -> Any:
    rows = {cid: dict(bal) for cid, bal in ROWS.items()}
    signers = custody_signers({"hot-ecdsa": HELD, "sol-ed25519": {"ETH": GWEI - 1}})
    table = Liabilities.from_mapping(rows, UNITS)
    return build_snapshot(
        table,
        snapshot_id="por-units",
        cutoff=CUTOFF,
        created_at=CREATED,
        service=ServiceSigner.from_seed(SERVICE_SEED),
        custody=signers,
        random_bytes=det_bytes("units"),
    )


BUILT = _built()
SNAP: dict[str, Any] = roundtrip(BUILT.raw)
PROOFS = {
    cid: roundtrip(BUILT.proof(r).to_json()) for r, cid in enumerate(BUILT.liabilities.customer_ids)
}


def test_snapshot_declares_units_and_rounds_both_ways() -> None:
    assert SNAP["version"] == 2 and SNAP["unit_exponents"] == {"BTC": 0, "ETH": 9}
    assert SNAP["liabilities"] == {"BTC": "150000005", "ETH": str(2 * GWEI + 1 + 18_500_000_001)}
    hot, sol = SNAP["custody"]
    assert hot["minor_balances"] == {"BTC": str(10**9), "ETH": str(HELD["ETH"])}
    assert hot["balances"] == {"BTC": str(10**9), "ETH": str(21 * GWEI)}
    assert sol["minor_balances"]["ETH"] == str(GWEI - 1) and sol["balances"]["ETH"] == "0"
    assert SNAP["reserves"] == {"BTC": str(10**9), "ETH": str(21 * GWEI)}
    report = audit(SNAP)
    assert [(a.asset, a.unit_exponent) for a in report.assets] == [("BTC", 0), ("ETH", 9)]
    for cid, proof in PROOFS.items():
        assert proof["unit_exponents"] == {"BTC": 0, "ETH": 9}
        verify_customer(
            SNAP, proof, customer_id=cid, expected_minor_balances={"ETH": ROWS[cid]["ETH"]}
        )


@pytest.mark.parametrize(
    ("cid", "statement", "ok"),
    [
        ("alice", 2 * 10**18, True),
        ("alice", 2 * 10**18 - GWEI + 1, True),  # any amount that rounds up to the same
        ("alice", 2 * 10**18 + 1, False),  # one wei more is owed as one gwei more
        ("alice", 2 * 10**18 - GWEI, False),
        ("bob", 1, True),
        ("bob", 0, False),
        ("bob", GWEI + 1, False),
    ],
)
def test_customer_checks_its_statement_in_minor_units(cid: str, statement: int, ok: bool) -> None:
    def run() -> object:
        return verify_customer(SNAP, PROOFS[cid], expected_minor_balances={"ETH": statement})

    if ok:
        run()
    else:
        err = expect_code(ReasonCode.BALANCE_MISMATCH, run)
        assert "rounded up to units of 10^9 minor units" in err.detail
    expect_code(
        ReasonCode.UNKNOWN_ASSET,
        lambda: verify_customer(SNAP, PROOFS[cid], expected_minor_balances={"DOGE": 1}),
    )


def _resigned(edit: Any) -> dict[str, Any]:
    s = copy.deepcopy(SNAP)
    edit(s)
    return resign(s)


def test_custody_balance_must_be_its_minor_balance_rounded_down() -> None:
    def overstate(s: dict[str, Any]) -> None:  # 21 ETH + 999999999 wei listed as 21 ETH + 1 gwei
        s["custody"][0]["balances"]["ETH"] = s["reserves"]["ETH"] = str(21 * GWEI + 1)

    def understate(s: dict[str, Any]) -> None:
        s["custody"][0]["balances"]["ETH"] = s["reserves"]["ETH"] = str(21 * GWEI - 1)

    def inflate_minor(s: dict[str, Any]) -> None:
        s["custody"][0]["minor_balances"]["ETH"] = str(22 * 10**18)

    for edit in (overstate, understate, inflate_minor):
        edited = _resigned(edit)
        err = expect_code(ReasonCode.UNIT_ROUNDING, lambda: audit(edited))  # noqa: B023
        assert "hot-ecdsa" in err.detail and "rounded down" in err.detail


def test_relabelling_the_unit_alone_breaks_the_custody_rounding() -> None:
    def relabel(s: dict[str, Any]) -> None:
        s["unit_exponents"]["ETH"] = 8

    expect_code(ReasonCode.UNIT_ROUNDING, lambda: audit(_resigned(relabel)))


def test_a_rescaled_asset_is_caught_by_the_customers_statement() -> None:
    """The dangerous lie: declare ETH in 10^8 wei while the tree holds gwei, so that every
    liability reads ten times smaller, and re-list the custody balances to match, so that
    the audit passes. Proofs must carry the snapshot's units (V2), and a customer who
    checks the balance against the statement in wei (V7, ``--expect-minor``) catches it:
    a balance read without its unit proves nothing (section 1.1)."""

    def rescale(s: dict[str, Any]) -> None:
        s["unit_exponents"]["ETH"] = 8
        for entry in s["custody"]:
            entry["balances"]["ETH"] = str(int(entry["minor_balances"]["ETH"]) // 10**8)
        s["reserves"]["ETH"] = str(sum(int(c["balances"]["ETH"]) for c in s["custody"]))

    lie = _resigned(rescale)
    audit(lie)  # self-consistent, and "solvent"
    expect_code(ReasonCode.SNAPSHOT_MISMATCH, lambda: verify_customer(lie, PROOFS["alice"]))
    relabelled = copy.deepcopy(PROOFS["alice"])
    relabelled["unit_exponents"]["ETH"] = 8
    verify_customer(lie, relabelled)  # the tree itself does not fix the scale
    err = expect_code(
        ReasonCode.BALANCE_MISMATCH,
        lambda: verify_customer(lie, relabelled, expected_minor_balances={"ETH": 2 * 10**18}),
    )
    assert "expected 20000000000" in err.detail


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda s: s.pop("unit_exponents"), ReasonCode.MALFORMED),
        (lambda s: s["unit_exponents"].pop("BTC"), ReasonCode.MALFORMED),
        (lambda s: s["unit_exponents"].__setitem__("BTC", 78), ReasonCode.MALFORMED),
        (lambda s: s["unit_exponents"].__setitem__("BTC", "0"), ReasonCode.MALFORMED),
        (lambda s: s["unit_exponents"].__setitem__("BTC", True), ReasonCode.MALFORMED),
        (lambda s: s["custody"][0].pop("minor_balances"), ReasonCode.MALFORMED),
        (
            lambda s: s["custody"][0]["minor_balances"].__setitem__("BTC", str(2**256)),
            ReasonCode.BALANCE_RANGE,
        ),
        (lambda s: s.__setitem__("version", 1), ReasonCode.MALFORMED),  # v1 has no units
        (lambda s: s.__setitem__("version", 3), ReasonCode.UNSUPPORTED_VERSION),
    ],
)
def test_malformed_units_are_refused(edit: Any, code: ReasonCode) -> None:
    s = copy.deepcopy(SNAP)
    edit(s)
    err = expect_code(code, lambda: audit(s))
    if code is ReasonCode.UNSUPPORTED_VERSION:
        assert "format version 3 is not supported (this verifier reads versions 1 and 2)" in (
            err.detail
        )


def test_proof_with_other_units_or_version_is_refused() -> None:
    p = copy.deepcopy(PROOFS["bob"])
    p["unit_exponents"]["BTC"] = 1
    err = expect_code(ReasonCode.SNAPSHOT_MISMATCH, lambda: verify_customer(SNAP, p))
    assert "units" in err.detail
    p = copy.deepcopy(PROOFS["bob"])
    p.pop("unit_exponents")
    p["version"] = 1  # a well-formed version 1 proof of the same tree
    err = expect_code(ReasonCode.SNAPSHOT_MISMATCH, lambda: verify_customer(SNAP, p))
    assert "version" in err.detail


def test_binary_proof_carries_the_units() -> None:
    from proofs.inclusion import InclusionProof

    proof = BUILT.proof(0)
    blob = proof.to_binary()
    assert InclusionProof.from_binary(blob) == proof
    assert blob[4] == 2 and b"\x00\x03ETH\x09" in blob
    bad = blob.replace(b"\x00\x03ETH\x09", b"\x00\x03ETH\x4e")  # exponent 78
    expect_code(ReasonCode.MALFORMED, lambda: InclusionProof.from_binary(bad))
    v3 = blob[:4] + b"\x03" + blob[5:]
    expect_code(ReasonCode.UNSUPPORTED_VERSION, lambda: InclusionProof.from_binary(v3))
