"""``custody-por`` end to end: build a dry run from CSV, then verify and audit the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofs.cli import main
from proofs.errors import ReasonCode

CSV = "customer_id,asset,amount\nalice,BTC,5\nalice,ETH,7\nbob,BTC,3\ncarol,ETH,1\nx/y,BTC,2\n"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("por")
    (d / "l.csv").write_text(CSV)
    assert main(["keygen", "--out", str(d / "svc.key")]) == 0
    keys = [
        {
            "key_id": "cold-1",
            "scheme": "schnorr-bip340",
            "secret_key": "11" * 32,
            "balances": {"BTC": "10"},
            "address": "bc1pexample",
        },
        {
            "key_id": "hot-1",
            "scheme": "ecdsa-secp256k1",
            "secret_key": "22" * 32,
            "balances": {"ETH": "8"},
        },
    ]
    (d / "keys.json").write_text(json.dumps(keys))
    args = [
        "build",
        "--liabilities",
        str(d / "l.csv"),
        "--out",
        str(d / "out"),
        "--service-key",
        str(d / "svc.key"),
        "--custody-keys",
        str(d / "keys.json"),
        "--snapshot-id",
        "por-test",
        "--cutoff",
        "2024-06-30T00:00:00Z",
    ]
    assert main(args) == 0
    assert main(args) == 2  # refuses to overwrite
    from nacl.signing import SigningKey

    pub = bytes(SigningKey(bytes.fromhex((d / "svc.key").read_text().strip())).verify_key).hex()
    return d / "out", pub


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_verify_each_customer(
    dry_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, pub = dry_run
    files = sorted(p.name for p in (out / "proofs").iterdir())
    assert files == ["alice.json", "bob.json", "carol.json", "x782f79.json"]
    for name in files:
        rc = main(
            [
                "verify",
                "--snapshot",
                str(out / "snapshot.json"),
                "--proof",
                str(out / "proofs" / name),
                "--service-key",
                pub,
                "--json",
            ]
        )
        assert rc == 0
        assert _last_json(capsys)["ok"] is True
    rc = main(
        [
            "verify",
            "--snapshot",
            str(out / "snapshot.json"),
            "--proof",
            str(out / "proofs" / "alice.json"),
            "--expect",
            "BTC=5",
            "--expect",
            "ETH=7",
            "--customer-id",
            "alice",
        ]
    )
    assert rc == 0


def test_verify_failure_has_one_line_reason(
    dry_run: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, _ = dry_run
    proof = json.loads((out / "proofs" / "bob.json").read_text())
    proof["balances"]["BTC"] = "4"
    (tmp_path / "p.json").write_text(json.dumps(proof))
    rc = main(
        ["verify", "--snapshot", str(out / "snapshot.json"), "--proof", str(tmp_path / "p.json")]
    )
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"FAIL {ReasonCode.ROOT_MISMATCH.value}: ")
    rc = main(
        [
            "verify",
            "--snapshot",
            str(out / "snapshot.json"),
            "--proof",
            str(tmp_path / "nope"),
            "--json",
        ]
    )
    assert rc == 2
    assert _last_json(capsys) == {"ok": False, "code": "POR_IO", "detail": _last_detail(tmp_path)}


def _last_detail(tmp_path: Path) -> str:
    return f"cannot read {tmp_path / 'nope'}: No such file or directory"


def test_audit(dry_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    out, pub = dry_run
    assert (
        main(["audit", "--snapshot", str(out / "snapshot.json"), "--json", "--service-key", pub])
        == 0
    )
    report = _last_json(capsys)
    assert report["assets"] == {
        "BTC": {"unit_exponent": 0, "liabilities": "10", "reserves": "10", "surplus": "0"},
        "ETH": {"unit_exponent": 0, "liabilities": "8", "reserves": "8", "surplus": "0"},
    }
    assert main(["audit", "--snapshot", str(out / "snapshot.json"), "--assets", "BTC,ETH"]) == 0
    assert (
        main(
            [
                "audit",
                "--snapshot",
                str(out / "snapshot.json"),
                "--service-key",
                "ab" * 32,
                "--json",
            ]
        )
        == 1
    )
    assert _last_json(capsys)["code"] == "POR_UNTRUSTED_SERVICE_KEY"


def test_build_rejects_bad_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "k").write_text("00" * 32)
    for body, code in [
        ("customer_id,asset,amount\na,BTC,-1\n", "POR_BALANCE_RANGE"),
        ("customer_id,asset,amount\na,BTC,18446744073709551616\n", "POR_BALANCE_RANGE"),
        ("customer_id,asset,amount\na,BTC,1\na,BTC,2\n", "POR_DUPLICATE_CUSTOMER"),
        ("id,asset,amount\n", "POR_MALFORMED"),
    ]:
        (tmp_path / "l.csv").write_text(body)
        rc = main(
            [
                "build",
                "--liabilities",
                str(tmp_path / "l.csv"),
                "--out",
                str(tmp_path / "o"),
                "--service-key",
                str(tmp_path / "k"),
                "--snapshot-id",
                "s",
                "--cutoff",
                "2024-01-01T00:00:00Z",
                "--json",
            ]
        )
        assert rc == 2
        assert _last_json(capsys)["code"] == code
        assert not (tmp_path / "o").exists()
