"""Input rows: every malformed CSV line or ledger row is refused with its location and code."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofs.build import Liabilities
from proofs.errors import PorInputError, ReasonCode
from proofs.rows import read_custody_csv

HEADER = "customer_id,asset,amount\n"


def _csv_error(tmp_path: Path, body: str) -> PorInputError:
    path = tmp_path / "l.csv"
    path.write_bytes(body.encode("utf-8") if isinstance(body, str) else body)
    with pytest.raises(PorInputError) as info:
        Liabilities.from_csv(path)
    return info.value


@pytest.mark.parametrize(
    ("body", "line", "code", "words"),
    [
        ("customer,asset,amount\n", 1, ReasonCode.MALFORMED, "header"),
        (HEADER + "a,BTC,1\nb,BTC\n", 3, ReasonCode.MALFORMED, "expected 3 fields"),
        (HEADER + "a,BTC,1\n\nb,BTC,1\n", 3, ReasonCode.MALFORMED, "got 0"),
        (HEADER + "a,BTC,1,9\n", 2, ReasonCode.MALFORMED, "got 4"),
        (HEADER + "a,btc,1\n", 2, ReasonCode.MALFORMED, "asset 'btc'"),
        (HEADER + ",BTC,1\n", 2, ReasonCode.MALFORMED, "1 to 1024 bytes"),
        (HEADER + "x" * 1025 + ",BTC,1\n", 2, ReasonCode.MALFORMED, "1 to 1024 bytes"),
        (HEADER + " a,BTC,1\n", 2, ReasonCode.MALFORMED, "spaces"),
        (HEADER + "a\x07,BTC,1\n", 2, ReasonCode.MALFORMED, "control"),
        (HEADER + "a,BTC,1.5\n", 2, ReasonCode.MALFORMED, "not a decimal integer"),
        (HEADER + "a,BTC,007\n", 2, ReasonCode.MALFORMED, "leading zeros"),
        (HEADER + "a,BTC, 7\n", 2, ReasonCode.MALFORMED, "not a decimal integer"),
        (HEADER + "a,BTC,\n", 2, ReasonCode.MALFORMED, "not a decimal integer"),
        (HEADER + "a,BTC,-1\n", 2, ReasonCode.BALANCE_RANGE, "not in [0, 2^256)"),
        (HEADER + "a,BTC,18446744073709551616\n", 2, ReasonCode.BALANCE_RANGE, "2^64"),
        (HEADER + "a,BTC,1\nb,ETH,2\na,BTC,3\n", 4, ReasonCode.DUPLICATE_CUSTOMER, "repeated"),
        (HEADER + 'a,BTC,1\n"b\nc,ETH,2\n', 4, ReasonCode.MALFORMED, "unexpected end of data"),
    ],
)
def test_bad_csv_line_is_named(
    tmp_path: Path, body: str, line: int, code: ReasonCode, words: str
) -> None:
    err = _csv_error(tmp_path, body)
    assert err.code is code
    assert f"CSV line {line}:" in err.detail and words in err.detail, err.detail


def test_not_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes(HEADER.encode() + b"a,BTC,1\n\xff,BTC,1\n")
    with pytest.raises(PorInputError) as info:
        Liabilities.from_csv(path)
    assert info.value.code is ReasonCode.MALFORMED and "not UTF-8" in info.value.detail
    with pytest.raises(PorInputError) as info:
        Liabilities.from_csv(tmp_path / "missing.csv")
    assert info.value.code is ReasonCode.IO


def test_empty_csv_is_refused(tmp_path: Path) -> None:
    assert _csv_error(tmp_path, HEADER).code is ReasonCode.EMPTY


def test_good_csv_with_bom_quotes_and_unicode(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("\ufeff" + HEADER + 'acme/zoë,BTC,0\n"acme/a,b",ETH,18446744073709551615\n')
    liab = Liabilities.from_csv(path)
    assert liab.customer_ids == ("acme/zoë", "acme/a,b")
    assert liab.assets == ("BTC", "ETH")
    assert liab.balances.tolist() == [[0, 0], [0, 2**64 - 1]]


@pytest.mark.parametrize(
    ("row", "code", "words"),
    [
        (("a", "BTC", -1), ReasonCode.BALANCE_RANGE, "row 2: amount -1"),
        (("a", "BTC", True), ReasonCode.MALFORMED, "row 2: amount True"),
        (("a", "BTC", 1.0), ReasonCode.MALFORMED, "row 2: amount 1.0"),
        ((1, "BTC", 1), ReasonCode.MALFORMED, "row 2: customer id must be text"),
        (("a", "BTC"), ReasonCode.MALFORMED, "row 2: expected (customer_id"),
        (("\ud800", "BTC", 1), ReasonCode.MALFORMED, "row 2: customer id is not valid UTF-8"),
        (("z", "BTC", 1), ReasonCode.DUPLICATE_CUSTOMER, "row 2: repeated"),
    ],
)
def test_ledger_rows_are_checked_like_csv(row: object, code: ReasonCode, words: str) -> None:
    with pytest.raises(PorInputError) as info:
        Liabilities.from_rows([("z", "BTC", 5), row])  # type: ignore[list-item]
    assert info.value.code is code and words in info.value.detail, info.value.detail


def test_custody_csv(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("key_id,address,asset,amount\nk1,bc1q,BTC,5\nk1,bc1q,ETH,0\nk2,,ETH,9\n")
    assert read_custody_csv(path) == {
        "k1": ("bc1q", {"BTC": 5, "ETH": 0}),
        "k2": (None, {"ETH": 9}),
    }
    for body, words in [
        ("key_id,asset,amount\nk 1,BTC,5\n", "CSV line 2: key id"),
        ("key_id,asset,amount\nk1,BTC,5\nk1,BTC,6\n", "CSV line 3: repeated k1 / BTC"),
        ("key_id,address,asset,amount\nk1,a,BTC,5\nk1,b,ETH,6\n", "CSV line 3: key k1 has two"),
        ("key_id,asset,amount\nk1,BTC,x\n", "CSV line 2: amount 'x'"),
        ("asset,amount\nBTC,5\n", "CSV line 1: header must be key_id,asset,amount or"),
    ]:
        path.write_text(body)
        with pytest.raises(PorInputError) as info:
            read_custody_csv(path)
        assert words in info.value.detail, info.value.detail
