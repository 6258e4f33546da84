"""Withdrawals that consume threshold signatures: reserve in the ledger (amount, and
the network fee when the customer pays it), build the chain payload, sign through a
:class:`SignatureProvider`, assemble, put in the outbox, settle, release or cancel.
``docs/payments.md``."""

from custody.payments.errors import PaymentCode, PaymentError
from custody.payments.provider import (
    Cancelling,
    CancelRefused,
    KeyInfo,
    SignatureProvider,
    SignedResult,
    SigningRefused,
    SigningUnavailable,
)
from custody.payments.service import PaymentService
from custody.payments.spec import Payment, PaymentSpec
from custody.payments.store import PaymentStore

__all__ = [
    "CancelRefused",
    "Cancelling",
    "KeyInfo",
    "Payment",
    "PaymentCode",
    "PaymentError",
    "PaymentService",
    "PaymentSpec",
    "PaymentStore",
    "SignatureProvider",
    "SignedResult",
    "SigningRefused",
    "SigningUnavailable",
]
