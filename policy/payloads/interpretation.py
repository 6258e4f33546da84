"""What a signer node learns from a structured payload: :class:`Interpretation`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from policy.request import RequestType

Signing = Literal["ecdsa", "schnorr", "eddsa"]
"""The signature algorithm the payload calls for: secp256k1 ECDSA over a 32-byte hash,
BIP340 Schnorr, or Ed25519 (RFC 8032)."""

KEY_SCHEMES: dict[str, Signing] = {
    "ecdsa-secp256k1": "ecdsa",
    "schnorr-bip340": "schnorr",
    "eddsa-ed25519": "eddsa",
}
"""Key schemes of the service (``custody key create --scheme``) and what they sign."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Interpretation:
    """The decoded meaning of a payload, and exactly what to sign for it.

    ``digest`` is the input of the signing algorithm: the 32-byte hash an ECDSA
    signature is computed over, the 32-byte BIP341 sighash a Taproot key-path
    signature signs as its BIP340 message, or the 32-byte domain-separated message
    digest (see :mod:`policy.payloads.messages`). ``taproot_merkle_root`` is ``None``
    unless the signature is for a Taproot output key, in which case the key is tweaked
    per BIP341 with this merkle root (``b""`` for a key-path-only output);
    it is the ``tweak`` of the FROST BIP340 signing package.

    ``destination``/``amount``/``asset`` are what the policy evaluates: the recipient
    in the chain's canonical form, in minor units of ``asset``. ``fee`` is the most
    the transaction can pay the network, in minor units of ``fee_asset`` (Ethereum:
    ``gas * max_fee_per_gas``; Bitcoin: inputs minus outputs, exactly).
    """

    request_type: RequestType
    chain: str
    asset: str
    destination: str
    amount: int
    digest: bytes
    signing: Signing
    taproot_merkle_root: bytes | None = None
    fee: int = 0
    fee_asset: str = ""

    def __post_init__(self) -> None:
        if len(self.digest) != 32:
            raise ValueError("digest: 32 bytes")
        if self.amount < 0 or self.fee < 0:
            raise ValueError("amount and fee are non-negative")
