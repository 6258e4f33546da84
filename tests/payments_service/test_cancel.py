"""Cancelling withdrawals that wait for approvals, through a running cluster: the
initiator's signed cancellation is final in governance before any funds are released,
approvals afterwards are refused, the coordinator never signs the request, and payments
that are signed (or cancelled) already are refused with a stable code, changing nothing."""

from __future__ import annotations

import json
import threading

import grpc
import pytest

from custody._pb.custody.governance.v1 import governance_pb2 as gpb
from custody._pb.custody.v1 import custody_pb2 as pb
from custody.governance.client import GovernanceClient
from custody.governance.genesis import governance_root, initiator_key_path
from custody.governance.keys import load_private_key, load_public_key
from custody.ledger import customer, pending
from custody.payments import Payment, PaymentCode, PaymentError, PaymentService
from policy.audit import import_jsonl, verify_chain
from policy.request import ApprovalDecision
from signer_nodes.grpc_errors import reason_of
from tests.payments_service.helpers import (
    ETHER,
    FINNEY,
    MAX_FEE,
    TENANT,
    Background,
    World,
    api_request,
    await_pending,
    cli,
    decide,
    eth_spec,
    fund_eth,
)

BIG = 3 * ETHER // 2  # above the starter policy's 1 ETH: waits for acme-treasury


def reserve_waiting(world: World, payment_id: str, who: str, path: str) -> Payment:
    """A withdrawal above the limit, left RESERVED while it waits for approvals."""
    impatient = world.provider_with(timeout=0.5)
    try:
        with pytest.raises(PaymentError) as info:
            PaymentService(world.store, impatient).create(
                eth_spec(world, payment_id, who, path, BIG)
            )
    finally:
        impatient.close()
    assert info.value.code is PaymentCode.SIGNING_UNAVAILABLE
    held = world.store.get(TENANT, payment_id)
    assert (held.state, held.error_code) == ("RESERVED", "APPROVAL_PENDING")
    return held


def refusal(fn: object, *args: object) -> str:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args)  # type: ignore[operator]
    return reason_of(info.value) or info.value.code().name


def never_signed(world: World, request_id: str) -> None:
    """The coordinator failed the cancelled request with governance's reason
    (``engine.on_request_changed``), without a signature."""
    with world.running.client(TENANT) as client:
        final = client.wait(request_id, timeout=10.0)
    assert (final.state, final.error_code) == (pb.REQUEST_STATE_FAILED, "REQUEST_CANCELLED")
    assert final.signature == b""


def test_cancel_releases_a_withdrawal_waiting_for_approvals(world: World) -> None:
    path = "m/20"
    fund_eth(world, "gina", path, 2 * ETHER)
    held = reserve_waiting(world, "cx-1", "gina", path)
    assert world.store.balance(pending(TENANT, "gina", "ETH")) == BIG + MAX_FEE
    gov_id = "acme:payment:cx-1:0"
    # a payment still waiting in another process learns of the cancellation too
    waiting = Background(lambda: world.service().resume(TENANT, "cx-1"))
    await_pending(world, gov_id)
    # neither another tenant nor another key can cancel it
    data_dir = world.running.config.data_dir
    root = governance_root(data_dir)
    acme_key = load_private_key(initiator_key_path(root, "acme-initiator"))
    globex_key = load_private_key(initiator_key_path(root, "globex-initiator"))
    with GovernanceClient.from_data_dir(data_dir, "globex") as globex:
        assert refusal(globex.cancel, TENANT, gov_id, "acme-initiator", acme_key) == (
            "REQUEST_NOT_FOUND"
        )
    with GovernanceClient.from_data_dir(data_dir, TENANT) as gov:
        assert refusal(gov.cancel, TENANT, gov_id, "acme-initiator", globex_key) == (
            "INITIATOR_SIGNATURE_INVALID"
        )
    assert world.store.get(TENANT, "cx-1").state == "RESERVED"

    done = world.service().cancel(TENANT, "cx-1")
    assert (done.state, done.error_code) == ("CANCELLED", "PAYMENT_CANCELLED")
    assert done.raw_transaction is None
    resumed = waiting.outcome()
    assert resumed.state == "CANCELLED"  # its provider saw REQUEST_CANCELLED: no release twice
    assert world.store.balance(customer(TENANT, "gina", "ETH")) == 2 * ETHER
    assert world.store.balance(pending(TENANT, "gina", "ETH")) == 0
    kinds = [e["kind"] for e in world.store.journal(TENANT, after=world.store.height() - 1)]
    assert kinds == ["release"]
    # final in governance: approvals are refused and the coordinator never signs it
    with GovernanceClient.from_data_dir(data_dir) as gov:
        decision = gov.decision(TENANT, gov_id)
    assert (decision.state, decision.code) == (gpb.REQUEST_STATE_CANCELLED, "REQUEST_CANCELLED")
    assert refusal(decide, world, gov_id, "acme-approver-1", ApprovalDecision.APPROVE) == (
        "REQUEST_CLOSED"
    )
    never_signed(world, "payment:cx-1:0")
    # the same payment again: nothing changes
    height = world.store.height()
    with pytest.raises(PaymentError) as info:
        world.service().cancel(TENANT, "cx-1")
    assert info.value.code is PaymentCode.PAYMENT_ALREADY_CANCELLED
    assert world.service().resume(TENANT, "cx-1") == done
    assert world.store.height() == height
    with pytest.raises(grpc.RpcError):  # no other attempt was submitted
        api_request(world, "payment:cx-1:0.retry1")
    # the nonce was never signed: the next payment from that address takes it
    small = world.service().create(eth_spec(world, "cx-1b", "gina", path, FINNEY))
    assert small.state == "SETTLED" and small.nonce == held.nonce == 0
    # the cancellation is in the audit chain, signed by acme-initiator
    with GovernanceClient.from_data_dir(data_dir) as gov:
        records, checkpoints = import_jsonl(gov.export_audit())
    verify_chain(
        records, checkpoints, load_public_key(world.running.config.coordinator_dir / "audit.pub")
    )
    bodies = [json.loads(r.body) for r in records if r.kind == "decision"]
    (mine,) = [b for b in bodies if b.get("request_id") == gov_id and b["state"] == "CANCELLED"]
    assert mine["cancelled_by"] == "acme-initiator"
    assert mine["request_digest"] == decision.request_digest.hex()


def test_signed_and_settled_payments_are_not_cancelled(world: World) -> None:
    path = "m/21"
    fund_eth(world, "hugo", path, ETHER)
    settled = world.service().create(eth_spec(world, "cx-2", "hugo", path, FINNEY))
    assert settled.state == "SETTLED"
    height, outbox = world.store.height(), world.store.outbox()
    with pytest.raises(PaymentError) as info:
        world.service().cancel(TENANT, "cx-2")
    assert info.value.code is PaymentCode.PAYMENT_ALREADY_SIGNED
    assert world.store.get(TENANT, "cx-2") == settled
    assert (world.store.height(), world.store.outbox()) == (height, outbox)
    with pytest.raises(PaymentError) as info:
        world.service().cancel(TENANT, "no-such-payment")
    assert info.value.code is PaymentCode.PAYMENT_NOT_FOUND


def test_an_approved_request_is_not_cancelled(world: World) -> None:
    """Once the approval cleared the request, the coordinator may be signing it: the
    cancellation is refused whatever it finds (approved, being signed, or signed), the
    funds stay reserved, and the payment settles."""
    path = "m/26"
    fund_eth(world, "mia", path, 2 * ETHER)
    reserve_waiting(world, "cx-6", "mia", path)
    approved = decide(world, "acme:payment:cx-6:0", "acme-approver-1", ApprovalDecision.APPROVE)
    assert approved.state in (gpb.REQUEST_STATE_APPROVED, gpb.REQUEST_STATE_SIGNED)
    with pytest.raises(PaymentError) as info:
        world.service().cancel(TENANT, "cx-6")
    assert info.value.code in (
        PaymentCode.PAYMENT_NOT_CANCELLABLE,
        PaymentCode.PAYMENT_ALREADY_SIGNED,
    )
    assert world.store.get(TENANT, "cx-6").state == "RESERVED"
    assert world.store.balance(pending(TENANT, "mia", "ETH")) == BIG + MAX_FEE
    assert world.service().resume(TENANT, "cx-6").state == "SETTLED"
    with pytest.raises(PaymentError) as info:
        world.service().cancel(TENANT, "cx-6")
    assert info.value.code is PaymentCode.PAYMENT_ALREADY_SIGNED


def test_a_rejected_request_is_released_not_cancelled(world: World) -> None:
    path = "m/22"
    fund_eth(world, "ivan", path, 2 * ETHER)
    reserve_waiting(world, "cx-3", "ivan", path)
    decide(world, "acme:payment:cx-3:0", "acme-approver-2", ApprovalDecision.REJECT)
    out = world.service().cancel(TENANT, "cx-3")
    assert (out.state, out.error_code) == ("RELEASED", "APPROVAL_REJECTED")
    assert world.store.balance(customer(TENANT, "ivan", "ETH")) == 2 * ETHER
    with pytest.raises(PaymentError) as info:
        world.service().cancel(TENANT, "cx-3")
    assert info.value.code is PaymentCode.PAYMENT_ALREADY_RELEASED


def test_cancel_in_governance_then_resume_releases(world: World) -> None:
    """`custody approvals cancel` cancels the request alone (as if `payment cancel` had
    stopped after governance confirmed): resuming the payment then finds it cancelled
    and releases the funds."""
    path = "m/23"
    fund_eth(world, "jane", path, 2 * ETHER)
    reserve_waiting(world, "cx-4", "jane", path)
    data_dir = str(world.running.config.data_dir)
    gov_id = "acme:payment:cx-4:0"
    done = cli("approvals", "cancel", TENANT, gov_id, "--data-dir", data_dir, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "CANCELLED"
    again_args = ("--approver", "acme-approver-1")
    again = cli("approvals", "approve", TENANT, gov_id, "--data-dir", data_dir, *again_args)
    assert again.returncode == 1 and "REQUEST_CLOSED" in again.stderr, again.stderr
    out = world.service().resume(TENANT, "cx-4")
    assert (out.state, out.error_code) == ("CANCELLED", "REQUEST_CANCELLED")
    assert world.store.balance(customer(TENANT, "jane", "ETH")) == 2 * ETHER
    never_signed(world, "payment:cx-4:0")


def test_payment_cancel_from_the_command_line(world: World) -> None:
    path = "m/24"
    fund_eth(world, "kim", path, 2 * ETHER)
    reserve_waiting(world, "cx-5", "kim", path)
    data_dir = str(world.running.config.data_dir)
    done = cli("payment", "cancel", "--data-dir", data_dir, "cx-5", "--json")
    assert done.returncode == 0, done.stderr
    payment = json.loads(done.stdout)
    assert (payment["state"], payment["error_code"]) == ("CANCELLED", "PAYMENT_CANCELLED")
    again = cli("payment", "cancel", "--data-dir", data_dir, "cx-5")
    assert again.returncode == 1 and "PAYMENT_ALREADY_CANCELLED" in again.stderr, again.stderr
    assert world.store.balance(customer(TENANT, "kim", "ETH")) == 2 * ETHER


def test_cancel_racing_the_approval_never_leaves_a_signature_behind(world: World) -> None:
    """The approval that clears the request and the payment's cancellation are sent at
    once: either the payment is cancelled and its request is never signed, or the
    cancellation is refused and the payment settles; funds are released only in the
    first case."""
    path = "m/25"
    fund_eth(world, "liam", path, 8 * ETHER)
    for n in range(3):
        pid = f"cx-race-{n}"
        reserve_waiting(world, pid, "liam", path)
        gov_id = f"acme:payment:{pid}:0"
        results: dict[str, object] = {}
        barrier = threading.Barrier(2)

        def approve(
            gov_id: str = gov_id,
            results: dict[str, object] = results,
            go: threading.Barrier = barrier,
        ) -> None:
            go.wait()
            try:
                results["approve"] = decide(
                    world, gov_id, "acme-approver-1", ApprovalDecision.APPROVE
                ).state
            except grpc.RpcError as exc:
                results["approve"] = reason_of(exc)

        def cancel(
            pid: str = pid, results: dict[str, object] = results, go: threading.Barrier = barrier
        ) -> None:
            go.wait()
            try:
                results["cancel"] = world.service().cancel(TENANT, pid).state
            except PaymentError as exc:
                results["cancel"] = exc.code

        threads = [threading.Thread(target=approve), threading.Thread(target=cancel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if results["cancel"] == "CANCELLED":
            assert results["approve"] in ("REQUEST_CLOSED", gpb.REQUEST_STATE_PENDING_APPROVAL)
            never_signed(world, f"payment:{pid}:0")
            assert world.store.get(TENANT, pid).state == "CANCELLED"
        else:
            assert results["cancel"] in (
                PaymentCode.PAYMENT_NOT_CANCELLABLE,
                PaymentCode.PAYMENT_ALREADY_SIGNED,
            ), results
            assert world.store.get(TENANT, pid).state == "RESERVED"
            assert world.service().resume(TENANT, pid).state == "SETTLED"
    assert world.store.balance(pending(TENANT, "liam", "ETH")) == 0
