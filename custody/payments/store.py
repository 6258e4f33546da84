"""The payments' database: the ledger plus the payments tables (``models.py``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from custody.ledger import journal
from custody.ledger.journal import Entry, Leg
from custody.ledger.store import LedgerStore
from custody.payments.errors import PaymentCode, PaymentError
from custody.payments.models import OutboxRow, PaymentRow, UtxoRow
from custody.payments.spec import Payment, wallet_id
from policy.payloads import bitcoin as btc
from policy.payloads.chains import CHAINS


class PaymentStore(LedgerStore):
    """The ledger plus the payments tables, in one database (both the coordinator
    role's, created by its migrations). State changes of payments are made by
    :class:`~custody.payments.service.PaymentService`; this class records deposits
    and reads."""

    def deposit_coin(
        self,
        entry_id: str,
        tenant: str,
        customer_id: str | None,
        *,
        chain: str,
        key_id: str,
        path: str,
        txid: str,
        vout: int,
        amount: int,
    ) -> journal.Posted:
        """A Bitcoin deposit: record the coin and credit ``customer_id`` (or the
        operator's equity when ``None``) in one transaction."""
        if len(txid) != 64 or not all(c in "0123456789abcdef" for c in txid):
            raise PaymentError(PaymentCode.PAYMENT_INVALID, "txid: 64 lowercase hex digits")
        if not 0 <= vout < 1 << 32 or not 0 < amount <= btc.MAX_MONEY:
            raise PaymentError(PaymentCode.PAYMENT_INVALID, "vout or amount out of range")
        asset = CHAINS[chain].native_asset
        wallet = journal.wallet(tenant, wallet_id(chain, key_id, path), asset)
        credit = (
            journal.equity(tenant, asset)
            if customer_id is None
            else journal.customer(tenant, customer_id, asset)
        )
        entry = Entry(
            entry_id, "deposit" if customer_id else "fund", (Leg(wallet, credit, amount),)
        )
        with self.write() as s:
            posted = journal.post(s, entry)
            coin = s.get(UtxoRow, (txid, vout))
            if posted.replayed and coin is not None:
                return posted
            if coin is not None:
                raise PaymentError(PaymentCode.UTXO_EXISTS, f"{txid}:{vout} is already recorded")
            s.add(
                UtxoRow(
                    txid=txid,
                    vout=vout,
                    chain=chain,
                    tenant=tenant,
                    wallet_id=wallet.owner,
                    amount=amount,
                    state="unspent",
                )
            )
            return posted

    def get(self, tenant: str, payment_id: str) -> Payment:
        with self.transaction() as s:
            row = s.get(PaymentRow, (tenant, payment_id))
            if row is None:
                raise PaymentError(PaymentCode.PAYMENT_NOT_FOUND, f"no payment {payment_id}")
            return Payment.from_row(row)

    def outbox(self, state: str = "PENDING") -> list[dict[str, Any]]:
        """Signed transactions for the broadcaster, oldest first."""
        with self.transaction() as s:
            rows = s.execute(
                select(OutboxRow).where(OutboxRow.state == state).order_by(OutboxRow.id)
            ).scalars()
            return [
                {
                    "id": r.id,
                    "tenant": r.tenant,
                    "payment_id": r.payment_id,
                    "chain": r.chain,
                    "txid": r.txid,
                    "raw_transaction": r.raw_transaction.hex(),
                }
                for r in rows
            ]


__all__ = ["PaymentStore"]
