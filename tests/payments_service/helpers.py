"""What the tests of a running cluster share: the keys and store (``World``), payment
specs and funding, reads of the coordinator's records, approvers' decisions, a payment
running in the background, and the ``custody`` command in a subprocess."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from bip32 import BIP32
from eth_keys import keys as eth_keys

from custody._pb.custody.governance.v1 import governance_pb2 as gpb
from custody._pb.custody.v1 import custody_pb2 as pb
from custody.client import OperationFailed
from custody.governance.client import GovernanceClient
from custody.governance.genesis import approver_key_path, governance_root
from custody.governance.keys import load_private_key
from custody.payments import Payment, PaymentService, PaymentSpec, PaymentStore
from custody.payments.grpc_provider import CustodyServiceProvider
from custody.payments.spec import GWEI, wallet_id
from policy.request import ApprovalDecision
from tests.service.conftest import RunningCluster

TENANT = "acme"
ETH_DEST = "0x52908400098527886E0F7030069857D2E4169EE7"
BTC_DEST = "bc1p2wsldez5mud2yam29q22wgfh9439spgduvct83k3pm50fcxa5dps59h4z5"
ETHER = 10**18
FINNEY = 10**15
MAX_FEE = 21_000 * 30 * GWEI  # default gas * default max fee per gas: the customer pays it


@dataclasses.dataclass
class World:
    running: RunningCluster
    ecdsa: pb.Key
    bip340: pb.Key
    store: PaymentStore
    provider: CustodyServiceProvider

    def service(self, **kw: Any) -> PaymentService:
        return PaymentService(self.store, self.provider, **kw)

    def provider_with(self, timeout: float) -> CustodyServiceProvider:
        return CustodyServiceProvider.from_data_dir(
            self.running.config.data_dir, TENANT, timeout=timeout
        )


def open_world(running: RunningCluster) -> Iterator[World]:
    """Two keys (ECDSA and BIP340) of ``acme``, the payments store in the coordinator's
    database, and a provider signing as ``acme-initiator`` (the ``world`` fixture)."""
    with running.client(TENANT) as client:
        ecdsa = client.create_key("ecdsa-secp256k1")
        bip340 = client.create_key("schnorr-bip340")
    store = PaymentStore(running.config.coordinator_database_url())
    provider = CustodyServiceProvider.from_data_dir(running.config.data_dir, TENANT, timeout=30)
    try:
        yield World(running, ecdsa, bip340, store, provider)
    finally:
        provider.close()
        store.engine.dispose()


def eth_spec(world: World, payment_id: str, who: str, path: str, amount: int) -> PaymentSpec:
    return PaymentSpec(
        payment_id=payment_id,
        tenant=TENANT,
        customer_id=who,
        key_id=world.ecdsa.key_id,
        path=path,
        chain="ethereum",
        destination=ETH_DEST,
        amount=amount,
    )


def fund_eth(world: World, who: str, path: str, amount: int) -> None:
    """``who`` deposits ``amount``; the operator funds the wallet's network fees."""
    w = wallet_id("ethereum", world.ecdsa.key_id, path)
    world.store.deposit(f"dep-{who}", TENANT, who, "ETH", amount, w)
    world.store.fund(f"fees-{who}", TENANT, "ETH", 10**17, w)


def eth_address(world: World, path: str) -> str:
    """The address of the key's BIP32 child at ``path``, derived with the ``bip32``
    package from the root key and chain code (not the service's DeriveKey)."""
    child = BIP32(chaincode=world.ecdsa.chain_code, pubkey=world.ecdsa.public_key)
    public = child.get_pubkey_from_path(path)
    address: str = eth_keys.PublicKey.from_compressed_bytes(public).to_checksum_address()
    return address


def api_request(world: World, request_id: str) -> pb.SignatureRequest:
    with world.running.client(TENANT) as client:
        found: pb.SignatureRequest = client.stub.GetSignatureRequest(
            pb.GetSignatureRequestRequest(request_id=request_id)
        )
        return found


def decide(world: World, request_id: str, approver: str, decision: ApprovalDecision) -> Any:
    data_dir = world.running.config.data_dir
    key = load_private_key(approver_key_path(governance_root(data_dir), approver))
    with GovernanceClient.from_data_dir(data_dir) as gov:
        return gov.decide(TENANT, request_id, approver, key, decision=decision)


def await_pending(world: World, request_id: str, timeout: float = 20.0) -> gpb.RequestDecision:
    deadline = time.monotonic() + timeout
    with GovernanceClient.from_data_dir(world.running.config.data_dir) as gov:
        while time.monotonic() < deadline:
            for d in gov.pending(TENANT):
                if d.request.request_id == request_id:
                    return d
            time.sleep(0.1)
    raise AssertionError(f"{request_id} never waited for approvals")


def await_signers(world: World, timeout: float = 20.0) -> None:
    """Until the coordinator reaches the restarted nodes again (its channels reconnect
    with a backoff of up to 2 s): a message signed with the ECDSA key."""
    deadline = time.monotonic() + timeout
    with world.running.client(TENANT) as client:
        while True:
            try:
                client.sign(world.ecdsa.key_id, message=b"are the signers back?")
                return
            except OperationFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


class Background(threading.Thread):
    """Runs ``fn`` while the test acts as the approver."""

    def __init__(self, fn: Callable[[], Payment]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Payment | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc

    def outcome(self, timeout: float = 40.0) -> Payment:
        self.join(timeout)
        assert not self.is_alive(), "the payment did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "custody", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=False,
    )
