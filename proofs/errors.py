"""Stable reason codes and the exception hierarchy of the Proof-of-Reserves package.

Every failure carries one :class:`ReasonCode`. The codes are part of the published
format (``docs/por-format.md`` lists them): an auditor's script may branch on them,
so a code is never renamed or reused for another meaning; new failures get new codes.

The exceptions are split by whose fault the failure is, after h11's
``LocalProtocolError``/``RemoteProtocolError``:

* :class:`PorInputError`: the *builder* was given bad liabilities or keys
  (operator mistake; nothing was published);
* :class:`PorFormatError`: a published file does not parse or is out of range;
* :class:`PorVerificationError`: the files parse but do not prove what they claim
  (wrong hash, wrong sum, wrong signature, insolvency).

This module imports only the standard library: the standalone verifier depends on it.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    """Stable, documented reason codes (``docs/por-format.md`` section "Reason codes")."""

    MALFORMED = "POR_MALFORMED"
    UNSUPPORTED_VERSION = "POR_UNSUPPORTED_VERSION"
    BALANCE_RANGE = "POR_BALANCE_RANGE"
    OVERFLOW = "POR_OVERFLOW"
    SNAPSHOT_MISMATCH = "POR_SNAPSHOT_MISMATCH"
    INDEX_OUT_OF_RANGE = "POR_INDEX_OUT_OF_RANGE"
    PATH_LENGTH = "POR_PATH_LENGTH"
    PADDING_MISMATCH = "POR_PADDING_MISMATCH"
    ROOT_MISMATCH = "POR_ROOT_MISMATCH"
    TOTALS_MISMATCH = "POR_TOTALS_MISMATCH"
    CUSTOMER_MISMATCH = "POR_CUSTOMER_MISMATCH"
    BALANCE_MISMATCH = "POR_BALANCE_MISMATCH"
    CHALLENGE_MISMATCH = "POR_CHALLENGE_MISMATCH"
    BAD_SIGNATURE = "POR_BAD_SIGNATURE"
    UNTRUSTED_SERVICE_KEY = "POR_UNTRUSTED_SERVICE_KEY"
    BAD_CONTROL_SIGNATURE = "POR_BAD_CONTROL_SIGNATURE"
    DUPLICATE_KEY = "POR_DUPLICATE_KEY"
    RESERVES_MISMATCH = "POR_RESERVES_MISMATCH"
    UNKNOWN_ASSET = "POR_UNKNOWN_ASSET"
    INSOLVENT = "POR_INSOLVENT"
    UNIT_ROUNDING = "POR_UNIT_ROUNDING"
    DUPLICATE_CUSTOMER = "POR_DUPLICATE_CUSTOMER"
    EMPTY = "POR_EMPTY"
    IO = "POR_IO"


class PorError(Exception):
    """Base of all Proof-of-Reserves failures; ``code`` is stable, ``detail`` is for humans."""

    __slots__ = ("code", "detail")

    def __init__(self, code: ReasonCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail


class PorInputError(PorError):
    """The builder was given unusable input (duplicate customer, bad amount, bad key file)."""


class PorFormatError(PorError):
    """A snapshot or proof file does not match the documented format."""


class PorVerificationError(PorError):
    """The files are well formed but do not prove inclusion, control or solvency."""
