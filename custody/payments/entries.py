"""The journal entries of one withdrawal, for either fee payer (``docs/payments.md``,
"Fees"). Every entry is made of legs, so each balances per asset by construction; the
order of the legs matters only because each leg is applied, and checked for overdraft,
in turn.

With ``amount`` of ``asset`` and a network fee ``fee`` of ``fee_asset`` (the chain's
native asset; equal to ``asset`` except for ERC-20 withdrawals):

* ``reserve``: customer -> pending: amount; customer pays: also customer -> pending: fee;
* ``settle``: pending -> wallet: amount; fees -> wallet: fee; customer pays: also
  pending -> fees: fee (the recharge);
* ``release``: pending -> customer: amount; customer pays: also pending -> customer: fee;
* ``refund``: customer pays: fees -> customer: unused; always wallet -> fees: unused.

(``a -> b: x`` is one leg: debit ``a``, credit ``b``.)

``fees`` is the operator's network-fee expense. A customer-paid fee passes through it
(expense, then its recharge to the customer), so the fees account's legs show every
network fee while its balance, the operator's cost, is unchanged. ``refund`` returns
the part of an Ethereum fee booked at its maximum (``gas * max_fee_per_gas``) that
the chain did not take, once a broadcaster reports the fee paid.
"""

from __future__ import annotations

from custody.ledger import journal
from custody.ledger.journal import Entry, Leg
from custody.payments.models import PaymentRow


def entry_id(row: PaymentRow, step: str) -> str:
    return f"payment/{row.tenant}/{row.payment_id}/{step}"


def _customer_pays(row: PaymentRow) -> bool:
    return row.fee_payer == "customer" and row.fee > 0


def reserve(row: PaymentRow) -> Entry:
    """Hold the customer's funds: the amount, and the fee when the customer pays it.
    Posting it is the overdraft check (the customer's available balance covers both)."""
    t, c = row.tenant, row.customer_id
    legs = [
        Leg(
            journal.customer(t, c, row.asset),
            journal.pending(t, c, row.asset),
            row.amount,
            memo=f"withdrawal to {row.destination}",
        )
    ]
    if _customer_pays(row):
        legs.append(
            Leg(
                journal.customer(t, c, row.fee_asset),
                journal.pending(t, c, row.fee_asset),
                row.fee,
                memo="network fee (maximum)",
            )
        )
    return Entry(entry_id(row, "reserve"), "reserve", tuple(legs))


def settle(row: PaymentRow, txid: str) -> Entry:
    """The signed transaction leaves the wallet: the amount and the network fee."""
    t, c = row.tenant, row.customer_id
    legs = [
        Leg(
            journal.pending(t, c, row.asset),
            journal.wallet(t, row.wallet_id, row.asset),
            row.amount,
            memo=f"{row.chain} {txid}",
        )
    ]
    if row.fee:
        legs.append(
            Leg(
                journal.fees(t, row.fee_asset),
                journal.wallet(t, row.wallet_id, row.fee_asset),
                row.fee,
                memo="network fee",
            )
        )
    if _customer_pays(row):
        legs.append(
            Leg(
                journal.pending(t, c, row.fee_asset),
                journal.fees(t, row.fee_asset),
                row.fee,
                memo=f"network fee charged to {c}",
            )
        )
    return Entry(entry_id(row, "settle"), "settle", tuple(legs))


def release(row: PaymentRow, code: str) -> Entry:
    """Undo :func:`reserve`: nothing was signed, everything held goes back."""
    t, c = row.tenant, row.customer_id
    legs = [
        Leg(journal.pending(t, c, row.asset), journal.customer(t, c, row.asset), row.amount, code)
    ]
    if _customer_pays(row):
        legs.append(
            Leg(
                journal.pending(t, c, row.fee_asset),
                journal.customer(t, c, row.fee_asset),
                row.fee,
                memo=f"{code}: network fee",
            )
        )
    return Entry(entry_id(row, "release"), "release", tuple(legs))


def refund(row: PaymentRow, unused: int) -> Entry:
    """Book back the part of the settled fee the chain did not take: the wallet holds
    it, and it belongs to whoever paid the fee (the fees account's recharge first, so
    that account never dips below zero between the legs)."""
    t = row.tenant
    legs = []
    if row.fee_payer == "customer":
        legs.append(
            Leg(
                journal.fees(t, row.fee_asset),
                journal.customer(t, row.customer_id, row.fee_asset),
                unused,
                memo="unused network fee returned",
            )
        )
    legs.append(
        Leg(
            journal.wallet(t, row.wallet_id, row.fee_asset),
            journal.fees(t, row.fee_asset),
            unused,
            memo="network fee not taken",
        )
    )
    return Entry(entry_id(row, "refund"), "refund", tuple(legs))
