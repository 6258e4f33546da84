"""Withdrawals that consume threshold signatures: reserve in the ledger, build the
chain payload, sign through a :class:`SignatureProvider`, assemble, put in the outbox,
settle or release. ``docs/payments.md``."""

from custody.payments.errors import PaymentCode, PaymentError
from custody.payments.provider import (
    KeyInfo,
    SignatureProvider,
    SignedResult,
    SigningRefused,
    SigningUnavailable,
)
from custody.payments.service import PaymentService, PaymentStore
from custody.payments.spec import Payment, PaymentSpec

__all__ = [
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
