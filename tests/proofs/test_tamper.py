"""Every tamper case of the issue fails verification with its own stable reason code.

ARCHITECTURE.md section 6, invariant 8: verification fails on any changed balance,
path, sum, signature or omitted customer.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from proofs import encoding as enc
from proofs.build import Liabilities, ServiceSigner, build_snapshot
from proofs.errors import PorFormatError, PorInputError, PorVerificationError, ReasonCode
from proofs.snapshot import compute_challenge
from proofs.verifier import audit, verify_customer
from tests.proofs.helpers import (
    CREATED,
    CUTOFF,
    SERVICE_SEED,
    build,
    det_bytes,
    expect_code,
    resign,
    roundtrip,
    sample_rows,
)

ROWS = sample_rows(11)  # 11 leaves: padding at levels 0 (11 -> 12), 1 (6), 2 (3 -> 4)
BUILT = build(ROWS)
SNAP: dict[str, Any] = roundtrip(BUILT.raw)
PROOFS: dict[str, dict[str, Any]] = {
    cid: roundtrip(BUILT.proof(r).to_json()) for r, cid in enumerate(BUILT.liabilities.customer_ids)
}
CID = "cust-005"


def proof(cid: str = CID) -> dict[str, Any]:
    return copy.deepcopy(PROOFS[cid])


def snap() -> dict[str, Any]:
    return copy.deepcopy(SNAP)


def check(s: dict[str, Any], p: dict[str, Any], **kw: Any) -> None:
    verify_customer(s, p, **kw)


def test_untampered_proofs_and_audit_pass() -> None:
    for cid, p in PROOFS.items():
        report = verify_customer(
            SNAP, p, trusted_service_key=BUILT.snapshot.service_public_key, customer_id=cid
        )
        assert report.balances == dict(zip(("BTC", "ETH", "USDC"), ROWS[cid].values(), strict=True))
    assert audit(SNAP).custody_keys == 3


# -- the customer's own leaf ------------------------------------------------------------


@pytest.mark.parametrize("asset", ["BTC", "ETH", "USDC"])
@pytest.mark.parametrize("delta", [1, -1])
def test_changed_balance(asset: str, delta: int) -> None:
    p = proof()
    p["balances"][asset] = str(int(p["balances"][asset]) + delta)
    expect_code(ReasonCode.ROOT_MISMATCH, lambda: check(snap(), p))


def test_changed_salt() -> None:
    p = proof()
    p["salt"] = "%064x" % (int(p["salt"], 16) ^ 1)
    expect_code(ReasonCode.ROOT_MISMATCH, lambda: check(snap(), p))


def test_changed_customer_id() -> None:
    p = proof()
    p["customer_id"] = "cust-006"
    expect_code(ReasonCode.ROOT_MISMATCH, lambda: check(snap(), p))


def test_customer_id_prefix_shift_is_not_ambiguous() -> None:
    """Moving a byte between id and salt changes the hash (the id is length-prefixed)."""
    salt = bytes(range(32))
    assert enc.customer_hash("ab", salt) != enc.customer_hash("a", b"b" + salt[:31])


def test_proof_for_another_customer_is_named() -> None:
    expect_code(
        ReasonCode.CUSTOMER_MISMATCH, lambda: check(snap(), proof("cust-004"), customer_id=CID)
    )


def test_balance_other_than_expected() -> None:
    p = proof()
    want = {"BTC": int(p["balances"]["BTC"]) + 1}
    expect_code(ReasonCode.BALANCE_MISMATCH, lambda: check(snap(), p, expected_balances=want))


# -- the path --------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 1, 3])
def test_changed_sibling_hash(level: int) -> None:
    p = proof("cust-001")
    h = bytearray.fromhex(p["path"][level]["hash"])
    h[0] ^= 0x80
    p["path"][level]["hash"] = h.hex()
    code = ReasonCode.ROOT_MISMATCH
    if _sibling_is_padding(p, level):
        code = ReasonCode.PADDING_MISMATCH
    expect_code(code, lambda: check(snap(), p))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_changed_sibling_sum(level: int) -> None:
    """Raising one sibling sum (value shifting, ePrint 2022/043) is caught at the root."""
    p = _non_padding_proof(level)
    p["path"][level]["sums"][0] = str(int(p["path"][level]["sums"][0]) + 1)
    expect_code(ReasonCode.ROOT_MISMATCH, lambda: check(snap(), p))


def test_shifting_value_between_leaf_and_sibling_keeps_total_but_fails() -> None:
    """The attack on trees committing only the parent sum: move 1 unit to the sibling."""
    p = _non_padding_proof(0)
    p["balances"]["BTC"] = str(int(p["balances"]["BTC"]) - 1)
    p["path"][0]["sums"][0] = str(int(p["path"][0]["sums"][0]) + 1)
    expect_code(ReasonCode.ROOT_MISMATCH, lambda: check(snap(), p))


def test_swapped_leaf_order() -> None:
    """Claiming the sibling position (leaf order changed) breaks the hash chain."""
    p = _non_padding_proof(0)
    p["leaf_index"] ^= 1
    expect_code(ReasonCode.ROOT_MISMATCH, lambda: check(snap(), p))


def test_leaf_index_out_of_range() -> None:
    p = proof()
    p["leaf_index"] = 11
    expect_code(ReasonCode.INDEX_OUT_OF_RANGE, lambda: check(snap(), p))


def test_path_too_short_or_long() -> None:
    p = proof()
    p["path"].pop()
    expect_code(ReasonCode.PATH_LENGTH, lambda: check(snap(), p))
    p = proof()
    p["path"].append(p["path"][-1])
    expect_code(ReasonCode.PATH_LENGTH, lambda: check(snap(), p))


def test_fake_padding_with_value_rejected() -> None:
    """A padding position may not carry value, even with a consistent hash."""
    for p in PROOFS.values():
        for level in range(len(p["path"])):
            if _sibling_is_padding(p, level):
                q = copy.deepcopy(p)
                q["path"][level]["sums"][1] = "1"
                expect_code(ReasonCode.PADDING_MISMATCH, lambda q=q: check(snap(), q))
                return
    pytest.fail("no proof crosses padding")


# -- ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", str(2**64), str(2**64 + 5), "1" * 30])
def test_negative_or_too_large_balance(value: str) -> None:
    p = proof()
    p["balances"]["ETH"] = value
    expect_code(ReasonCode.BALANCE_RANGE, lambda: check(snap(), p))
    p = proof()
    p["path"][2]["sums"][1] = value
    expect_code(ReasonCode.BALANCE_RANGE, lambda: check(snap(), p))


def test_overflowing_sum_in_proof() -> None:
    """In-range sibling sums whose total reaches 2^64 would wrap in u64 arithmetic."""
    p = _non_padding_proof(1)
    p["path"][1]["sums"][0] = str(2**64 - 1)
    expect_code(ReasonCode.OVERFLOW, lambda: check(snap(), p))


def test_builder_rejects_negative_overflowing_and_wrapping_balances() -> None:
    for bad in (-1, 2**64):
        with pytest.raises(PorInputError) as info:
            Liabilities.from_mapping({"a": {"BTC": bad}})
        assert info.value.code is ReasonCode.BALANCE_RANGE
    rows = {"a": {"BTC": 2**64 - 1}, "b": {"BTC": 1}}
    err = expect_code(
        ReasonCode.OVERFLOW,
        lambda: build_snapshot(
            Liabilities.from_mapping(rows),
            snapshot_id="s",
            cutoff=CUTOFF,
            created_at=CREATED,
            service=ServiceSigner.from_seed(SERVICE_SEED),
        ),
    )
    assert isinstance(err, PorInputError)


# -- the snapshot ----------------------------------------------------------------------


def test_proof_from_another_snapshot() -> None:
    other = build(ROWS, snapshot_id="por-2024-07-31", salt_label="other")
    p = roundtrip(other.proof(5).to_json())
    expect_code(ReasonCode.SNAPSHOT_MISMATCH, lambda: check(snap(), p))
    p["snapshot_id"] = SNAP["snapshot_id"]  # relabelled: the root still differs
    expect_code(ReasonCode.SNAPSHOT_MISMATCH, lambda: check(snap(), p))
    p["root_hash"] = SNAP["root_hash"]
    expect_code(ReasonCode.ROOT_MISMATCH, lambda: check(snap(), p))


def test_omitted_customer() -> None:
    """A snapshot built without one customer cannot verify that customer's proof."""
    rows = dict(ROWS)
    del rows[CID]
    partial = build(rows, salt_label="salts")
    s = roundtrip(partial.raw)
    p = proof()
    for key in ("root_hash", "leaf_count"):
        p[key] = s[key]
    p["path"] = p["path"][: enc.tree_depth(s["leaf_count"])]
    expect_code(ReasonCode.ROOT_MISMATCH, lambda: check(s, p))
    assert int(s["liabilities"]["BTC"]) < int(SNAP["liabilities"]["BTC"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("snapshot_id", "por-2024-06-29"),
        ("cutoff", "2024-06-29T00:00:00Z"),
        ("created_at", "2024-06-29T00:00:00Z"),
        ("root_hash", "00" * 32),
        ("leaf_count", 10),
        ("tree_depth", 3),
        ("liabilities", {"BTC": "1", "ETH": "1", "USDC": "1"}),
        ("reserves", {"BTC": "1", "ETH": "1", "USDC": "1"}),
        ("challenge", "11" * 32),
    ],
)
def test_changed_snapshot_field_breaks_service_signature(field: str, value: Any) -> None:
    s = snap()
    s[field] = value
    code = ReasonCode.BAD_SIGNATURE
    if field in ("snapshot_id", "cutoff", "root_hash", "leaf_count", "liabilities", "challenge"):
        code = ReasonCode.CHALLENGE_MISMATCH  # checked before the signature
    if field == "tree_depth":
        code = ReasonCode.MALFORMED
    expect_code(code, lambda: audit(s))


def test_changed_custody_entry_breaks_service_signature() -> None:
    s = snap()
    s["custody"][0]["balances"]["BTC"] = "1"
    expect_code(ReasonCode.BAD_SIGNATURE, lambda: audit(s))
    s = snap()
    s["custody"][1]["address"] = "addr-elsewhere"
    expect_code(ReasonCode.BAD_SIGNATURE, lambda: audit(s))


def test_changed_service_signature() -> None:
    s = snap()
    sig = bytearray.fromhex(s["service_signature"]["signature"])
    sig[5] ^= 1
    s["service_signature"]["signature"] = sig.hex()
    expect_code(ReasonCode.BAD_SIGNATURE, lambda: check(s, proof()))


def test_snapshot_signed_by_another_key() -> None:
    s = resign(snap(), seed=b"\x07" * 32)
    assert audit(s).custody_keys == 3  # integrity holds under the key in the file
    expect_code(
        ReasonCode.UNTRUSTED_SERVICE_KEY,
        lambda: audit(s, trusted_service_key=BUILT.snapshot.service_public_key),
    )


def test_understated_totals_signed_by_a_lying_service() -> None:
    """The service signs lower totals than its tree: every customer's proof exposes it."""
    s = snap()
    s["liabilities"]["ETH"] = str(int(s["liabilities"]["ETH"]) - 1)
    b = BUILT.snapshot
    s["challenge"] = compute_challenge(
        snapshot_id=b.snapshot_id,
        cutoff=b.cutoff,
        root_hash=b.root_hash,
        leaf_count=b.leaf_count,
        assets=b.assets,
        liabilities=[int(s["liabilities"][a]) for a in b.assets],
    ).hex()
    s = resign(s)
    expect_code(ReasonCode.TOTALS_MISMATCH, lambda: check(s, proof()))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_changed_control_signature(index: int) -> None:
    s = snap()
    sig = bytearray.fromhex(s["custody"][index]["signature"])
    sig[40] ^= 1
    s["custody"][index]["signature"] = sig.hex()
    expect_code(ReasonCode.BAD_CONTROL_SIGNATURE, lambda: audit(resign(s)))


def test_control_signature_from_another_snapshot() -> None:
    """A custody signature over another snapshot's challenge does not carry over."""
    other = roundtrip(build(ROWS, snapshot_id="por-2024-05-31").raw)
    s = snap()
    s["custody"][0]["signature"] = other["custody"][0]["signature"]
    expect_code(ReasonCode.BAD_CONTROL_SIGNATURE, lambda: audit(resign(s)))


def test_high_s_ecdsa_rejected() -> None:
    s = snap()
    sig = bytes.fromhex(s["custody"][0]["signature"])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high = sig[:32] + (n - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    s["custody"][0]["signature"] = high.hex()
    expect_code(ReasonCode.BAD_CONTROL_SIGNATURE, lambda: audit(resign(s)))


def test_duplicate_custody_key_counted_twice() -> None:
    s = snap()
    s["custody"].append(copy.deepcopy(s["custody"][2]))
    for a in s["reserves"]:
        s["reserves"][a] = str(sum(int(c["balances"][a]) for c in s["custody"]))
    expect_code(ReasonCode.DUPLICATE_KEY, lambda: audit(resign(s)))


def test_reserves_not_matching_custody_balances() -> None:
    s = snap()
    s["reserves"]["USDC"] = str(int(s["reserves"]["USDC"]) + 1)
    expect_code(ReasonCode.RESERVES_MISMATCH, lambda: audit(resign(s)))


def test_insolvent_asset_and_asset_selection() -> None:
    thin = {"hot-ecdsa": {"BTC": 10**9}, "cold-bip340": {"ETH": 1}, "sol-ed25519": {"USDC": 10**9}}
    from tests.proofs.helpers import custody_signers

    s = roundtrip(build(ROWS, custody=custody_signers(thin)).raw)
    err = expect_code(ReasonCode.INSOLVENT, lambda: audit(s))
    assert "ETH" in err.detail
    report = audit(s, assets=["BTC", "USDC"])
    assert [a.asset for a in report.assets] == ["BTC", "USDC"]
    expect_code(ReasonCode.UNKNOWN_ASSET, lambda: audit(s, assets=["DOGE"]))


# -- parsing ---------------------------------------------------------------------------


def test_unknown_version_and_fields() -> None:
    p = proof()
    p["version"] = 3
    expect_code(ReasonCode.UNSUPPORTED_VERSION, lambda: check(snap(), p))
    p = proof()
    p["note"] = "trust me"
    expect_code(ReasonCode.MALFORMED, lambda: check(snap(), p))
    s = snap()
    s["extra"] = 1
    expect_code(ReasonCode.MALFORMED, lambda: audit(s))


def test_malformed_values_are_format_errors() -> None:
    for mutate in (
        lambda p: p.__setitem__("salt", "zz" * 32),
        lambda p: p.__setitem__("salt", "00" * 31),
        lambda p: p["balances"].__setitem__("BTC", 5),
        lambda p: p["balances"].pop("BTC"),
        lambda p: p.__setitem__("leaf_index", True),
        lambda p: p["path"][0].__setitem__("sums", ["1"]),
        lambda p: p.__setitem__("assets", ["ETH", "BTC", "USDC"]),
    ):
        p = proof()
        mutate(p)
        with pytest.raises(PorFormatError) as info:
            check(snap(), p)
        assert info.value.code is ReasonCode.MALFORMED


def test_duplicate_json_keys_rejected() -> None:
    from proofs.verifier import parse_json

    expect_code(ReasonCode.MALFORMED, lambda: parse_json('{"a": 1, "a": 2}'))
    expect_code(ReasonCode.MALFORMED, lambda: parse_json('{"a": NaN}'))


def test_duplicate_customer_rejected_by_builder() -> None:
    with pytest.raises(PorInputError) as info:
        Liabilities(
            customer_ids=("a", "a"),
            assets=("BTC",),
            balances=__import__("numpy").zeros((2, 1), dtype="uint64"),
        )
    assert info.value.code is ReasonCode.DUPLICATE_CUSTOMER


def test_empty_liabilities_rejected() -> None:
    expect_code(
        ReasonCode.EMPTY,
        lambda: build_snapshot(
            Liabilities.from_mapping({"a": {"BTC": 1}}).__class__(
                customer_ids=(),
                assets=("BTC",),
                balances=__import__("numpy").zeros((0, 1), dtype="uint64"),
            ),
            snapshot_id="s",
            cutoff=CUTOFF,
            created_at=CREATED,
            service=ServiceSigner.from_seed(SERVICE_SEED),
            random_bytes=det_bytes("x"),
        ),
    )


def test_errors_are_typed_by_fault() -> None:
    p = proof()
    p["balances"]["BTC"] = "0"
    with pytest.raises(PorVerificationError):
        check(snap(), p)


# -- helpers ---------------------------------------------------------------------------


def _sibling_is_padding(p: dict[str, Any], level: int) -> bool:
    index, size = p["leaf_index"], p["leaf_count"]
    for _ in range(level):
        index >>= 1
        size = (size + 1) // 2
    return bool(index ^ 1 == size)


def _non_padding_proof(level: int) -> dict[str, Any]:
    for cid, p in PROOFS.items():
        if not _sibling_is_padding(p, level):
            return proof(cid)
    raise AssertionError("every proof has padding at this level")
