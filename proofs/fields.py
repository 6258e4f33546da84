"""Strict parsers for the JSON field types of the format (hex, amounts, ids).

Published files are untrusted input: every field is checked for type, length and
range here and turned into a :class:`~proofs.errors.PorFormatError` with a stable
code, never a ``KeyError`` or ``ValueError`` escaping to the caller
(ARCHITECTURE.md section 6, invariant 9). Amounts are JSON *strings* of decimal
digits because u64 values exceed the 2^53 integers that JSON parsers agree on.

Imports only the standard library and :mod:`proofs.errors` (verifier rule).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from proofs.encoding import SUPPORTED_VERSIONS, U64_LIMIT
from proofs.errors import PorFormatError, ReasonCode
from proofs.units import MINOR_LIMIT

_AMOUNT_RE = re.compile(r"-?(0|[1-9][0-9]*)")
_HEX_RE = re.compile(r"[0-9a-f]*")
ASSET_RE = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")
ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def malformed(detail: str) -> PorFormatError:
    return PorFormatError(ReasonCode.MALFORMED, detail)


def get(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``obj[key]`` if present and of JSON type ``kind`` (bool is not an int)."""
    if key not in obj:
        raise malformed(f"{where}: missing field {key!r}")
    value = obj[key]
    if kind is int and isinstance(value, bool):
        raise malformed(f"{where}.{key}: expected integer")
    if not isinstance(value, kind):
        raise malformed(f"{where}.{key}: expected {kind.__name__}")
    return value


def check_keys(obj: Mapping[str, Any], required: set[str], optional: set[str], where: str) -> None:
    """Reject unknown fields: an unsigned extra field would be an unverified claim."""
    extra = set(obj) - required - optional
    if extra:
        raise malformed(f"{where}: unknown field(s) {sorted(extra)}")
    missing = required - set(obj)
    if missing:
        raise malformed(f"{where}: missing field(s) {sorted(missing)}")


def parse_hex(value: Any, length: int | None, where: str) -> bytes:
    """Lower-case hex of exactly ``length`` bytes (any even length if ``None``)."""
    if not isinstance(value, str) or not _HEX_RE.fullmatch(value) or len(value) % 2:
        raise malformed(f"{where}: expected lower-case hex")
    raw = bytes.fromhex(value)
    if length is not None and len(raw) != length:
        raise malformed(f"{where}: expected {length} bytes, got {len(raw)}")
    return raw


def parse_amount(value: Any, where: str) -> int:
    """A u64 amount written as a decimal string; out of range is ``POR_BALANCE_RANGE``."""
    if not isinstance(value, str) or not _AMOUNT_RE.fullmatch(value) or value == "-0":
        raise malformed(f"{where}: expected a decimal string")
    if len(value) > 21:
        raise PorFormatError(ReasonCode.BALANCE_RANGE, f"{where}: {value[:24]}... out of range")
    amount = int(value)
    if not 0 <= amount < U64_LIMIT:
        raise PorFormatError(ReasonCode.BALANCE_RANGE, f"{where}: {value} not in [0, 2^64)")
    return amount


def parse_minor_amount(value: Any, where: str) -> int:
    """An exact minor amount (e.g. wei) in ``[0, 2^256)``, as a decimal string."""
    if not isinstance(value, str) or not _AMOUNT_RE.fullmatch(value) or value == "-0":
        raise malformed(f"{where}: expected a decimal string")
    if len(value) > 78:
        raise PorFormatError(ReasonCode.BALANCE_RANGE, f"{where}: {value[:24]}... out of range")
    amount = int(value)
    if not 0 <= amount < MINOR_LIMIT:
        raise PorFormatError(ReasonCode.BALANCE_RANGE, f"{where}: {value} not in [0, 2^256)")
    return amount


def parse_assets(value: Any, where: str) -> tuple[str, ...]:
    """The asset list: non-empty, each matching ``ASSET_RE``, strictly ascending."""
    if not isinstance(value, list) or not value:
        raise malformed(f"{where}: expected a non-empty list")
    for asset in value:
        if not isinstance(asset, str) or not ASSET_RE.fullmatch(asset):
            raise malformed(f"{where}: bad asset name {asset!r}")
    if any(a >= b for a, b in itertools.pairwise(value)):
        raise malformed(f"{where}: assets must be sorted and unique")
    return tuple(value)


def parse_amount_map(value: Any, assets: Sequence[str], where: str) -> tuple[int, ...]:
    """``{asset: amount}`` with exactly the snapshot's assets, returned in asset order."""
    if not isinstance(value, dict):
        raise malformed(f"{where}: expected an object")
    if set(value) != set(assets):
        raise malformed(f"{where}: assets {sorted(value)} differ from {list(assets)}")
    return tuple(parse_amount(value[a], f"{where}.{a}") for a in assets)


def amount_map(assets: Sequence[str], amounts: Sequence[int]) -> dict[str, str]:
    return {a: str(v) for a, v in zip(assets, amounts, strict=True)}


def parse_amount_list(value: Any, width: int, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != width:
        raise malformed(f"{where}: expected a list of {width} amounts")
    return tuple(parse_amount(v, f"{where}[{i}]") for i, v in enumerate(value))


def supported_versions_text() -> str:
    return " and ".join(map(str, SUPPORTED_VERSIONS))


def check_version(obj: Mapping[str, Any], fmt: str, where: str) -> int:
    """``format`` must name the file kind; ``version`` must be one this code reads."""
    if get(obj, "format", str, where) != fmt:
        raise malformed(f"{where}: format is not {fmt!r}")
    version: int = get(obj, "version", int, where)
    if version not in SUPPORTED_VERSIONS:
        raise PorFormatError(
            ReasonCode.UNSUPPORTED_VERSION,
            f"{where}: format version {version} is not supported"
            f" (this verifier reads versions {supported_versions_text()})",
        )
    return version
