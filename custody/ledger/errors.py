"""Stable error codes of the ledger (and of the payments built on it)."""

from __future__ import annotations

from enum import StrEnum


class LedgerCode(StrEnum):
    ENTRY_ID_REUSED = "ENTRY_ID_REUSED"
    """An entry id was posted before with different content (same content is a no-op)."""
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    """The entry would take an account below zero (in its normal direction)."""
    ENTRY_INVALID = "ENTRY_INVALID"
    """Malformed entry: no legs, mixed tenants, a leg between one account, a bad id."""
    AMOUNT_INVALID = "AMOUNT_INVALID"
    """An amount outside [1, 2^256) or a balance that would leave [0, 2^256)."""
    ACCOUNT_INVALID = "ACCOUNT_INVALID"
    """An account reference with an unknown kind or invalid identifiers."""


class LedgerError(Exception):
    """A refused ledger operation; nothing was written. ``code`` is stable."""

    def __init__(self, code: LedgerCode, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")
