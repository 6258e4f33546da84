"""What turns signatures into a transaction: the local check of every signature
before it is kept, assembly of the signed transaction, and the coins it spends and
creates."""

from __future__ import annotations

from coincurve import PublicKey, PublicKeyXOnly
from eth_utils.crypto import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session

from custody.payments.errors import PaymentCode, PaymentError
from custody.payments.models import PaymentInputRow, PaymentRow, UtxoRow
from custody.payments.provider import KeyInfo, SignedResult
from policy.payloads import PayloadError, interpret
from policy.payloads import bitcoin as btc
from policy.payloads import ethereum as eth
from policy.payloads.chains import CHAINS


def signature_ok(row: PaymentRow, key: KeyInfo, payload: bytes, result: SignedResult) -> bool:
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


def assemble(row: PaymentRow, payload: bytes, signatures: list[SignedResult]) -> tuple[bytes, str]:
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


def spend_coins(s: Session, row: PaymentRow, txid: str) -> None:
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


__all__ = ["assemble", "signature_ok", "spend_coins"]
