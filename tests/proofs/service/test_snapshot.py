"""Taking a snapshot from injected inputs: checks before signing, verified control signatures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custody.por.errors import SnapshotCode, SnapshotError
from custody.por.snapshot import Challenge, CustodyKey, load_liabilities, take_snapshot
from proofs import verifier
from proofs.cli import main as custody_por
from proofs.errors import PorInputError, ReasonCode
from proofs.rows import read_liabilities_csv
from proofs.snapshot import canonical_json
from tests.proofs.service.helpers import CUTOFF, SERVICE, SoftwareKeys, custody_keys, rows

TENANTS = ("acme", "globex")


def test_snapshot_of_three_schemes_audits_and_every_proof_verifies(tmp_path: Path) -> None:
    keys = SoftwareKeys()
    built = take_snapshot(
        load_liabilities(rows(9), TENANTS),
        custody=custody_keys(),
        sign_challenge=keys,
        service=SERVICE,
        cutoff=CUTOFF,
    )
    assert keys.calls == ["k-ecdsa", "k-bip340", "k-ed25519"]
    snap = built.snapshot
    assert [c.scheme for c in snap.custody] == [
        "ecdsa-secp256k1",
        "schnorr-bip340",
        "eddsa-ed25519",
    ]
    assert snap.snapshot_id.startswith("por-20240630T000000Z-") and snap.cutoff == CUTOFF
    assert snap.custody[0].address == "bc1qexample" and snap.custody[1].address is None
    report = verifier.audit(
        json.loads(canonical_json(built.raw)), trusted_service_key=SERVICE.public_key
    )
    assert {a.asset: a.reserves for a in report.assets} == {
        "BTC": 10**9 + 5,
        "ETH": 1000,  # 10^12 + 1 wei rounded down to gwei
        "USDC": 10**12,
    }
    # ETH is counted in gwei by default; every customer's wei rounds up to its proof
    assert dict(zip(snap.assets, snap.unit_exponents, strict=True)) == {
        "BTC": 0,
        "ETH": 9,
        "USDC": 0,
    }
    wei = {cid: amount for cid, asset, amount in rows(9) if asset == "ETH"}
    for row, cid in enumerate(built.liabilities.customer_ids):
        verifier.verify_customer(
            built.raw,
            built.proof(row).to_json(),
            customer_id=cid,
            expected_minor_balances={"ETH": wei[cid]},
        )
    path = tmp_path / "s.json"
    path.write_bytes(canonical_json(built.raw))
    assert (
        custody_por(["audit", "--snapshot", str(path), "--service-key", SERVICE.public_key.hex()])
        == 0
    )


def test_liabilities_from_a_callable_ledger() -> None:
    liab = load_liabilities(lambda: iter([("acme/a", "BTC", 1), ("globex/b", "ETH", 2)]), TENANTS)
    assert liab.customer_ids == ("acme/a", "globex/b")


@pytest.mark.parametrize(
    ("cid", "words"),
    [
        ("alice", "row 2: customer id 'alice' is not <tenant>/<account>"),
        ("acme/", "row 2: customer id 'acme/' is not <tenant>/<account>"),
        ("initech/bob", "row 2: customer id 'initech/bob' names tenant 'initech'"),
        ("ac me/bob", "is not <tenant>/<account>"),
    ],
)
def test_customer_ids_must_be_namespaced_by_a_tenant(cid: str, words: str) -> None:
    with pytest.raises(SnapshotError) as info:
        load_liabilities([("acme/a", "BTC", 1), (cid, "BTC", 1)], TENANTS)
    assert info.value.code is SnapshotCode.CUSTOMER_NAMESPACE and words in info.value.detail


def test_namespace_error_names_the_csv_line(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("customer_id,asset,amount\nacme/a,BTC,1\nacme/b,BTC,2\nbob,BTC,3\n")
    with pytest.raises(SnapshotError) as info:
        load_liabilities(read_liabilities_csv(path), TENANTS)
    assert "CSV line 4: customer id 'bob'" in info.value.detail


@pytest.mark.parametrize(
    ("custody", "code"),
    [
        ([CustodyKey(key_id="k-ecdsa", balances={"DOGE": 1})], ReasonCode.UNKNOWN_ASSET),
        ([CustodyKey(key_id="k-ecdsa", balances={"BTC": 2**64})], ReasonCode.BALANCE_RANGE),
        ([CustodyKey(key_id="k-ecdsa", balances={"BTC": -1})], ReasonCode.BALANCE_RANGE),
        ([CustodyKey(key_id="k-ecdsa"), CustodyKey(key_id="k-ecdsa")], ReasonCode.DUPLICATE_KEY),
        ([CustodyKey(key_id="k ecdsa")], ReasonCode.MALFORMED),
        ([CustodyKey(key_id="k-ecdsa", address="bc1\u00e9")], ReasonCode.MALFORMED),
        ([CustodyKey(key_id="k-ecdsa", address="")], ReasonCode.MALFORMED),
    ],
)
def test_custody_input_is_refused_before_anything_is_signed(
    custody: list[CustodyKey], code: ReasonCode
) -> None:
    keys = SoftwareKeys()
    with pytest.raises(PorInputError) as info:
        take_snapshot(
            load_liabilities(rows(3), TENANTS),
            custody=custody,
            sign_challenge=keys,
            service=SERVICE,
            cutoff=CUTOFF,
        )
    assert info.value.code is code
    assert keys.calls == []


def test_a_control_signature_that_does_not_verify_is_never_published() -> None:
    keys = SoftwareKeys()

    def wrong(key_id: str, challenge: Challenge) -> tuple[str, bytes, bytes]:
        scheme, public_key, signature = keys(key_id, challenge)
        if key_id == "k-bip340":  # e.g. the cluster signed a domain-separated message digest
            return keys("k-bip340", Challenge(b"another preimage"))
        return scheme, public_key, signature

    with pytest.raises(SnapshotError) as info:
        take_snapshot(
            load_liabilities(rows(3), TENANTS),
            custody=custody_keys(),
            sign_challenge=wrong,
            service=SERVICE,
            cutoff=CUTOFF,
        )
    assert info.value.code is SnapshotCode.CONTROL_SIGNATURE_INVALID
    assert "k-bip340" in info.value.detail


def test_two_entries_with_one_public_key_are_refused() -> None:
    keys = SoftwareKeys()

    def same_key(key_id: str, challenge: Challenge) -> tuple[str, bytes, bytes]:
        return keys("k-ed25519", challenge)

    with pytest.raises(PorInputError) as info:
        take_snapshot(
            load_liabilities(rows(3), TENANTS),
            custody=[CustodyKey(key_id="a"), CustodyKey(key_id="b")],
            sign_challenge=same_key,
            service=SERVICE,
            cutoff=CUTOFF,
        )
    assert info.value.code is ReasonCode.DUPLICATE_KEY


def test_salts_are_fresh_per_snapshot() -> None:
    liab = load_liabilities(rows(4), TENANTS)
    a, b = (
        take_snapshot(
            liab, custody=[], sign_challenge=SoftwareKeys(), service=SERVICE, cutoff=CUTOFF
        )
        for _ in range(2)
    )
    assert a.salts != b.salts and a.snapshot.root_hash != b.snapshot.root_hash
    assert a.snapshot.liabilities == b.snapshot.liabilities


def test_a_malformed_ledger_row_is_named_not_crashed_on() -> None:
    with pytest.raises(PorInputError) as info:
        load_liabilities([("acme/a", "BTC", 1), ()], TENANTS)  # type: ignore[list-item]
    assert info.value.code is ReasonCode.MALFORMED and info.value.detail.startswith("row 2:")
