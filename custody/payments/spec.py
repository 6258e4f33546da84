"""What a withdrawal asks for (:class:`PaymentSpec`) and what it became (:class:`Payment`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from custody.payments.errors import PaymentCode, PaymentError
from custody.payments.models import PaymentRow
from policy.payloads.chains import CHAINS
from policy.request import MAX_AMOUNT, valid_identifier
from signer_nodes.mpc.bip32 import InvalidPathError, parse_path

GWEI = 10**9
FEE_PAYERS = ("customer", "operator")
DEFAULT_FEE_PAYER = "customer"


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentSpec:
    """One withdrawal of ``amount`` minor units of ``asset`` (default: the chain's
    native asset) from ``customer_id`` to ``destination``, signed by ``key_id`` at
    ``path``. Fee parameters: ``fee_rate`` sat/vB (Bitcoin); ``max_fee_per_gas``,
    ``max_priority_fee_per_gas`` wei and ``gas`` (default 21000, 65000 for ERC-20).

    ``fee_payer``: ``customer`` (the default, as institutions charge withdrawal fees) has
    the customer pay the network fee on top of ``amount``, in the chain's native asset
    (an ERC-20 withdrawal needs ETH for its gas); ``operator`` pays it from the
    operator's own funds (``docs/payments.md``, "Fees")."""

    payment_id: str
    tenant: str
    customer_id: str
    key_id: str
    path: str = "m"
    chain: str
    asset: str = ""
    destination: str
    amount: int
    fee_rate: int = 10
    max_fee_per_gas: int = 30 * GWEI
    max_priority_fee_per_gas: int = GWEI
    gas: int = 0
    fee_payer: str = DEFAULT_FEE_PAYER

    def __post_init__(self) -> None:
        for name in ("tenant", "customer_id", "key_id"):
            if not valid_identifier(getattr(self, name)):
                raise PaymentError(PaymentCode.PAYMENT_INVALID, f"{name}: not a valid identifier")
        if not valid_identifier(self.payment_id) or len(self.payment_id) > 100:
            raise PaymentError(PaymentCode.PAYMENT_INVALID, "payment_id: 1-100 identifier chars")
        if self.chain not in CHAINS:
            raise PaymentError(PaymentCode.PAYMENT_INVALID, f"unknown chain {self.chain!r}")
        try:
            parse_path(self.path)
        except InvalidPathError as exc:
            raise PaymentError(PaymentCode.PAYMENT_INVALID, f"path: {exc}") from None
        if isinstance(self.amount, bool) or not 0 < self.amount <= MAX_AMOUNT:
            raise PaymentError(PaymentCode.PAYMENT_INVALID, "amount: an integer in [1, 2^256)")
        for name in ("fee_rate", "max_fee_per_gas", "max_priority_fee_per_gas", "gas"):
            if not 0 <= getattr(self, name) < 1 << 64:
                raise PaymentError(PaymentCode.PAYMENT_INVALID, f"{name}: out of range")
        if self.max_priority_fee_per_gas > self.max_fee_per_gas:
            raise PaymentError(PaymentCode.PAYMENT_INVALID, "priority fee above max fee")
        if self.fee_payer not in FEE_PAYERS:
            raise PaymentError(
                PaymentCode.PAYMENT_INVALID, f"fee_payer: one of {', '.join(FEE_PAYERS)}"
            )

    @property
    def native_asset(self) -> str:
        return CHAINS[self.chain].native_asset

    @property
    def resolved_asset(self) -> str:
        return self.asset or self.native_asset

    @property
    def wallet_id(self) -> str:
        """The ledger's wallet: ``<chain>/<key>/<path>`` (one address per path)."""
        return wallet_id(self.chain, self.key_id, self.path)

    def params_hash(self) -> str:
        """What "the same payment" means for an idempotent retry: every field but the id.
        An operator-paid payment hashes without ``fee_payer``, as every payment did
        before the choice existed (they were all operator-paid), so those retry alike."""
        body = asdict(self) | {"asset": self.resolved_asset, "amount": str(self.amount)}
        del body["payment_id"]
        if self.fee_payer == "operator":
            del body["fee_payer"]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def wallet_id(chain: str, key_id: str, path: str) -> str:
    return f"{chain}/{key_id}/{path}"


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment as stored; ``raw_transaction`` is set once SETTLED. ``fee`` is the
    network fee booked at settlement (Ethereum: the maximum ``gas * max_fee_per_gas``),
    ``fee_paid`` what the chain took, once reported (:meth:`PaymentService.confirm`)."""

    tenant: str
    payment_id: str
    state: str
    customer_id: str
    key_id: str
    path: str
    chain: str
    asset: str
    destination: str
    amount: int
    fee: int
    fee_asset: str
    fee_payer: str
    fee_paid: int | None
    from_address: str
    nonce: int | None
    txid: str | None
    raw_transaction: bytes | None
    error_code: str | None
    error_message: str | None

    @classmethod
    def from_row(cls, row: PaymentRow) -> Payment:
        return cls(
            row.tenant,
            row.payment_id,
            row.state,
            row.customer_id,
            row.key_id,
            row.path,
            row.chain,
            row.asset,
            row.destination,
            row.amount,
            row.fee,
            row.fee_asset,
            row.fee_payer,
            row.fee_paid,
            row.from_address,
            row.nonce,
            row.txid,
            row.raw_transaction,
            row.error_code,
            row.error_message,
        )

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["amount"] = str(self.amount)
        out["fee"] = str(self.fee)
        out["fee_paid"] = None if self.fee_paid is None else str(self.fee_paid)
        raw = self.raw_transaction
        out["raw_transaction"] = raw.hex() if raw is not None else None
        return out
