"""Chain-specific halves of a reservation: the unsigned transaction(s) and the
resources they take (an Ethereum nonce, Bitcoin coins), inside the reserving
transaction so that two concurrent payments never take the same ones."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from custody.payments.errors import PaymentCode, PaymentError
from custody.payments.models import NonceRow, UtxoRow
from custody.payments.provider import KeyInfo
from custody.payments.spec import PaymentSpec
from policy.payloads import PayloadError, interpret
from policy.payloads import bitcoin as btc
from policy.payloads import ethereum as eth
from policy.payloads.addresses import p2tr_script, script_to_address
from policy.payloads.chains import CHAINS

ETH_TRANSFER_GAS = 21_000
ERC20_TRANSFER_GAS = 65_000


@dataclass(frozen=True, slots=True)
class Built:
    payloads: tuple[bytes, ...]
    fee: int
    fee_asset: str
    from_address: str
    nonce: int | None = None
    utxos: tuple[tuple[str, int], ...] = ()


def _invalid(exc: PayloadError) -> PaymentError:
    return PaymentError(PaymentCode.PAYMENT_INVALID, str(exc))


def from_address(spec: PaymentSpec, key: KeyInfo) -> str:
    chain = CHAINS[spec.chain]
    if chain.family == "ethereum":
        if key.scheme != "ecdsa-secp256k1":
            raise PaymentError(PaymentCode.KEY_SCHEME_MISMATCH, "Ethereum needs an ECDSA key")
        return eth.address_of(key.public_key)
    if key.scheme != "schnorr-bip340":
        raise PaymentError(PaymentCode.KEY_SCHEME_MISMATCH, "Taproot needs a BIP340 key")
    return script_to_address(chain, p2tr_script(btc.taproot_output_key(key.public_key)))


def build_ethereum(session: Session, spec: PaymentSpec, key: KeyInfo) -> Built:
    """An EIP-1559 transfer (native, or ERC-20 ``transfer`` for a registered token),
    with the sending address's next nonce."""
    chain = CHAINS[spec.chain]
    sender = from_address(spec, key)
    asset = spec.resolved_asset
    try:
        if asset == chain.native_asset:
            to, value, data, gas = spec.destination, spec.amount, b"", ETH_TRANSFER_GAS
        elif asset in chain.tokens:
            data = eth.erc20_transfer_data(spec.destination, spec.amount)
            to, value, gas = chain.tokens[asset], 0, ERC20_TRANSFER_GAS
        else:
            raise PaymentError(PaymentCode.PAYMENT_INVALID, f"no {asset} on {chain.name}")
        row = session.get(NonceRow, (chain.name, sender.lower()), with_for_update=True)
        if row is None:
            row = NonceRow(chain=chain.name, address=sender.lower(), next_nonce=0)
            session.add(row)
        nonce = row.next_nonce
        payload = eth.build_eip1559(
            chain_id=chain.eip155_chain_id,
            nonce=nonce,
            to=to,
            value=value,
            gas=spec.gas or gas,
            max_fee_per_gas=spec.max_fee_per_gas,
            max_priority_fee_per_gas=spec.max_priority_fee_per_gas,
            data=data,
        )
        found = interpret("transfer", chain.name, asset, payload)
    except PayloadError as exc:
        raise _invalid(exc) from None
    row.next_nonce = nonce + 1
    return Built((payload,), found.fee, chain.native_asset, sender, nonce=nonce)


def release_nonce(session: Session, chain: str, address: str, nonce: int) -> None:
    """Give a never-signed nonce back when it is the last one taken; an earlier one
    stays a gap that the next broadcast must fill (documented in docs/payments.md)."""
    row = session.get(NonceRow, (chain, address.lower()), with_for_update=True)
    if row is not None and row.next_nonce == nonce + 1:
        row.next_nonce = nonce


def build_bitcoin(session: Session, spec: PaymentSpec, key: KeyInfo) -> Built:
    """A Taproot key-path spend of the wallet's largest unspent coins (fewest inputs),
    with change back to the wallet's own address."""
    chain = CHAINS[spec.chain]
    if spec.resolved_asset != chain.native_asset:
        raise PaymentError(PaymentCode.PAYMENT_INVALID, f"no {spec.asset} on {chain.name}")
    sender = from_address(spec, key)
    own = p2tr_script(btc.taproot_output_key(key.public_key))
    coins = (
        session.execute(
            select(UtxoRow)
            .where(
                UtxoRow.tenant == spec.tenant,
                UtxoRow.wallet_id == spec.wallet_id,
                UtxoRow.state == "unspent",
            )
            .order_by(UtxoRow.amount.desc(), UtxoRow.txid, UtxoRow.vout)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    spend = None
    for n in range(1, len(coins) + 1):
        if sum(c.amount for c in coins[:n]) < spec.amount:
            continue
        try:
            spend = btc.build_p2tr_spend(
                chain,
                utxos=[(btc.OutPoint.from_hex(c.txid, c.vout), c.amount) for c in coins[:n]],
                own_script=own,
                destination=spec.destination,
                amount=spec.amount,
                fee_rate=spec.fee_rate,
            )
            break
        except PayloadError as exc:
            if exc.field != "utxos":
                raise _invalid(exc) from None
    if spend is None:
        raise PaymentError(
            PaymentCode.INSUFFICIENT_UTXOS, "unspent coins do not cover amount and fee"
        )
    used = coins[: len(spend.tx.inputs)]
    for coin in used:
        coin.state = "reserved"
        coin.payment_id = spec.payment_id
    payloads = tuple(spend.payloads())
    found = interpret("transfer", chain.name, chain.native_asset, payloads[0])
    return Built(
        payloads,
        found.fee,
        chain.native_asset,
        sender,
        utxos=tuple((c.txid, c.vout) for c in used),
    )
