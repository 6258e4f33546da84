"""Withdrawals signed by a running cluster through :class:`CustodyServiceProvider`: the
signer nodes enforce the starter policy (small transfers allowed, larger ones need the
tenant's treasury), derive what they sign from the payload, and the outputs are checked
with libraries that share no code with ours (eth-account, eth-keys, bip32, embit)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import grpc
import pytest
from bip32 import BIP32
from embit import ec as embit_ec
from embit.script import address_to_scriptpubkey, p2tr
from embit.transaction import Transaction as EmbitTransaction
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from custody._pb.custody.governance.v1 import governance_pb2 as gpb
from custody._pb.custody.v1 import custody_pb2 as pb
from custody.ledger import customer, pending
from custody.payments import (
    PaymentCode,
    PaymentError,
    PaymentService,
    PaymentSpec,
    SigningRefused,
    SigningUnavailable,
)
from custody.payments.spec import GWEI
from policy.payloads import ethereum as eth
from policy.request import ApprovalDecision, RequestType, SigningRequest
from tests.payments_service.helpers import (
    BTC_DEST,
    ETH_DEST,
    ETHER,
    FINNEY,
    MAX_FEE,
    TENANT,
    Background,
    World,
    api_request,
    await_pending,
    await_signers,
    cli,
    decide,
    eth_address,
    eth_spec,
    fund_eth,
)


def test_ethereum_withdrawal_recovers_to_the_derived_key(world: World) -> None:
    path = "m/44/60/0/0/3"
    fund_eth(world, "alice", path, 2 * ETHER)
    payment = world.service().create(eth_spec(world, "eth-1", "alice", path, ETHER // 2))
    assert payment.state == "SETTLED", payment
    raw = payment.raw_transaction
    assert raw is not None
    expected = eth_address(world, path)
    assert payment.from_address == expected
    assert Account.recover_transaction(raw) == expected
    tx = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    assert (bytes(tx["to"]), tx["value"], tx["chainId"], tx["nonce"]) == (
        bytes.fromhex(ETH_DEST[2:]),
        ETHER // 2,
        1,
        0,
    )
    # the coordinator's record: signed at the path, the digest derived from the payload
    signed = api_request(world, "payment:eth-1:0")
    assert signed.state == pb.REQUEST_STATE_SUCCEEDED and signed.path == path
    assert signed.public_key == BIP32(
        chaincode=world.ecdsa.chain_code, pubkey=world.ecdsa.public_key
    ).get_pubkey_from_path(path)
    assert signed.signature == tx["r"].to_bytes(32, "big") + tx["s"].to_bytes(32, "big")
    assert world.store.balance(customer(TENANT, "alice", "ETH")) == 3 * ETHER // 2 - MAX_FEE
    assert world.store.balance(pending(TENANT, "alice", "ETH")) == 0
    assert payment.txid in {o["txid"] for o in world.store.outbox()}


def test_bitcoin_taproot_withdrawal_verified_by_embit(world: World) -> None:
    key, path = world.bip340.key_id, "m/1"
    coins = {}
    for vout, (who, amount) in enumerate(
        [("satoshi", 60_000), ("satoshi", 50_000), (None, 20_000)]
    ):
        txid = os.urandom(32).hex()
        coins[(txid, vout)] = amount
        world.store.deposit_coin(
            f"coin-{txid[:12]}",
            TENANT,
            who,
            chain="bitcoin",
            key_id=key,
            path=path,
            txid=txid,
            vout=vout,
            amount=amount,
        )
    spec = PaymentSpec(
        payment_id="btc-1",
        tenant=TENANT,
        customer_id="satoshi",
        key_id=key,
        path=path,
        chain="bitcoin",
        destination=BTC_DEST,
        amount=75_000,
        fee_rate=4,
    )
    payment = world.service().create(spec)
    assert payment.state == "SETTLED", payment
    assert payment.raw_transaction is not None
    etx = EmbitTransaction.parse(payment.raw_transaction)
    assert etx.txid().hex() == payment.txid and len(etx.vin) == 2
    own = address_to_scriptpubkey(payment.from_address)
    with world.running.client(TENANT) as client:
        internal = embit_ec.PublicKey.from_xonly(client.derive(key, path).public_key)
    assert p2tr(internal) == own  # BIP341 key-path output of the derived threshold key
    spent = [coins[(vin.txid.hex(), vin.vout)] for vin in etx.vin]
    output_key = embit_ec.PublicKey.from_xonly(own.data[2:])
    for i, vin in enumerate(etx.vin):
        sighash = etx.sighash_taproot(i, [own] * len(etx.vin), spent)
        (sig,) = vin.witness.items
        assert output_key.schnorr_verify(embit_ec.SchnorrSig.parse(sig), sighash)
        record = api_request(world, f"payment:btc-1:{i}")
        assert record.public_key == own.data[2:]  # the tweaked output key signed
        assert record.signed_digest == sighash
    assert etx.vout[0].script_pubkey == address_to_scriptpubkey(BTC_DEST)
    assert etx.vout[0].value == 75_000 and etx.vout[1].script_pubkey == own
    fee = 110_000 - 75_000 - etx.vout[1].value
    assert payment.fee == fee and payment.fee_payer == "customer"
    assert world.store.balance(customer(TENANT, "satoshi", "BTC")) == 110_000 - 75_000 - fee


def test_large_withdrawal_waits_for_the_treasury(world: World) -> None:
    path = "m/2"
    fund_eth(world, "whale", path, 3 * ETHER)
    spec = eth_spec(world, "big-1", "whale", path, 3 * ETHER // 2)  # above the 1 ETH limit
    impatient = world.provider_with(timeout=1.0)
    try:
        with pytest.raises(PaymentError) as info:
            PaymentService(world.store, impatient).create(spec)
    finally:
        impatient.close()
    assert info.value.code is PaymentCode.SIGNING_UNAVAILABLE
    held = world.store.get(TENANT, "big-1")
    assert (held.state, held.error_code) == ("RESERVED", "APPROVAL_PENDING")
    assert world.store.balance(pending(TENANT, "whale", "ETH")) == 3 * ETHER // 2 + MAX_FEE
    waiting = api_request(world, "payment:big-1:0")
    assert waiting.state == pb.REQUEST_STATE_PENDING_APPROVAL
    assert waiting.approval_requirement == "acme-treasury>=1"
    # resumed payment waits; an approver approves through GovernanceService
    job = Background(lambda: world.service().resume(TENANT, "big-1"))
    await_pending(world, "acme:payment:big-1:0")
    approved = decide(world, "acme:payment:big-1:0", "acme-approver-1", ApprovalDecision.APPROVE)
    assert approved.state in (gpb.REQUEST_STATE_APPROVED, gpb.REQUEST_STATE_SIGNED)
    done = job.outcome()
    assert done.state == "SETTLED" and done.error_code is None
    assert done.raw_transaction is not None
    assert Account.recover_transaction(done.raw_transaction) == eth_address(world, path)
    assert world.store.balance(customer(TENANT, "whale", "ETH")) == 3 * ETHER // 2 - MAX_FEE
    assert world.store.balance(pending(TENANT, "whale", "ETH")) == 0


def test_rejected_withdrawal_releases_the_funds(world: World) -> None:
    path = "m/3"
    fund_eth(world, "bob", path, 3 * ETHER)
    job = Background(
        lambda: world.service().create(eth_spec(world, "rej-1", "bob", path, 2 * ETHER))
    )
    await_pending(world, "acme:payment:rej-1:0")
    assert world.store.balance(pending(TENANT, "bob", "ETH")) == 2 * ETHER + MAX_FEE
    rejected = decide(world, "acme:payment:rej-1:0", "acme-approver-2", ApprovalDecision.REJECT)
    assert rejected.state == gpb.REQUEST_STATE_REJECTED
    out = job.outcome()
    assert (out.state, out.error_code) == ("RELEASED", "APPROVAL_REJECTED")
    assert out.raw_transaction is None
    assert world.store.balance(customer(TENANT, "bob", "ETH")) == 3 * ETHER
    assert world.store.balance(pending(TENANT, "bob", "ETH")) == 0
    # the never-signed nonce goes to the next payment from that address
    small = world.service().create(eth_spec(world, "rej-2", "bob", path, FINNEY))
    assert small.state == "SETTLED" and small.nonce == out.nonce == 0


def test_request_refused_by_policy_releases_the_funds(world: World) -> None:
    """A request older than the policy's request_max_age_seconds (one day) FAILS with the
    node's code; the payment releases at once."""
    path = "m/4"
    fund_eth(world, "carol", path, ETHER)
    stale = world.service(clock=lambda: time.time() - 2 * 86_400)
    out = stale.create(eth_spec(world, "stale-1", "carol", path, FINNEY))
    assert (out.state, out.error_code) == ("RELEASED", "REQUEST_EXPIRED")
    record = api_request(world, "payment:stale-1:0")
    assert (record.state, record.error_code) == (pb.REQUEST_STATE_FAILED, "REQUEST_EXPIRED")
    assert world.store.balance(customer(TENANT, "carol", "ETH")) == ETHER


def test_claims_that_differ_from_the_payload_are_refused(world: World) -> None:
    payload = eth.build_eip1559(
        chain_id=1,
        nonce=0,
        to=ETH_DEST,
        value=FINNEY,
        gas=21_000,
        max_fee_per_gas=30 * GWEI,
        max_priority_fee_per_gas=GWEI,
        data=b"",
    )
    request = SigningRequest(
        request_id="payment:lie-1:0",
        tenant=TENANT,
        initiator=world.provider.initiator,
        key_id=world.ecdsa.key_id,
        request_type=RequestType.TRANSFER,
        chain="ethereum",
        asset="ETH",
        destination=ETH_DEST,
        amount=FINNEY // 10,  # claims less than the transaction sends
        payload=payload,
        created_at=int(time.time()),
    )
    with pytest.raises(SigningRefused) as info:
        world.provider.sign(request)
    assert info.value.code == "PAYLOAD_MISMATCH"


def test_payment_ids_are_idempotent(world: World) -> None:
    path = "m/5"
    fund_eth(world, "dave", path, ETHER)
    spec = eth_spec(world, "same-1", "dave", path, FINNEY)
    first = world.service().create(spec)
    height = world.store.height()
    assert world.service().create(spec) == first and world.store.height() == height
    with pytest.raises(PaymentError) as info:
        world.service().create(dataclasses.replace(spec, amount=2 * FINNEY))
    assert info.value.code is PaymentCode.PAYMENT_ID_REUSED

    # The cluster signs but the reply is lost: resuming finds that signature under the
    # same request id instead of signing again.
    class LostReply:
        initiator = world.provider.initiator
        key = world.provider.key

        def sign(self, request: SigningRequest) -> Any:
            world.provider.sign(request)
            raise SigningUnavailable("UNAVAILABLE", "the reply was lost")

    lost = eth_spec(world, "lost-1", "dave", path, FINNEY)
    with pytest.raises(PaymentError) as info:
        PaymentService(world.store, LostReply()).create(lost)
    assert info.value.code is PaymentCode.SIGNING_UNAVAILABLE
    assert world.store.get(TENANT, "lost-1").state == "RESERVED"
    signed = api_request(world, "payment:lost-1:0")
    assert signed.state == pb.REQUEST_STATE_SUCCEEDED
    done = world.service().resume(TENANT, "lost-1")
    assert done.state == "SETTLED" and done.raw_transaction is not None
    tx = TypedTransaction.from_bytes(HexBytes(done.raw_transaction)).as_dict()
    assert signed.signature == tx["r"].to_bytes(32, "big") + tx["s"].to_bytes(32, "big")
    with pytest.raises(grpc.RpcError):  # no second attempt was made
        api_request(world, "payment:lost-1:0.retry1")


def test_unreachable_nodes_leave_the_payment_reserved_until_resumed(world: World) -> None:
    path = "m/6"
    fund_eth(world, "erin", path, ETHER)
    cluster = world.running.cluster
    cluster.kill("node-1")
    cluster.kill("node-2")
    try:
        with pytest.raises(PaymentError) as info:
            world.service().create(eth_spec(world, "down-1", "erin", path, FINNEY))
    finally:
        cluster.restart("node-1")
        cluster.restart("node-2")
        await_signers(world)
    assert info.value.code is PaymentCode.SIGNING_UNAVAILABLE
    held = world.store.get(TENANT, "down-1")
    assert (held.state, held.error_code) == ("RESERVED", "UNAVAILABLE")
    assert world.store.balance(pending(TENANT, "erin", "ETH")) == FINNEY + MAX_FEE
    failed = api_request(world, "payment:down-1:0")
    assert (failed.state, failed.error_code) == (pb.REQUEST_STATE_FAILED, "UNAVAILABLE")
    # FAILED is final for that id; resuming signs the same transaction as attempt 1
    done = world.service().resume(TENANT, "down-1")
    assert done.state == "SETTLED" and done.raw_transaction is not None
    assert Account.recover_transaction(done.raw_transaction) == eth_address(world, path)
    retry = api_request(world, "payment:down-1:0.retry1")
    assert retry.state == pb.REQUEST_STATE_SUCCEEDED


def test_cli_payment_create_prints_the_signed_transaction(world: World) -> None:
    path = "m/7"
    fund_eth(world, "frank", path, 3 * ETHER)
    common = [
        "--data-dir",
        str(world.running.config.data_dir),
        "--key",
        world.ecdsa.key_id,
        "--chain",
        "ethereum",
        "--to",
        ETH_DEST,
        "--customer",
        "frank",
        "--path",
        path,
        "--json",
    ]
    done = cli("payment", "create", *common, "--amount", str(FINNEY), "--id", "cli-1")
    assert done.returncode == 0, done.stderr
    payment = json.loads(done.stdout)
    raw = bytes.fromhex(payment["raw_transaction"])
    assert payment["state"] == "SETTLED"
    assert payment["from_address"] == eth_address(world, path) == Account.recover_transaction(raw)
    assert world.store.get(TENANT, "cli-1").raw_transaction == raw
    # above the limit: waits --wait seconds for the treasury, then stays reserved
    big = ["--amount", str(2 * ETHER), "--id", "cli-2", "--wait", "0.5"]
    held = cli("payment", "create", *common, *big)
    assert held.returncode == 1 and "SIGNING_UNAVAILABLE" in held.stderr, held.stderr
    assert world.store.get(TENANT, "cli-2").state == "RESERVED"
