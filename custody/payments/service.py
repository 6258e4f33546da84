"""The withdrawal state machine (``docs/payments.md``)::

    create ──reserve──> RESERVED ──signatures, assemble──> SETTLED ──confirm──> (fee paid)
                           │                              (outbox row)
                           ├──refused / invalid signature──> RELEASED
                           └──cancel (waiting for approvals)──> CANCELLED

1. **Reserve**, one transaction: the payment row, its unsigned transaction(s), the
   nonce or coins it takes, and the ledger entry moving ``amount`` (and, when the
   customer pays it, the network fee) from the customer to their pending account.
   Refused with ``INSUFFICIENT_FUNDS`` (customer, wallet net of payments in flight, or
   the operator's fee funds) before anything is signed.
2. **Sign**: one :class:`~policy.request.SigningRequest` per payload, whose claimed
   type/asset/destination/amount are what :func:`policy.payloads.interpret` decodes,
   so the nodes' own decoding agrees; request ids ``payment:<id>:<input>`` make retries
   idempotent. Each signature is checked locally before it is kept.
3. **Settle**, one transaction: the outbox row (the broadcast boundary), the ledger
   entry (amount and network fee out of the wallet, the fee charged to its payer),
   coins spent and the change coin added.
4. **Release** on a definitive refusal: reverse the reservation, free coins and nonce.
5. **Cancel** while the signing request waits for approvals: the signing service
   cancels the request first (its initiator's signed cancellation, final in governance);
   only then the reservation is released, as in 4.
6. **Confirm**: a broadcaster reports the fee the chain took; the unused part of a fee
   booked at its maximum (Ethereum) goes back to whoever paid it.

Fees (``PaymentSpec.fee_payer``, :mod:`custody.payments.entries`): the customer pays
by default, charged amount + fee at reservation; or the operator pays from its own
funds (``equity`` minus ``fees``), so that either way the wallet never holds less than
what customers are owed (Proof of Reserves).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from custody.ledger import journal
from custody.payments import builders, entries
from custody.payments.assembly import assemble, signature_ok, spend_coins
from custody.payments.errors import PaymentCode, PaymentError
from custody.payments.models import OutboxRow, PaymentInputRow, PaymentRow, UtxoRow
from custody.payments.provider import (
    Cancelling,
    CancelRefused,
    KeyInfo,
    SignatureProvider,
    SignedResult,
    SigningRefused,
    SigningUnavailable,
)
from custody.payments.spec import Payment, PaymentSpec
from custody.payments.store import PaymentStore
from policy.payloads import interpret
from policy.payloads.chains import CHAINS
from policy.request import SigningRequest
from signer_nodes.mpc.bip32 import parse_path

CANCELLED_CODE = "PAYMENT_CANCELLED"
"""``error_code`` of a payment cancelled by :meth:`PaymentService.cancel`."""
_GOVERNANCE_CANCELLED = "REQUEST_CANCELLED"
"""The refusal a signing request cancelled in governance gets (a payment that finds its
request cancelled, e.g. after a cancel that stopped before releasing, ends CANCELLED)."""


class PaymentService:
    """Creates, signs, settles, releases, cancels and confirms withdrawals. Thread- and
    process-safe: every state change is one serialised write transaction of the store."""

    def __init__(
        self,
        store: PaymentStore,
        provider: SignatureProvider,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.provider = provider
        self.clock = clock

    # -- public --------------------------------------------------------------------

    def create(self, spec: PaymentSpec) -> Payment:
        """Reserve, sign, settle (or release). Idempotent on ``(tenant, payment_id)``:
        the same parameters return (or finish) the original payment; others are
        refused with ``PAYMENT_ID_REUSED``."""
        key = self._key(spec.key_id, spec.path)
        with self.store.write() as s:
            row = s.get(PaymentRow, (spec.tenant, spec.payment_id))
            if row is None:
                row = self._reserve(s, spec, key)
            elif row.params_hash != spec.params_hash():
                raise PaymentError(
                    PaymentCode.PAYMENT_ID_REUSED,
                    f"payment {spec.payment_id} exists with other parameters",
                )
            state = row.state
        if state != "RESERVED":
            return self.store.get(spec.tenant, spec.payment_id)
        return self._sign_and_settle(spec.tenant, spec.payment_id, key)

    def resume(self, tenant: str, payment_id: str) -> Payment:
        """Finish a payment left RESERVED (e.g. after ``SIGNING_UNAVAILABLE``)."""
        payment = self.store.get(tenant, payment_id)
        if payment.state != "RESERVED":
            return payment
        return self._sign_and_settle(tenant, payment_id, self._key(payment.key_id, payment.path))

    def cancel(self, tenant: str, payment_id: str) -> Payment:
        """Cancel a RESERVED payment whose signing request waits for approvals, and
        release its funds (state ``CANCELLED``, error code ``PAYMENT_CANCELLED``).

        The provider cancels the request at the signing service first and returns only
        when it is final there (no approval is accepted for it any more and the
        coordinator will not sign it); the funds are released after that, never before.
        A request refused meanwhile (rejected, expired) is released as :meth:`resume`
        would (``RELEASED`` with its code). Refused, changing nothing:
        ``PAYMENT_ALREADY_CANCELLED``, ``PAYMENT_ALREADY_RELEASED``,
        ``PAYMENT_ALREADY_SIGNED`` (settled, or an input is signed),
        ``PAYMENT_NOT_CANCELLABLE`` (approved or being signed, nothing waiting for
        approvals, or a provider that cannot cancel), ``SIGNING_UNAVAILABLE``."""
        with self.store.transaction() as s:
            row = s.get(PaymentRow, (tenant, payment_id))
            if row is None:
                raise PaymentError(PaymentCode.PAYMENT_NOT_FOUND, f"no payment {payment_id}")
            inputs = _inputs(s, tenant, payment_id)
            _check_cancellable(row, inputs)
            first = inputs[0]  # signed in order, none signed: the one being signed
        if not isinstance(self.provider, Cancelling):
            raise PaymentError(
                PaymentCode.PAYMENT_NOT_CANCELLABLE, "this signing provider cannot cancel"
            )
        try:
            self.provider.cancel(self._request(row, first.input_index, first.payload))
        except CancelRefused as exc:
            code = (
                PaymentCode.PAYMENT_ALREADY_SIGNED
                if exc.code == "REQUEST_SIGNED"
                else PaymentCode.PAYMENT_NOT_CANCELLABLE
            )
            raise PaymentError(code, str(exc)) from None
        except SigningRefused as exc:
            return self._release(tenant, payment_id, exc.code, str(exc))
        except SigningUnavailable as exc:
            raise PaymentError(PaymentCode.SIGNING_UNAVAILABLE, str(exc)) from None
        return self._release(
            tenant,
            payment_id,
            CANCELLED_CODE,
            f"cancelled by {self.provider.initiator} while waiting for approvals",
            cancel=True,
        )

    def confirm(self, tenant: str, payment_id: str, fee_paid: int) -> Payment:
        """:func:`confirm` on this service's store (no signing involved)."""
        return confirm(self.store, tenant, payment_id, fee_paid)

    # -- steps ---------------------------------------------------------------------

    def _key(self, key_id: str, path: str) -> KeyInfo:
        try:
            return self.provider.key(key_id, path)
        except SigningUnavailable as exc:
            raise PaymentError(PaymentCode.SIGNING_UNAVAILABLE, str(exc)) from None

    def _reserve(self, s: Session, spec: PaymentSpec, key: KeyInfo) -> PaymentRow:
        family = CHAINS[spec.chain].family
        build = builders.build_ethereum if family == "ethereum" else builders.build_bitcoin
        built = build(s, spec, key)
        asset = spec.resolved_asset
        row = PaymentRow(
            tenant=spec.tenant,
            payment_id=spec.payment_id,
            params_hash=spec.params_hash(),
            customer_id=spec.customer_id,
            key_id=spec.key_id,
            path=spec.path,
            chain=spec.chain,
            asset=asset,
            destination=spec.destination,
            amount=spec.amount,
            fee=built.fee,
            fee_asset=built.fee_asset,
            fee_payer=spec.fee_payer,
            wallet_id=spec.wallet_id,
            from_address=built.from_address,
            nonce=built.nonce,
            state="RESERVED",
            created_unix=int(self.clock()),
        )
        journal.post(s, entries.reserve(row))  # the customer's overdraft check, first
        self._check_wallet(s, spec, asset, built.fee, built.fee_asset)
        s.add(row)
        s.flush()
        s.add_all(
            PaymentInputRow(
                tenant=spec.tenant, payment_id=spec.payment_id, input_index=i, payload=p
            )
            for i, p in enumerate(built.payloads)
        )
        return row

    def _check_wallet(
        self, s: Session, spec: PaymentSpec, asset: str, fee: int, fee_asset: str
    ) -> None:
        """Under the write lock: the wallet covers this payment's amount and fee on top
        of the payments in flight, and, when the operator pays the fee, the operator's
        funds (equity - fees paid - operator-paid fees in flight) cover it too."""
        need = {asset: spec.amount}
        need[fee_asset] = need.get(fee_asset, 0) + fee
        inflight: dict[str, int] = {}
        operator_inflight = 0
        for amount, p_asset, p_fee, p_fee_asset, payer in s.execute(
            select(
                PaymentRow.amount,
                PaymentRow.asset,
                PaymentRow.fee,
                PaymentRow.fee_asset,
                PaymentRow.fee_payer,
            ).where(PaymentRow.wallet_id == spec.wallet_id, PaymentRow.state == "RESERVED")
        ):
            inflight[p_asset] = inflight.get(p_asset, 0) + int(amount)
            inflight[p_fee_asset] = inflight.get(p_fee_asset, 0) + int(p_fee)
            if payer == "operator" and p_fee_asset == fee_asset:
                operator_inflight += int(p_fee)
        for a, n in need.items():
            held = journal.balance_at(s, journal.wallet(spec.tenant, spec.wallet_id, a))
            if held - inflight.get(a, 0) < n:
                raise PaymentError(
                    PaymentCode.INSUFFICIENT_FUNDS,
                    f"wallet {spec.wallet_id} holds {held} {a}, {inflight.get(a, 0)} in flight",
                )
        if spec.fee_payer != "operator":
            return
        operator = journal.balance_at(s, journal.equity(spec.tenant, fee_asset)) - (
            journal.balance_at(s, journal.fees(spec.tenant, fee_asset))
        )
        if operator - operator_inflight < fee:
            raise PaymentError(
                PaymentCode.INSUFFICIENT_FUNDS,
                f"operator funds for {fee_asset} network fees do not cover {fee}",
            )

    def _request(self, row: PaymentRow, index: int, payload: bytes) -> SigningRequest:
        found = interpret("transfer", row.chain, row.asset, payload)
        return SigningRequest(
            request_id=f"payment:{row.payment_id}:{index}",
            tenant=row.tenant,
            initiator=self.provider.initiator,
            key_id=row.key_id,
            derivation_path=parse_path(row.path),
            request_type=found.request_type,
            chain=row.chain,
            asset=found.asset,
            destination=found.destination,
            amount=found.amount,
            payload=payload,
            created_at=row.created_unix,
        )

    def _sign_and_settle(self, tenant: str, payment_id: str, key: KeyInfo) -> Payment:
        with self.store.transaction() as s:
            row = s.get(PaymentRow, (tenant, payment_id))
            assert row is not None
            inputs = _inputs(s, tenant, payment_id)
        if row.state != "RESERVED":  # finished (or cancelled) by another caller
            return Payment.from_row(row)
        signatures: list[SignedResult] = []
        for item in inputs:
            if item.signature is not None:
                signatures.append(SignedResult(item.signature, item.recovery_id))
                continue
            request = self._request(row, item.input_index, item.payload)
            try:
                result = self.provider.sign(request)
            except SigningRefused as exc:
                return self._release(tenant, payment_id, exc.code, str(exc))
            except SigningUnavailable as exc:
                self._note(tenant, payment_id, exc.code, str(exc))
                raise PaymentError(PaymentCode.SIGNING_UNAVAILABLE, str(exc)) from None
            if not signature_ok(row, key, item.payload, result):
                return self._release(
                    tenant, payment_id, "SIGNATURE_INVALID", "provider returned a bad signature"
                )
            self._keep(tenant, payment_id, item.input_index, result)
            signatures.append(result)
        raw, txid = assemble(row, inputs[0].payload, signatures)
        return self._settle(tenant, payment_id, raw, txid)

    def _keep(self, tenant: str, payment_id: str, index: int, result: SignedResult) -> None:
        with self.store.write() as s:
            item = s.get(PaymentInputRow, (tenant, payment_id, index))
            assert item is not None
            item.signature = result.signature
            item.recovery_id = result.recovery_id

    def _note(self, tenant: str, payment_id: str, code: str, message: str) -> None:
        with self.store.write() as s:
            row = s.get(PaymentRow, (tenant, payment_id))
            assert row is not None
            if row.state == "RESERVED":
                row.error_code, row.error_message = code, message[:1000]

    def _settle(self, tenant: str, payment_id: str, raw: bytes, txid: str) -> Payment:
        with self.store.write() as s:
            row = s.get(PaymentRow, (tenant, payment_id))
            assert row is not None
            if row.state != "RESERVED":  # a concurrent create/resume finished first
                return Payment.from_row(row)
            journal.post(s, entries.settle(row, txid))
            if CHAINS[row.chain].family == "bitcoin":
                spend_coins(s, row, txid)
            s.add(
                OutboxRow(
                    tenant=tenant,
                    payment_id=payment_id,
                    chain=row.chain,
                    txid=txid,
                    raw_transaction=raw,
                )
            )
            row.state, row.raw_transaction, row.txid = "SETTLED", raw, txid
            row.error_code = row.error_message = None
            s.flush()
            return Payment.from_row(row)

    def _release(
        self, tenant: str, payment_id: str, code: str, message: str, *, cancel: bool = False
    ) -> Payment:
        """Undo the reservation (one transaction). ``cancel``: the signing service
        confirmed the cancellation; a payment holding a signature is never released
        that way (``PAYMENT_ALREADY_SIGNED``)."""
        with self.store.write() as s:
            row = s.get(PaymentRow, (tenant, payment_id))
            assert row is not None
            if row.state != "RESERVED":
                return Payment.from_row(row)
            if cancel and any(i.signature is not None for i in _inputs(s, tenant, payment_id)):
                raise PaymentError(
                    PaymentCode.PAYMENT_ALREADY_SIGNED, f"payment {payment_id} holds a signature"
                )
            journal.post(s, entries.release(row, code))
            for coin in s.execute(
                select(UtxoRow).where(
                    UtxoRow.tenant == tenant,
                    UtxoRow.payment_id == payment_id,
                    UtxoRow.state == "reserved",
                )
            ).scalars():
                coin.state, coin.payment_id = "unspent", None
            if row.nonce is not None:
                builders.release_nonce(s, row.chain, row.from_address, row.nonce)
            cancelled = cancel or code == _GOVERNANCE_CANCELLED
            row.state = "CANCELLED" if cancelled else "RELEASED"
            row.error_code, row.error_message = code, message[:1000]
            s.flush()
            return Payment.from_row(row)


def confirm(store: PaymentStore, tenant: str, payment_id: str, fee_paid: int) -> Payment:
    """A broadcaster reports the settled transaction included, having paid
    ``fee_paid`` (Ethereum: ``gasUsed * effectiveGasPrice`` of the receipt). The
    part of the booked fee the chain did not take goes back to the fee's payer
    (:func:`custody.payments.entries.refund`). Idempotent for the same fee;
    ``PAYMENT_NOT_SETTLED``, ``PAYMENT_ALREADY_CONFIRMED``, ``FEE_INVALID``."""
    if isinstance(fee_paid, bool) or not isinstance(fee_paid, int) or fee_paid < 0:
        raise PaymentError(PaymentCode.FEE_INVALID, "fee_paid: a non-negative integer")
    with store.write() as s:
        row = s.get(PaymentRow, (tenant, payment_id))
        if row is None:
            raise PaymentError(PaymentCode.PAYMENT_NOT_FOUND, f"no payment {payment_id}")
        if row.fee_paid is not None:
            if row.fee_paid == fee_paid:
                return Payment.from_row(row)
            raise PaymentError(
                PaymentCode.PAYMENT_ALREADY_CONFIRMED,
                f"payment {payment_id} was confirmed with fee {row.fee_paid}",
            )
        if row.state != "SETTLED":
            raise PaymentError(
                PaymentCode.PAYMENT_NOT_SETTLED, f"payment {payment_id} is {row.state}"
            )
        if fee_paid > row.fee:
            raise PaymentError(
                PaymentCode.FEE_INVALID, f"{fee_paid} is above the signed maximum {row.fee}"
            )
        if CHAINS[row.chain].family == "bitcoin" and fee_paid != row.fee:
            raise PaymentError(
                PaymentCode.FEE_INVALID, f"the signed transaction's fee is {row.fee}"
            )
        if fee_paid < row.fee:
            journal.post(s, entries.refund(row, row.fee - fee_paid))
        row.fee_paid = fee_paid
        for out in s.execute(
            select(OutboxRow).where(
                OutboxRow.tenant == tenant,
                OutboxRow.payment_id == payment_id,
                OutboxRow.state == "PENDING",
            )
        ).scalars():
            out.state = "SENT"  # included, so certainly sent
        s.flush()
        return Payment.from_row(row)


def _inputs(s: Session, tenant: str, payment_id: str) -> list[PaymentInputRow]:
    return list(
        s.execute(
            select(PaymentInputRow)
            .where(PaymentInputRow.tenant == tenant, PaymentInputRow.payment_id == payment_id)
            .order_by(PaymentInputRow.input_index)
        ).scalars()
    )


def _check_cancellable(row: PaymentRow, inputs: list[PaymentInputRow]) -> None:
    """What the payment's own state already says about a cancel (the signing service
    is asked next)."""
    pid = row.payment_id
    if row.state == "CANCELLED":
        raise PaymentError(PaymentCode.PAYMENT_ALREADY_CANCELLED, f"payment {pid} is cancelled")
    if row.state == "SETTLED":
        raise PaymentError(
            PaymentCode.PAYMENT_ALREADY_SIGNED, f"payment {pid} is signed (txid {row.txid})"
        )
    if row.state == "RELEASED":
        raise PaymentError(
            PaymentCode.PAYMENT_ALREADY_RELEASED,
            f"payment {pid} was released ({row.error_code})",
        )
    signed = [i.input_index for i in inputs if i.signature is not None]
    if signed:
        raise PaymentError(
            PaymentCode.PAYMENT_ALREADY_SIGNED, f"input {signed[0]} of payment {pid} is signed"
        )


__all__ = ["CANCELLED_CODE", "PaymentService", "PaymentStore", "confirm"]
