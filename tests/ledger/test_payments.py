"""Withdrawals end to end: reserve, real threshold signing, assembly, outbox, settle or
release; the outputs checked with libraries that share no code with ours."""

from __future__ import annotations

import dataclasses
import secrets
import threading

import pytest
from embit import ec as embit_ec
from embit.script import address_to_scriptpubkey, p2tr
from embit.transaction import Transaction as EmbitTransaction
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from custody.ledger import LedgerCode, LedgerError, customer, equity, fees, pending, wallet
from custody.payments import (
    PaymentCode,
    PaymentError,
    PaymentService,
    PaymentSpec,
    PaymentStore,
    SigningUnavailable,
)
from custody.payments.spec import wallet_id
from policy.payloads import ethereum as eth
from policy.payloads.chains import chain
from tests.ledger.conftest import key_of
from tests.ledger.threshold import ThresholdProvider

TENANT = "acme"
ETH_DEST = "0x52908400098527886E0F7030069857D2E4169EE7"
BTC_DEST = "bc1p2wsldez5mud2yam29q22wgfh9439spgduvct83k3pm50fcxa5dps59h4z5"
ETHER = 10**18
MAX_FEE = 21_000 * 30 * 10**9  # default gas * default max fee per gas


@pytest.fixture
def store(db_url: str):
    s = PaymentStore(db_url)
    yield s
    s.engine.dispose()


def _provider(shared: ThresholdProvider, **kw) -> ThresholdProvider:
    return ThresholdProvider(keys=shared.keys, **kw)


def _eth_spec(key: str, **kw) -> PaymentSpec:
    base = {
        "payment_id": f"p-{secrets.token_hex(4)}",
        "tenant": TENANT,
        "customer_id": "alice",
        "key_id": key,
        "path": "m/0/7",
        "chain": "ethereum",
        "destination": ETH_DEST,
        "amount": ETHER,
    }
    return PaymentSpec(**(base | kw))


def _fund_eth(store: PaymentStore, key: str, *, customer_eth: int, operator_eth: int) -> str:
    w = wallet_id("ethereum", key, "m/0/7")
    if customer_eth:
        store.deposit(f"dep-{secrets.token_hex(4)}", TENANT, "alice", "ETH", customer_eth, w)
    if operator_eth:
        store.fund(f"fund-{secrets.token_hex(4)}", TENANT, "ETH", operator_eth, w)
    return w


def _invariant(store: PaymentStore) -> None:
    """Per asset, what the wallets hold equals what customers are owed plus the
    operator's funds minus the fees paid (the accounting equation)."""
    by_asset: dict[str, int] = {}
    for account, amount in store.balances(TENANT):
        sign = 1 if account.normal == "debit" else -1
        by_asset[account.asset] = by_asset.get(account.asset, 0) + sign * amount
    assert all(v == 0 for v in by_asset.values()), by_asset


def test_ethereum_withdrawal_recovers_to_the_key(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    p = _provider(provider)
    w = _fund_eth(store, key, customer_eth=3 * ETHER, operator_eth=ETHER)
    service = PaymentService(store, p)
    payment = service.create(_eth_spec(key, payment_id="w-1"))
    assert payment.state == "SETTLED" and payment.nonce == 0
    raw = payment.raw_transaction
    assert raw is not None
    expected = eth.address_of(p.key(key, "m/0/7").public_key)
    assert payment.from_address == expected
    assert Account.recover_transaction(raw) == expected  # eth-account's own recovery
    decoded = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    assert bytes(decoded["to"]) == bytes.fromhex(ETH_DEST[2:]) and decoded["value"] == ETHER
    assert decoded["chainId"] == 1 and decoded["nonce"] == 0
    # what the nodes were asked: the decoded claims, with the payload
    (request,) = p.signed
    assert (request.destination, request.amount, request.asset) == (ETH_DEST, ETHER, "ETH")
    assert request.request_id == "payment:w-1:0"
    # books: the customer paid amount and (maximum) fee; the operator's funds are untouched
    assert payment.fee_payer == "customer" and payment.fee == MAX_FEE
    assert store.balance(customer(TENANT, "alice", "ETH")) == 2 * ETHER - MAX_FEE
    assert store.balance(pending(TENANT, "alice", "ETH")) == 0
    assert store.balance(wallet(TENANT, w, "ETH")) == 4 * ETHER - ETHER - MAX_FEE
    assert store.balance(fees(TENANT, "ETH")) == 0
    assert store.balance(equity(TENANT, "ETH")) == ETHER
    assert store.liabilities() == [("acme/alice", "ETH", 2 * ETHER - MAX_FEE)]
    (out,) = store.outbox()
    assert out["raw_transaction"] == raw.hex() and out["txid"] == payment.txid
    _invariant(store)
    # the next payment from the same address takes the next nonce
    assert service.create(_eth_spec(key)).nonce == 1


def test_payment_ids_are_idempotent(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    p = _provider(provider)
    _fund_eth(store, key, customer_eth=5 * ETHER, operator_eth=ETHER)
    service = PaymentService(store, p)
    spec = _eth_spec(key, payment_id="same")
    first = service.create(spec)
    height = store.height()
    again = service.create(spec)
    assert again == first and len(p.signed) == 1 and store.height() == height
    with pytest.raises(PaymentError) as info:
        service.create(_eth_spec(key, payment_id="same", amount=2 * ETHER))
    assert info.value.code is PaymentCode.PAYMENT_ID_REUSED
    with pytest.raises(PaymentError) as info:  # who pays the fee is a parameter too
        service.create(_eth_spec(key, payment_id="same", fee_payer="operator"))
    assert info.value.code is PaymentCode.PAYMENT_ID_REUSED
    assert store.balance(customer(TENANT, "alice", "ETH")) == 4 * ETHER - MAX_FEE


def test_refused_signing_releases_the_reservation(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    limit = ETHER // 2

    def policy(request, found):
        return "BLOCKED_BY_RULE" if found.amount > limit else None

    service = PaymentService(store, _provider(provider, policy=policy))
    _fund_eth(store, key, customer_eth=2 * ETHER, operator_eth=ETHER)
    refused = service.create(_eth_spec(key))
    assert refused.state == "RELEASED" and refused.error_code == "BLOCKED_BY_RULE"
    assert refused.raw_transaction is None
    assert store.balance(customer(TENANT, "alice", "ETH")) == 2 * ETHER
    assert store.balance(pending(TENANT, "alice", "ETH")) == 0
    assert store.outbox() == []
    kinds = [e["kind"] for e in store.journal(TENANT)]
    assert kinds[-2:] == ["reserve", "release"]
    # the never-signed nonce is given back
    assert service.create(_eth_spec(key, amount=limit)).nonce == 0
    _invariant(store)


def test_unknown_outcome_keeps_the_reservation_and_resumes(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    _fund_eth(store, key, customer_eth=2 * ETHER, operator_eth=ETHER)

    class Flaky(ThresholdProvider):
        down = True

        def sign(self, request):
            if self.down:
                raise SigningUnavailable("UNAVAILABLE", "coordinator unreachable")
            return super().sign(request)

    flaky = Flaky(keys=provider.keys)
    service = PaymentService(store, flaky)
    spec = _eth_spec(key, payment_id="flaky")
    with pytest.raises(PaymentError) as info:
        service.create(spec)
    assert info.value.code is PaymentCode.SIGNING_UNAVAILABLE
    reserved = store.get(TENANT, "flaky")
    assert reserved.state == "RESERVED" and reserved.error_code == "UNAVAILABLE"
    assert store.balance(pending(TENANT, "alice", "ETH")) == ETHER + MAX_FEE
    flaky.down = False
    done = service.resume(TENANT, "flaky")
    assert done.state == "SETTLED" and done.error_code is None
    assert Account.recover_transaction(done.raw_transaction) == done.from_address


def test_bad_signature_is_never_assembled(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    _fund_eth(store, key, customer_eth=2 * ETHER, operator_eth=ETHER)

    class Liar(ThresholdProvider):
        def sign(self, request):
            good = super().sign(request)
            return type(good)(good.signature, 1 - good.recovery_id)  # another key recovers

    out = PaymentService(store, Liar(keys=provider.keys)).create(_eth_spec(key))
    assert out.state == "RELEASED" and out.error_code == "SIGNATURE_INVALID"
    assert store.balance(customer(TENANT, "alice", "ETH")) == 2 * ETHER


def test_insufficient_funds_are_refused_before_signing(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    p = _provider(provider)
    service = PaymentService(store, p)
    _fund_eth(store, key, customer_eth=ETHER, operator_eth=0)
    # the customer pays the fee: holding exactly the amount is one fee short
    with pytest.raises(LedgerError) as ledger_info:
        service.create(_eth_spec(key))
    assert ledger_info.value.code is LedgerCode.INSUFFICIENT_FUNDS
    with pytest.raises(PaymentError) as info:  # the operator pays: it has no fee funds
        service.create(_eth_spec(key, fee_payer="operator"))
    assert info.value.code is PaymentCode.INSUFFICIENT_FUNDS
    _fund_eth(store, key, customer_eth=0, operator_eth=ETHER)
    with pytest.raises(LedgerError) as ledger_info:  # more than the customer has
        service.create(_eth_spec(key, amount=ETHER + 1, fee_payer="operator"))
    assert ledger_info.value.code is LedgerCode.INSUFFICIENT_FUNDS
    # another customer's funds in the same wallet are not alice's
    store.deposit("dep-bob", TENANT, "bob", "ETH", ETHER, wallet_id("ethereum", key, "m/0/7"))
    with pytest.raises(LedgerError):
        service.create(_eth_spec(key, amount=2 * ETHER, fee_payer="operator"))
    assert p.signed == [] and store.outbox() == []
    assert store.journal(TENANT)[-1]["kind"] == "deposit"  # nothing was reserved
    _invariant(store)
    # exactly amount + maximum fee is enough
    store.deposit("dep-fee", TENANT, "alice", "ETH", MAX_FEE, wallet_id("ethereum", key, "m/0/7"))
    assert service.create(_eth_spec(key)).state == "SETTLED"
    assert store.balance(customer(TENANT, "alice", "ETH")) == 0
    _invariant(store)


def test_operator_pays_the_fee_from_its_own_funds(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    w = _fund_eth(store, key, customer_eth=2 * ETHER, operator_eth=ETHER)
    service = PaymentService(store, _provider(provider))
    payment = service.create(_eth_spec(key, payment_id="op-1", fee_payer="operator"))
    assert (payment.state, payment.fee_payer, payment.fee) == ("SETTLED", "operator", MAX_FEE)
    assert store.balance(customer(TENANT, "alice", "ETH")) == ETHER  # the amount only
    assert store.balance(wallet(TENANT, w, "ETH")) == 3 * ETHER - ETHER - MAX_FEE
    assert store.balance(fees(TENANT, "ETH")) == MAX_FEE  # the operator's expense
    assert store.liabilities() == [("acme/alice", "ETH", ETHER)]
    _invariant(store)
    # the broadcaster reports the fee the chain took: the unused gas goes back to the
    # operator's funds
    taken = 21_000 * 12 * 10**9
    done = service.confirm(TENANT, "op-1", taken)
    assert done.fee_paid == taken and done.fee == MAX_FEE
    assert store.balance(fees(TENANT, "ETH")) == taken
    assert store.balance(wallet(TENANT, w, "ETH")) == 3 * ETHER - ETHER - taken
    assert store.balance(customer(TENANT, "alice", "ETH")) == ETHER
    assert store.outbox() == [] and len(store.outbox("SENT")) == 1
    _invariant(store)


def test_customer_fee_is_reserved_settled_and_its_unused_part_returned(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    w = _fund_eth(store, key, customer_eth=2 * ETHER, operator_eth=0)
    service = PaymentService(store, _provider(provider))
    payment = service.create(_eth_spec(key, payment_id="c-1", amount=ETHER // 2))
    assert payment.state == "SETTLED" and payment.fee_payer == "customer"
    reserve, settle = store.journal(TENANT)[-2:]
    assert [(g["debit"], g["credit"], int(g["amount"])) for g in reserve["legs"]] == [
        ("customer:acme:alice:ETH", "pending:acme:alice:ETH", ETHER // 2),
        ("customer:acme:alice:ETH", "pending:acme:alice:ETH", MAX_FEE),
    ]
    assert [(g["debit"], g["credit"], int(g["amount"])) for g in settle["legs"]] == [
        ("pending:acme:alice:ETH", f"wallet:acme:{w}:ETH", ETHER // 2),
        ("fees:acme:ETH", f"wallet:acme:{w}:ETH", MAX_FEE),
        ("pending:acme:alice:ETH", "fees:acme:ETH", MAX_FEE),
    ]
    assert store.balance(customer(TENANT, "alice", "ETH")) == 2 * ETHER - ETHER // 2 - MAX_FEE
    assert store.balance(pending(TENANT, "alice", "ETH")) == 0
    assert store.balance(fees(TENANT, "ETH")) == 0
    # the chain took less than the maximum: the rest is the customer's again
    taken = 21_000 * 9 * 10**9
    with pytest.raises(PaymentError) as info:
        service.confirm(TENANT, "c-1", MAX_FEE + 1)
    assert info.value.code is PaymentCode.FEE_INVALID
    done = service.confirm(TENANT, "c-1", taken)
    assert done.fee_paid == taken
    assert store.balance(customer(TENANT, "alice", "ETH")) == 2 * ETHER - ETHER // 2 - taken
    assert store.balance(wallet(TENANT, w, "ETH")) == 2 * ETHER - ETHER // 2 - taken
    assert store.balance(fees(TENANT, "ETH")) == 0
    height = store.height()
    assert service.confirm(TENANT, "c-1", taken) == done and store.height() == height
    with pytest.raises(PaymentError) as info:
        service.confirm(TENANT, "c-1", taken + 1)
    assert info.value.code is PaymentCode.PAYMENT_ALREADY_CONFIRMED
    _invariant(store)


def test_release_returns_the_reserved_fee(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    _fund_eth(store, key, customer_eth=ETHER + MAX_FEE, operator_eth=0)

    def refuse(request, found):
        return "BLOCKED_BY_RULE"

    service = PaymentService(store, _provider(provider, policy=refuse))
    out = service.create(_eth_spec(key, payment_id="r-1"))
    assert (out.state, out.error_code) == ("RELEASED", "BLOCKED_BY_RULE")
    assert store.balance(customer(TENANT, "alice", "ETH")) == ETHER + MAX_FEE
    assert store.balance(pending(TENANT, "alice", "ETH")) == 0
    (release,) = store.journal(TENANT)[-1:]
    assert [int(g["amount"]) for g in release["legs"]] == [ETHER, MAX_FEE]
    with pytest.raises(PaymentError) as info:  # nothing was signed: nothing to confirm
        service.confirm(TENANT, "r-1", 0)
    assert info.value.code is PaymentCode.PAYMENT_NOT_SETTLED
    _invariant(store)


def test_erc20_withdrawal(store, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    p = _provider(provider)
    w = wallet_id("ethereum", key, "m/0/7")
    store.deposit("usdc-in", TENANT, "alice", "USDC", 5_000_000, w)
    erc20_fee = 65_000 * 30 * 10**9
    service = PaymentService(store, p)
    with pytest.raises(LedgerError) as info:  # the customer pays the gas, in ETH
        service.create(_eth_spec(key, asset="USDC", amount=1_250_000))
    assert info.value.code is LedgerCode.INSUFFICIENT_FUNDS
    store.deposit("eth-in", TENANT, "alice", "ETH", erc20_fee, w)
    payment = service.create(_eth_spec(key, asset="USDC", amount=1_250_000))
    assert payment.state == "SETTLED" and payment.fee_asset == "ETH"
    assert payment.fee == erc20_fee and payment.nonce == 0  # the refused attempt's nonce
    assert Account.recover_transaction(payment.raw_transaction) == payment.from_address
    decoded = TypedTransaction.from_bytes(HexBytes(payment.raw_transaction)).as_dict()
    assert "0x" + bytes(decoded["to"]).hex() == chain("ethereum").tokens["USDC"]
    assert bytes(decoded["data"]) == eth.erc20_transfer_data(ETH_DEST, 1_250_000)
    (request,) = p.signed
    assert (request.asset, request.destination, request.amount) == ("USDC", ETH_DEST, 1_250_000)
    assert store.balance(wallet(TENANT, w, "USDC")) == 3_750_000
    assert store.balance(wallet(TENANT, w, "ETH")) == 0
    assert store.balance(customer(TENANT, "alice", "USDC")) == 3_750_000
    assert store.balance(customer(TENANT, "alice", "ETH")) == 0
    assert store.liabilities() == [("acme/alice", "USDC", 3_750_000)]
    _invariant(store)


def test_bitcoin_withdrawal_witness_verified_by_embit(store, provider) -> None:
    key = key_of(provider, "schnorr-bip340")
    p = _provider(provider)
    service = PaymentService(store, p)
    coins = {}
    for i, (who, amount) in enumerate([("alice", 60_000), ("alice", 50_000), (None, 20_000)]):
        txid = secrets.token_hex(32)
        coins[(txid, i)] = amount
        store.deposit_coin(
            f"coin-{i}-{txid[:8]}",
            TENANT,
            who,
            chain="bitcoin",
            key_id=key,
            path="m/1",
            txid=txid,
            vout=i,
            amount=amount,
        )
    spec = PaymentSpec(
        payment_id="btc-1",
        tenant=TENANT,
        customer_id="alice",
        key_id=key,
        path="m/1",
        chain="bitcoin",
        destination=BTC_DEST,
        amount=75_000,
        fee_rate=4,
    )
    payment = service.create(spec)
    assert payment.state == "SETTLED", payment
    raw = payment.raw_transaction
    own = address_to_scriptpubkey(payment.from_address)

    # embit parses the transaction and checks every input's signature itself
    etx = EmbitTransaction.parse(raw)
    assert etx.txid().hex() == payment.txid
    assert len(etx.vin) == 2  # largest coins first: 60k + 50k cover 75k + fee
    spent = [coins[(vin.txid.hex(), vin.vout)] for vin in etx.vin]
    output_key = embit_ec.PublicKey.from_xonly(own.data[2:])
    for i, vin in enumerate(etx.vin):
        h = etx.sighash_taproot(i, [own] * len(etx.vin), spent)
        (sig,) = vin.witness.items
        assert output_key.schnorr_verify(embit_ec.SchnorrSig.parse(sig), h)
    assert etx.vout[0].script_pubkey == address_to_scriptpubkey(BTC_DEST)
    assert etx.vout[0].value == 75_000
    assert etx.vout[1].script_pubkey == own  # change
    # the key's own address is the BIP341 tweak of the threshold key at m/1
    internal = embit_ec.PublicKey.parse(p.key(key, "m/1").public_key)
    assert p2tr(internal) == own
    # the nodes saw the amount once (input 0), the same destination on both inputs
    assert [(r.amount, r.destination) for r in p.signed] == [(75_000, BTC_DEST), (0, BTC_DEST)]
    # books: coins and ledger agree
    w = wallet_id("bitcoin", key, "m/1")
    fee = payment.fee
    assert fee == 110_000 - 75_000 - etx.vout[1].value  # inputs - outputs, known when built
    assert store.balance(wallet(TENANT, w, "BTC")) == 130_000 - 75_000 - fee
    assert store.balance(customer(TENANT, "alice", "BTC")) == 110_000 - 75_000 - fee
    assert (
        store.balance(equity(TENANT, "BTC")) == 20_000 and store.balance(fees(TENANT, "BTC")) == 0
    )
    _invariant(store)
    # a Bitcoin fee is fixed by the signed transaction: confirm takes exactly it
    with pytest.raises(PaymentError) as info:
        service.confirm(TENANT, "btc-1", fee - 1)
    assert info.value.code is PaymentCode.FEE_INVALID
    assert service.confirm(TENANT, "btc-1", fee).fee_paid == fee
    assert store.balance(customer(TENANT, "alice", "BTC")) == 110_000 - 75_000 - fee
    # the change coin is spendable by the next payment
    again = service.create(
        dataclasses.replace(spec, payment_id="btc-2", amount=30_000, fee_payer="operator")
    )
    assert again.state == "SETTLED"
    assert store.balance(fees(TENANT, "BTC")) == again.fee  # the operator paid this one
    (vin,) = EmbitTransaction.parse(again.raw_transaction).vin  # the change coin alone
    assert (vin.txid.hex(), vin.vout) == (payment.txid, 1)
    _invariant(store)


def test_concurrent_withdrawals_never_overdraw(store, provider) -> None:
    """Eight threads race to withdraw 1 ETH each, the customer paying each fee, from a
    customer holding three withdrawals and fees but one wei short of a fourth fee."""
    key = key_of(provider, "ecdsa-secp256k1")
    _fund_eth(store, key, customer_eth=3 * (ETHER + MAX_FEE) + ETHER + MAX_FEE - 1, operator_eth=0)
    service = PaymentService(store, _provider(provider))
    results: list[object] = []
    barrier = threading.Barrier(8)

    def withdraw(i: int) -> None:
        barrier.wait()
        try:
            results.append(service.create(_eth_spec(key, payment_id=f"race-{i}")))
        except (LedgerError, PaymentError) as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=withdraw, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    settled = [r for r in results if not isinstance(r, str)]
    assert len(settled) == 3
    assert sorted(r for r in results if isinstance(r, str)) == ["INSUFFICIENT_FUNDS"] * 5
    assert sorted(r.nonce for r in settled) == [0, 1, 2]  # type: ignore[attr-defined]
    assert store.balance(customer(TENANT, "alice", "ETH")) == ETHER + MAX_FEE - 1
    assert store.balance(pending(TENANT, "alice", "ETH")) == 0
    assert store.balance(fees(TENANT, "ETH")) == 0
    _invariant(store)


def test_bad_taproot_signature_releases_coins(store, provider) -> None:
    key = key_of(provider, "schnorr-bip340")

    class Liar(ThresholdProvider):
        def sign(self, request):
            good = super().sign(request)
            return type(good)(good.signature[:63] + bytes([good.signature[63] ^ 1]))

    txid = secrets.token_hex(32)
    store.deposit_coin(
        "c1",
        TENANT,
        "alice",
        chain="bitcoin",
        key_id=key,
        path="m",
        txid=txid,
        vout=0,
        amount=50_000,
    )
    store.deposit_coin(
        "c2", TENANT, None, chain="bitcoin", key_id=key, path="m", txid=txid, vout=1, amount=5_000
    )
    spec = PaymentSpec(
        payment_id="liar",
        tenant=TENANT,
        customer_id="alice",
        key_id=key,
        chain="bitcoin",
        destination=BTC_DEST,
        amount=10_000,
    )
    out = PaymentService(store, Liar(keys=provider.keys)).create(spec)
    assert out.state == "RELEASED" and out.error_code == "SIGNATURE_INVALID"
    assert store.balance(customer(TENANT, "alice", "BTC")) == 50_000
    # the coin is free again: an honest signer spends it
    again = PaymentService(store, _provider(provider)).create(
        dataclasses.replace(spec, payment_id="honest")
    )
    assert again.state == "SETTLED"
    _invariant(store)
