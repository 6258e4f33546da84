"""Stable error codes of payments (ledger codes such as ``INSUFFICIENT_FUNDS`` pass
through unchanged as :class:`custody.ledger.LedgerError`)."""

from __future__ import annotations

from enum import StrEnum


class PaymentCode(StrEnum):
    PAYMENT_INVALID = "PAYMENT_INVALID"
    """Bad input: unknown chain or asset, malformed address, amount, path or id."""
    PAYMENT_ID_REUSED = "PAYMENT_ID_REUSED"
    """The payment id exists with other parameters (same parameters: the original)."""
    PAYMENT_NOT_FOUND = "PAYMENT_NOT_FOUND"
    KEY_NOT_FOUND = "KEY_NOT_FOUND"
    """The signing service has no such key for the tenant."""
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    """The custody wallet (net of withdrawals in flight) or the operator's fee funds
    cannot cover the payment."""
    INSUFFICIENT_UTXOS = "INSUFFICIENT_UTXOS"
    """The Bitcoin wallet's unspent, unreserved coins do not cover amount and fee."""
    KEY_SCHEME_MISMATCH = "KEY_SCHEME_MISMATCH"
    """The key cannot sign for the chain (Ethereum: ecdsa-secp256k1; Bitcoin Taproot:
    schnorr-bip340)."""
    UTXO_EXISTS = "UTXO_EXISTS"
    """A deposit names an outpoint that is already recorded."""
    SIGNING_UNAVAILABLE = "SIGNING_UNAVAILABLE"
    """Signing's outcome is unknown; the payment stays reserved (``resume`` it)."""


class PaymentError(Exception):
    def __init__(self, code: PaymentCode, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")
