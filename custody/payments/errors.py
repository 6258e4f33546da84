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
    PAYMENT_ALREADY_SIGNED = "PAYMENT_ALREADY_SIGNED"
    """Cancel: the payment is settled (in the outbox), or a signature for one of its
    inputs exists; nothing was changed."""
    PAYMENT_ALREADY_CANCELLED = "PAYMENT_ALREADY_CANCELLED"
    PAYMENT_ALREADY_RELEASED = "PAYMENT_ALREADY_RELEASED"
    """Cancel: signing was refused earlier and the funds are already back."""
    PAYMENT_NOT_CANCELLABLE = "PAYMENT_NOT_CANCELLABLE"
    """Cancel: no signing request of the payment waits for approvals (it is approved or
    being signed, or none was submitted yet); nothing was changed."""
    PAYMENT_NOT_SETTLED = "PAYMENT_NOT_SETTLED"
    """Confirm: only a settled payment's transaction can have been included."""
    PAYMENT_ALREADY_CONFIRMED = "PAYMENT_ALREADY_CONFIRMED"
    """Confirm: the payment was confirmed with another fee."""
    FEE_INVALID = "FEE_INVALID"
    """Confirm: a fee above the one signed for (Ethereum: gas * max_fee_per_gas), or a
    Bitcoin fee other than the signed transaction's."""


class PaymentError(Exception):
    def __init__(self, code: PaymentCode, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")
