"""Strict input rows for snapshots: ``(customer_id, asset, amount)`` from CSV or any iterable.

Liabilities are the one input of a snapshot that nobody can check afterwards: a
row dropped or misread here is simply absent from the tree. So every row is
checked before anything is built or signed, and every failure names where it
happened (``CSV line 7: ...`` or, for rows from a ledger, ``row 7: ...``) with a
stable reason code:

* customer id: 1 to 1024 bytes of UTF-8 (``docs/por-format.md`` section 2), no
  control characters and no leading or trailing whitespace (``" alice"`` next to
  ``"alice"`` is a copy-paste error, not a second customer): ``POR_MALFORMED``;
* asset: ``[A-Z0-9][A-Z0-9._-]{0,31}`` (section 1): ``POR_MALFORMED``;
* amount: an integer in the asset's **minor unit** (satoshi, wei), in ``[0, 2^256)``;
  in CSV exactly the decimal digits, no sign, no leading zeros, no spaces: out of
  range ``POR_BALANCE_RANGE``, otherwise ``POR_MALFORMED``;
* converted to the asset's PoR unit by rounding **up** (:func:`proofs.units.liability_units`),
  the result must be below 2^64: otherwise ``POR_BALANCE_RANGE``, with the unit to
  declare instead;
* a repeated ``(customer, asset)`` pair is ``POR_DUPLICATE_CUSTOMER`` rather than
  summed, so that a double-posted export is noticed, not published.

CSV (RFC 4180 via :mod:`csv`) has the header ``customer_id,asset,amount``; a UTF-8
byte-order mark is accepted. Custody balances use the same rules with the header
``key_id,asset,amount`` (optionally ``key_id,address,asset,amount``).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from proofs import encoding as enc
from proofs import fields as f
from proofs import units
from proofs.errors import PorInputError, ReasonCode

LIABILITIES_HEADER = ("customer_id", "asset", "amount")
CUSTODY_HEADERS = (("key_id", "asset", "amount"), ("key_id", "address", "asset", "amount"))
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,77}")
_OUT_OF_RANGE = re.compile(r"-?[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Row:
    """One validated input row; ``where`` locates it for error messages."""

    where: str
    name: str
    asset: str
    amount: int
    address: str | None = None


def _err(code: ReasonCode, where: str, detail: str) -> PorInputError:
    return PorInputError(code, f"{where}: {detail}")


def check_customer_id(customer_id: object, where: str) -> str:
    if not isinstance(customer_id, str):
        raise _err(ReasonCode.MALFORMED, where, "customer id must be text")
    try:
        size = len(customer_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise _err(ReasonCode.MALFORMED, where, "customer id is not valid UTF-8") from None
    if not 1 <= size <= enc.MAX_ID_BYTES:
        raise _err(
            ReasonCode.MALFORMED, where, f"customer id must be 1 to {enc.MAX_ID_BYTES} bytes"
        )
    if customer_id != customer_id.strip():
        raise _err(ReasonCode.MALFORMED, where, f"customer id {customer_id[:40]!r} has spaces")
    if any(unicodedata.category(c) == "Cc" for c in customer_id):
        raise _err(ReasonCode.MALFORMED, where, "customer id has control characters")
    return customer_id


def check_asset(asset: object, where: str) -> str:
    if not isinstance(asset, str) or not f.ASSET_RE.fullmatch(asset):
        raise _err(
            ReasonCode.MALFORMED,
            where,
            f"asset {str(asset)[:40]!r} is not [A-Z0-9][A-Z0-9._-]{{0,31}}",
        )
    return asset


def check_amount(amount: object, where: str) -> int:
    """A minor amount (satoshi, wei): an int in ``[0, 2^256)``."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise _err(ReasonCode.MALFORMED, where, f"amount {amount!r} is not an integer")
    if not 0 <= amount < units.MINOR_LIMIT:
        raise _err(ReasonCode.BALANCE_RANGE, where, f"amount {amount} not in [0, 2^256)")
    return amount


def to_units(amount: int, asset: str, exponent: int, where: str, *, round_up: bool) -> int:
    """``amount`` (minor units) in PoR units of ``10^exponent``, which must be below 2^64.

    Liabilities round up, reserves down (:mod:`proofs.units`); either way a result of
    2^64 or more is ``POR_BALANCE_RANGE`` naming the unit that would fit.
    """
    n = (units.liability_units if round_up else units.reserve_units)(amount, exponent)
    if n < enc.U64_LIMIT:
        return n
    if exponent == 0:
        detail = f"{asset} amount {amount} not in [0, 2^64)"
    else:
        detail = (
            f"{asset} amount {amount} is {n} units of {units.describe(exponent)}, not below 2^64"
        )
    fits = next(
        e for e in range(exponent, units.MAX_EXPONENT + 1) if amount // 10**e < enc.U64_LIMIT - 1
    )
    raise _err(
        ReasonCode.BALANCE_RANGE,
        where,
        f"{detail}; declare a larger unit for {asset} (exponent {fits} or more)",
    )


def parse_amount_text(text: str, where: str) -> int:
    """A CSV amount in minor units: canonical decimal digits only."""
    if _DECIMAL.fullmatch(text):
        return check_amount(int(text), where)
    if _OUT_OF_RANGE.fullmatch(text):  # negative, or more than 78 digits
        raise _err(ReasonCode.BALANCE_RANGE, where, f"amount {text[:30]!r} not in [0, 2^256)")
    raise _err(
        ReasonCode.MALFORMED,
        where,
        f"amount {text[:30]!r} is not a decimal integer (digits only, no sign or leading zeros)",
    )


def liability_rows(
    rows: Iterable[Row | tuple[str, str, int]], unit_exponents: Mapping[str, int] | None = None
) -> dict[str, dict[str, int]]:
    """Validate rows into ``{customer_id: {asset: PoR units}}`` (input order kept).

    Amounts are minor units, converted by rounding up to the unit of
    ``unit_exponents[asset]`` (0 for an asset not named). Plain tuples (from a ledger)
    are located as ``row <i>`` (1-based); rows read from CSV carry their line number.
    """
    exponents = unit_exponents or {}
    out: dict[str, dict[str, int]] = {}
    for i, row in enumerate(rows, start=1):
        if isinstance(row, Row):
            where, cid, asset, amount = row.where, row.name, row.asset, row.amount
        else:
            where = f"row {i}"
            if not isinstance(row, tuple) or len(row) != 3:
                raise _err(ReasonCode.MALFORMED, where, "expected (customer_id, asset, amount)")
            cid, asset, amount = row
        balances = out.setdefault(check_customer_id(cid, where), {})
        if check_asset(asset, where) in balances:
            raise _err(ReasonCode.DUPLICATE_CUSTOMER, where, f"repeated {cid[:40]!r} / {asset}")
        minor = check_amount(amount, where)
        balances[asset] = to_units(minor, asset, exponents.get(asset, 0), where, round_up=True)
    if not out:
        raise PorInputError(ReasonCode.EMPTY, "no liabilities rows")
    return out


def read_csv(path: str | Path, headers: Iterable[tuple[str, ...]]) -> Iterator[list[str]]:
    """Rows of a CSV file after its header (one of ``headers``), each prefixed by its line.

    Yields ``[where, field, ...]``; raises :class:`PorInputError` with the line number
    for a wrong header, a wrong field count, or a file that is not UTF-8 CSV.
    """
    allowed = [list(h) for h in headers]
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            try:
                header = next(reader, None)
                if header not in allowed:
                    expected = " or ".join(",".join(h) for h in allowed)
                    raise _err(
                        ReasonCode.MALFORMED, f"{path}: CSV line 1", f"header must be {expected}"
                    )
                assert header is not None
                for row in reader:
                    where = f"{path}: CSV line {reader.line_num}"
                    if len(row) != len(header):
                        raise _err(
                            ReasonCode.MALFORMED,
                            where,
                            f"expected {len(header)} fields ({','.join(header)}), got {len(row)}",
                        )
                    yield [where, *row]
            except csv.Error as exc:
                raise _err(
                    ReasonCode.MALFORMED, f"{path}: CSV line {reader.line_num}", str(exc)
                ) from None
            except UnicodeDecodeError:
                raise _err(
                    ReasonCode.MALFORMED, f"{path}: CSV line {reader.line_num + 1}", "not UTF-8"
                ) from None
    except OSError as exc:
        raise PorInputError(ReasonCode.IO, f"cannot read {path}: {exc.strerror}") from exc


def read_liabilities_csv(path: str | Path) -> Iterator[Row]:
    """``customer_id,asset,amount`` rows, each checked and located by its line."""
    for where, cid, asset, text in read_csv(path, [LIABILITIES_HEADER]):
        yield Row(
            where,
            check_customer_id(cid, where),
            check_asset(asset, where),
            parse_amount_text(text, where),
        )


def read_custody_csv(path: str | Path) -> dict[str, tuple[str | None, dict[str, int]]]:
    """Custody balances per key: ``{key_id: (address, {asset: minor amount})}``, input order kept.

    The reserves of a snapshot are per custody key (each key proves control of what
    it holds), so the file names the key of every balance. ``address`` is optional
    (empty field or 3-column header) and must be the same on every row of a key.
    """
    out: dict[str, tuple[str | None, dict[str, int]]] = {}
    for row in read_csv(path, CUSTODY_HEADERS):
        where, key_id = row[0], row[1]
        address = (row[2] or None) if len(row) == 5 else None
        asset, text = row[-2], row[-1]
        if not f.ID_RE.fullmatch(key_id):
            raise _err(
                ReasonCode.MALFORMED,
                where,
                f"key id {key_id[:40]!r} is not [A-Za-z0-9._:-]{{1,128}}",
            )
        if address is not None and not (
            1 <= len(address) <= 128 and address.isprintable() and address.isascii()
        ):
            raise _err(
                ReasonCode.MALFORMED, where, "address must be 1 to 128 printable ASCII characters"
            )
        known_address, balances = out.setdefault(key_id, (address, {}))
        if address != known_address:
            raise _err(ReasonCode.MALFORMED, where, f"key {key_id} has two addresses")
        if check_asset(asset, where) in balances:
            raise _err(ReasonCode.DUPLICATE_KEY, where, f"repeated {key_id} / {asset}")
        balances[asset] = parse_amount_text(text, where)
    return out
