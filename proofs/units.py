"""Proof-of-Reserves units: per asset, one PoR unit is ``10^e`` of the ledger's minor unit.

The tree holds every amount as a u64 (ARCHITECTURE.md section 5), but ledgers count
in minor units that do not fit: Ethereum amounts are in wei, so 18.5 ETH is
1.85 * 10^19 wei > 2^64. A snapshot of format version 2 therefore declares, per
asset, a unit exponent ``e`` (``docs/por-format.md`` section 1.1, "Units"): amounts in
the snapshot and proofs are in units of ``10^e`` minor units (ETH with ``e = 9`` is
counted in gwei; BTC with ``e = 0`` in satoshi). Converting is the one place where
value could be lost, so the direction of rounding is fixed and always conservative:

* liabilities round **up**: ``ceil(minor / 10^e)``, never understating what is owed;
* reserves round **down**: ``floor(minor / 10^e)``, never overstating what is held.

Hence, per asset, ``reserves_units >= liabilities_units`` implies
``true reserves >= 10^e * reserves_units >= 10^e * liabilities_units >= true
liabilities``: solvency shown in units is solvency in minor units.

Pure integer arithmetic on Python ints (no floats anywhere). Imports only the
standard library and :mod:`proofs` modules that obey the verifier rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proofs.errors import PorFormatError, ReasonCode

MAX_EXPONENT = 77
"""``10^77`` is the largest power of ten below ``2^256``, the range of ledger amounts."""
MINOR_LIMIT = 1 << 256
"""Minor amounts (ledger and on-chain amounts) are integers in ``[0, 2^256)``."""


def _scale(exponent: int) -> int:
    if isinstance(exponent, bool) or not isinstance(exponent, int):
        raise TypeError("a unit exponent is an int")
    if not 0 <= exponent <= MAX_EXPONENT:
        raise ValueError(f"unit exponent {exponent} not in [0, {MAX_EXPONENT}]")
    scale: int = 10**exponent
    return scale


def liability_units(minor: int, exponent: int) -> int:
    """``ceil(minor / 10^e)``: what a customer is owed, in PoR units, rounded up."""
    if minor < 0:
        raise ValueError("negative amount")
    return -(-minor // _scale(exponent))


def reserve_units(minor: int, exponent: int) -> int:
    """``floor(minor / 10^e)``: what a custody key holds, in PoR units, rounded down."""
    if minor < 0:
        raise ValueError("negative amount")
    return minor // _scale(exponent)


def describe(exponent: int) -> str:
    """``"10^9 minor units"`` (for error messages and reports)."""
    return "1 minor unit" if exponent == 0 else f"10^{exponent} minor units"


def parse_exponents(value: Any, assets: Sequence[str], where: str) -> tuple[int, ...]:
    """``{asset: e}`` with exactly the snapshot's assets, each ``e`` a JSON integer in
    ``[0, MAX_EXPONENT]``; returned in asset order. Anything else is ``POR_MALFORMED``."""
    if not isinstance(value, dict):
        raise PorFormatError(ReasonCode.MALFORMED, f"{where}: expected an object")
    if set(value) != set(assets):
        raise PorFormatError(
            ReasonCode.MALFORMED, f"{where}: assets {sorted(value)} differ from {list(assets)}"
        )
    out = []
    for asset in assets:
        e = value[asset]
        if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= MAX_EXPONENT:
            raise PorFormatError(
                ReasonCode.MALFORMED,
                f"{where}.{asset}: expected an integer in [0, {MAX_EXPONENT}]",
            )
        out.append(e)
    return tuple(out)


def exponents_json(assets: Sequence[str], exponents: Sequence[int]) -> dict[str, int]:
    return dict(zip(assets, exponents, strict=True))


def exponents_for(assets: Sequence[str], declared: Mapping[str, int] | None) -> tuple[int, ...]:
    """The exponent of every asset in ``assets``: ``declared`` or, if not declared, 0."""
    declared = declared or {}
    out = []
    for asset in assets:
        e = declared.get(asset, 0)
        _scale(e)
        out.append(e)
    return tuple(out)
