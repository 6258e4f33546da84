"""Stable refusal codes of payload interpretation.

A signer node derives what it signs from the structured payload; when the payload
does not parse, names another chain, or says something else than the request claims,
the node refuses with one of these codes. Like :class:`policy.errors.ReasonCode`, a
code is part of the interface (logs, audit records, the gRPC edge) and never changes
meaning. Messages name fields, never key material.
"""

from __future__ import annotations

from enum import StrEnum


class PayloadCode(StrEnum):
    PAYLOAD_INVALID = "PAYLOAD_INVALID"
    """The payload does not parse in the format its request type and chain require."""
    PAYLOAD_MISMATCH = "PAYLOAD_MISMATCH"
    """The request claims a destination, amount, asset or type the payload does not say."""
    PAYLOAD_UNSUPPORTED = "PAYLOAD_UNSUPPORTED"
    """A well-formed payload of a shape this service does not sign (contract creation,
    several destinations, a sighash type other than SIGHASH_DEFAULT...)."""
    UNSUPPORTED_CHAIN = "UNSUPPORTED_CHAIN"
    """The chain is not in :data:`policy.payloads.chains.CHAINS`."""
    CHAIN_MISMATCH = "CHAIN_MISMATCH"
    """The payload belongs to another network than the request's chain (EIP-155 chain id,
    address prefix)."""
    KEY_SCHEME_MISMATCH = "KEY_SCHEME_MISMATCH"
    """The key cannot sign this payload (an Ed25519 key for an Ethereum transaction, a
    Taproot input that the signing key does not own...)."""


class PayloadError(ValueError):
    """A refused payload; ``code`` is stable, ``field`` names the offending part."""

    def __init__(self, code: PayloadCode, message: str, *, field: str = "") -> None:
        self.code = code
        self.field = field
        super().__init__(f"{code}: {field + ': ' if field else ''}{message}")


def invalid(message: str, field: str = "") -> PayloadError:
    return PayloadError(PayloadCode.PAYLOAD_INVALID, message, field=field)


def unsupported(message: str, field: str = "") -> PayloadError:
    return PayloadError(PayloadCode.PAYLOAD_UNSUPPORTED, message, field=field)
