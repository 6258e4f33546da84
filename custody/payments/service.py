"""The withdrawal state machine (``docs/payments.md``)::

    create ──reserve──> RESERVED ──signatures, assemble──> SETTLED   (outbox row)
                           │
                           └──refused / invalid signature──> RELEASED

1. **Reserve**, one transaction: the payment row, its unsigned transaction(s), the
   nonce or coins it takes, and the ledger entry moving ``amount`` from the customer
   to their pending account. Refused with ``INSUFFICIENT_FUNDS`` (customer, wallet net
   of payments in flight, or the operator's fee funds) before anything is signed.
2. **Sign**: one :class:`~policy.request.SigningRequest` per payload, whose claimed
   type/asset/destination/amount are what :func:`policy.payloads.interpret` decodes,
   so the nodes' own decoding agrees; request ids ``payment:<id>:<input>`` make retries
   idempotent. Each signature is checked locally before it is kept.
3. **Settle**, one transaction: the outbox row (the broadcast boundary), the ledger
   entry (pending -> wallet outflow, fees -> wallet for the network fee), coins spent
   and the change coin added.
4. **Release** on a definitive refusal: reverse the reservation, free coins and nonce.

Fees are paid by the operator: the customer is charged ``amount``; the network fee
is an expense (``fees``) funded by the operator's ``equity`` in the wallet, so the
wallet never holds less than what customers are owed (Proof of Reserves).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from coincurve import PublicKey, PublicKeyXOnly
from eth_utils.crypto import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session

from custody.ledger import journal
from custody.ledger.journal import Entry, Leg
from custody.ledger.store import LedgerStore
from custody.payments import builders
from custody.payments.errors import PaymentCode, PaymentError
from custody.payments.models import (
    OutboxRow,
    PaymentInputRow,
    PaymentRow,
    UtxoRow,
)
from custody.payments.provider import (
    KeyInfo,
    SignatureProvider,
    SignedResult,
    SigningRefused,
    SigningUnavailable,
)
from custody.payments.spec import Payment, PaymentSpec, wallet_id
from policy.payloads import PayloadError, interpret
from policy.payloads import bitcoin as btc
from policy.payloads import ethereum as eth
from policy.payloads.chains import CHAINS
from policy.request import SigningRequest
from signer_nodes.mpc.bip32 import parse_path


class PaymentStore(LedgerStore):
    """The ledger plus the payments tables, in one database (both the coordinator
    role's, created by its migrations)."""

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


def _entry_id(payment: PaymentRow | PaymentSpec, step: str) -> str:
    return f"payment/{payment.tenant}/{payment.payment_id}/{step}"


class PaymentService:
    """Creates, signs, settles and releases withdrawals. Thread- and process-safe:
    every state change is one serialised write transaction of the store."""

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
        self._check_wallet(s, spec, asset, built.fee, built.fee_asset)
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
            wallet_id=spec.wallet_id,
            from_address=built.from_address,
            nonce=built.nonce,
            state="RESERVED",
            created_unix=int(self.clock()),
        )
        s.add(row)
        s.flush()
        s.add_all(
            PaymentInputRow(
                tenant=spec.tenant, payment_id=spec.payment_id, input_index=i, payload=p
            )
            for i, p in enumerate(built.payloads)
        )
        journal.post(
            s,
            Entry(
                _entry_id(spec, "reserve"),
                "reserve",
                (
                    Leg(
                        journal.customer(spec.tenant, spec.customer_id, asset),
                        journal.pending(spec.tenant, spec.customer_id, asset),
                        spec.amount,
                        memo=f"withdrawal to {spec.destination}",
                    ),
                ),
            ),
        )
        return row

    def _check_wallet(
        self, s: Session, spec: PaymentSpec, asset: str, fee: int, fee_asset: str
    ) -> None:
        """Under the write lock: the wallet covers this payment on top of the ones in
        flight, and the operator's funds (equity - fees paid - fees in flight) cover
        the network fee."""
        need = {asset: spec.amount}
        need[fee_asset] = need.get(fee_asset, 0) + fee
        inflight: dict[str, int] = {}
        inflight_fees = 0
        for amount, p_asset, p_fee, p_fee_asset in s.execute(
            select(PaymentRow.amount, PaymentRow.asset, PaymentRow.fee, PaymentRow.fee_asset).where(
                PaymentRow.wallet_id == spec.wallet_id, PaymentRow.state == "RESERVED"
            )
        ):
            inflight[p_asset] = inflight.get(p_asset, 0) + int(amount)
            inflight[p_fee_asset] = inflight.get(p_fee_asset, 0) + int(p_fee)
            if p_fee_asset == fee_asset:
                inflight_fees += int(p_fee)
        for a, n in need.items():
            held = journal.balance_at(s, journal.wallet(spec.tenant, spec.wallet_id, a))
            if held - inflight.get(a, 0) < n:
                raise PaymentError(
                    PaymentCode.INSUFFICIENT_FUNDS,
                    f"wallet {spec.wallet_id} holds {held} {a}, {inflight.get(a, 0)} in flight",
                )
        operator = journal.balance_at(s, journal.equity(spec.tenant, fee_asset)) - (
            journal.balance_at(s, journal.fees(spec.tenant, fee_asset))
        )
        if operator - inflight_fees < fee:
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
            inputs = list(
                s.execute(
                    select(PaymentInputRow)
                    .where(
                        PaymentInputRow.tenant == tenant, PaymentInputRow.payment_id == payment_id
                    )
                    .order_by(PaymentInputRow.input_index)
                ).scalars()
            )
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
            if not _signature_ok(row, key, item.payload, result):
                return self._release(
                    tenant, payment_id, "SIGNATURE_INVALID", "provider returned a bad signature"
                )
            self._keep(tenant, payment_id, item.input_index, result)
            signatures.append(result)
        raw, txid = _assemble(row, inputs[0].payload, signatures)
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
            row.error_code, row.error_message = code, message[:1000]

    def _settle(self, tenant: str, payment_id: str, raw: bytes, txid: str) -> Payment:
        with self.store.write() as s:
            row = s.get(PaymentRow, (tenant, payment_id))
            assert row is not None
            if row.state != "RESERVED":  # a concurrent create/resume finished first
                return Payment.from_row(row)
            wallet = journal.wallet(tenant, row.wallet_id, row.asset)
            legs = [
                Leg(
                    journal.pending(tenant, row.customer_id, row.asset),
                    wallet,
                    row.amount,
                    memo=f"{row.chain} {txid}",
                )
            ]
            if row.fee:
                legs.append(
                    Leg(
                        journal.fees(tenant, row.fee_asset),
                        journal.wallet(tenant, row.wallet_id, row.fee_asset),
                        row.fee,
                        memo="network fee",
                    )
                )
            journal.post(s, Entry(_entry_id(row, "settle"), "settle", tuple(legs)))
            if CHAINS[row.chain].family == "bitcoin":
                _spend_coins(s, row, txid)
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

    def _release(self, tenant: str, payment_id: str, code: str, message: str) -> Payment:
        with self.store.write() as s:
            row = s.get(PaymentRow, (tenant, payment_id))
            assert row is not None
            if row.state != "RESERVED":
                return Payment.from_row(row)
            journal.post(
                s,
                Entry(
                    _entry_id(row, "release"),
                    "release",
                    (
                        Leg(
                            journal.pending(tenant, row.customer_id, row.asset),
                            journal.customer(tenant, row.customer_id, row.asset),
                            row.amount,
                            memo=code,
                        ),
                    ),
                ),
            )
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
            row.state, row.error_code, row.error_message = "RELEASED", code, message[:1000]
            s.flush()
            return Payment.from_row(row)


def _signature_ok(row: PaymentRow, key: KeyInfo, payload: bytes, result: SignedResult) -> bool:
    """Check a signature before it is kept, with libsecp256k1: an ECDSA signature must
    be low-s and recover to the key; a Taproot one must verify as BIP340 under the
    spent output's key. A bad signature is never stored, so it cannot wedge a payment."""
    if len(result.signature) != 64:
        return False
    found = interpret("transfer", row.chain, row.asset, payload)
    if found.signing == "schnorr":
        spend, index = btc.decode_payload(payload)
        output_key = spend.prevouts[index].script_pubkey[2:]
        return bool(PublicKeyXOnly(output_key).verify(result.signature, found.digest))
    s_value = int.from_bytes(result.signature[32:], "big")
    if result.recovery_id not in (0, 1) or not 0 < s_value <= eth.SECP256K1_ORDER // 2:
        return False
    try:
        recovered = PublicKey.from_signature_and_message(
            result.signature + bytes([result.recovery_id]), found.digest, hasher=None
        )
    except ValueError:
        return False
    return bool(recovered.format() == PublicKey(key.public_key).format())


def _assemble(row: PaymentRow, payload: bytes, signatures: list[SignedResult]) -> tuple[bytes, str]:
    try:
        if CHAINS[row.chain].family == "ethereum":
            (sig,) = signatures
            assert sig.recovery_id is not None
            r = int.from_bytes(sig.signature[:32], "big")
            s = int.from_bytes(sig.signature[32:], "big")
            raw = eth.assemble_signed(payload, r, s, sig.recovery_id)
            return raw, "0x" + bytes(keccak(raw)).hex()
        raw = btc.assemble_witness(payload, [sig.signature for sig in signatures])
        spend, _ = btc.decode_payload(payload)
        return raw, spend.tx.txid()
    except PayloadError as exc:  # pragma: no cover - signatures were checked above
        raise PaymentError(PaymentCode.PAYMENT_INVALID, str(exc)) from None


def _spend_coins(s: Session, row: PaymentRow, txid: str) -> None:
    """Coins of the payment become spent; a change output back to the wallet becomes
    a new (unconfirmed) coin of it."""
    for coin in s.execute(
        select(UtxoRow).where(
            UtxoRow.tenant == row.tenant,
            UtxoRow.payment_id == row.payment_id,
            UtxoRow.state == "reserved",
        )
    ).scalars():
        coin.state = "spent"
    inputs = list(
        s.execute(
            select(PaymentInputRow.payload).where(
                PaymentInputRow.tenant == row.tenant,
                PaymentInputRow.payment_id == row.payment_id,
                PaymentInputRow.input_index == 0,
            )
        ).scalars()
    )
    spend, _ = btc.decode_payload(inputs[0])
    own = spend.prevouts[0].script_pubkey
    for vout, out in enumerate(spend.tx.outputs):
        if out.script_pubkey == own:
            s.add(
                UtxoRow(
                    txid=txid,
                    vout=vout,
                    chain=row.chain,
                    tenant=row.tenant,
                    wallet_id=row.wallet_id,
                    amount=out.value,
                    state="unspent",
                )
            )


__all__ = ["PaymentService", "PaymentStore"]
