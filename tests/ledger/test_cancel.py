"""PaymentService.cancel on both databases, with the in-process threshold provider and a
stand-in for the approval wait: what is released (amount, fee, coins, nonce), what
each provider answer does to the payment, and that refusals change nothing. Through a
running cluster and its governance: tests/payments_service/test_cancel.py."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from custody.ledger import customer, pending
from custody.payments import (
    CancelRefused,
    PaymentCode,
    PaymentError,
    PaymentService,
    PaymentSpec,
    PaymentStore,
    SigningRefused,
    SigningUnavailable,
)
from custody.payments.spec import wallet_id
from policy.request import SigningRequest
from tests.ledger.conftest import key_of
from tests.ledger.threshold import ThresholdProvider

TENANT = "acme"
ETH_DEST = "0x52908400098527886E0F7030069857D2E4169EE7"
BTC_DEST = "bc1p2wsldez5mud2yam29q22wgfh9439spgduvct83k3pm50fcxa5dps59h4z5"
ETHER = 10**18
MAX_FEE = 21_000 * 30 * 10**9


@dataclasses.dataclass
class Waiting(ThresholdProvider):
    """Signs for real, except requests named in ``held`` (their approvals never come:
    ``APPROVAL_PENDING``); ``cancel`` answers ``answer`` (``None``: cancelled, and a
    cancelled request is refused from then on, as governance does)."""

    held: set[str] = dataclasses.field(default_factory=set)
    answer: Exception | None = None
    cancelled: list[str] = dataclasses.field(default_factory=list)

    def sign(self, request: SigningRequest) -> Any:
        if request.request_id in self.cancelled:
            raise SigningRefused("REQUEST_CANCELLED", "cancelled by its initiator")
        if request.request_id in self.held:
            raise SigningUnavailable("APPROVAL_PENDING", "waiting for approvals")
        return super().sign(request)

    def cancel(self, request: SigningRequest) -> None:
        if self.answer is not None:
            raise self.answer
        self.cancelled.append(request.request_id)


@pytest.fixture
def store(db_url: str) -> Iterator[PaymentStore]:
    s = PaymentStore(db_url)
    yield s
    s.engine.dispose()


def _eth(key: str, payment_id: str) -> PaymentSpec:
    return PaymentSpec(
        payment_id=payment_id,
        tenant=TENANT,
        customer_id="alice",
        key_id=key,
        path="m/0/7",
        chain="ethereum",
        destination=ETH_DEST,
        amount=ETHER,
    )


def _held(service: PaymentService, spec: PaymentSpec) -> None:
    with pytest.raises(PaymentError) as info:
        service.create(spec)
    assert info.value.code is PaymentCode.SIGNING_UNAVAILABLE
    assert service.store.get(TENANT, spec.payment_id).state == "RESERVED"


def test_cancel_releases_amount_fee_and_nonce(store: PaymentStore, provider: Any) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    store.deposit("d", TENANT, "alice", "ETH", 2 * ETHER, wallet_id("ethereum", key, "m/0/7"))
    p = Waiting(keys=provider.keys, held={"payment:e-1:0"})
    service = PaymentService(store, p)
    _held(service, _eth(key, "e-1"))
    assert store.balance(pending(TENANT, "alice", "ETH")) == ETHER + MAX_FEE
    done = service.cancel(TENANT, "e-1")
    assert (done.state, done.error_code) == ("CANCELLED", "PAYMENT_CANCELLED")
    assert p.cancelled == ["payment:e-1:0"]
    assert store.balance(customer(TENANT, "alice", "ETH")) == 2 * ETHER
    assert store.balance(pending(TENANT, "alice", "ETH")) == 0
    assert [e["kind"] for e in store.journal(TENANT)] == ["deposit", "reserve", "release"]
    assert service.resume(TENANT, "e-1") == done  # nothing left to sign
    height = store.height()
    with pytest.raises(PaymentError) as info:
        service.cancel(TENANT, "e-1")
    assert info.value.code is PaymentCode.PAYMENT_ALREADY_CANCELLED
    assert store.height() == height
    p.held.clear()
    assert service.create(_eth(key, "e-2")).nonce == done.nonce == 0


def test_cancel_frees_the_bitcoin_coins(store: PaymentStore, provider: Any) -> None:
    key = key_of(provider, "schnorr-bip340")
    for vout, amount in enumerate((60_000, 50_000)):
        store.deposit_coin(
            f"c{vout}",
            TENANT,
            "alice",
            chain="bitcoin",
            key_id=key,
            path="m",
            txid="ab" * 32,
            vout=vout,
            amount=amount,
        )
    spec = PaymentSpec(
        payment_id="b-1",
        tenant=TENANT,
        customer_id="alice",
        key_id=key,
        chain="bitcoin",
        destination=BTC_DEST,
        amount=75_000,
        fee_rate=4,
    )
    p = Waiting(keys=provider.keys, held={"payment:b-1:0"})
    service = PaymentService(store, p)
    _held(service, spec)
    done = service.cancel(TENANT, "b-1")
    assert done.state == "CANCELLED" and done.fee > 0
    assert store.balance(customer(TENANT, "alice", "BTC")) == 110_000
    again = service.create(dataclasses.replace(spec, payment_id="b-2"))  # the same coins
    assert again.state == "SETTLED"
    assert store.balance(customer(TENANT, "alice", "BTC")) == 110_000 - 75_000 - again.fee


def test_a_partly_signed_transaction_is_not_cancelled(store: PaymentStore, provider: Any) -> None:
    """Input 0 of a two-input spend is signed, input 1 waits: the payment holds a
    signature, so cancel refuses and the provider is not asked."""
    key = key_of(provider, "schnorr-bip340")
    for vout in (0, 1):
        store.deposit_coin(
            f"p{vout}",
            TENANT,
            "alice",
            chain="bitcoin",
            key_id=key,
            path="m",
            txid="cd" * 32,
            vout=vout,
            amount=40_000,
        )
    spec = PaymentSpec(
        payment_id="b-3",
        tenant=TENANT,
        customer_id="alice",
        key_id=key,
        chain="bitcoin",
        destination=BTC_DEST,
        amount=60_000,
    )
    p = Waiting(keys=provider.keys, held={"payment:b-3:1"})
    service = PaymentService(store, p)
    _held(service, spec)
    height = store.height()
    with pytest.raises(PaymentError) as info:
        service.cancel(TENANT, "b-3")
    assert info.value.code is PaymentCode.PAYMENT_ALREADY_SIGNED
    assert p.cancelled == [] and store.height() == height
    assert store.get(TENANT, "b-3").state == "RESERVED"


@pytest.mark.parametrize(
    ("answer", "code", "state"),
    [
        (CancelRefused("REQUEST_SIGNED"), PaymentCode.PAYMENT_ALREADY_SIGNED, "RESERVED"),
        (CancelRefused("REQUEST_APPROVED"), PaymentCode.PAYMENT_NOT_CANCELLABLE, "RESERVED"),
        (CancelRefused("REQUEST_NOT_PENDING"), PaymentCode.PAYMENT_NOT_CANCELLABLE, "RESERVED"),
        (SigningUnavailable("UNAVAILABLE"), PaymentCode.SIGNING_UNAVAILABLE, "RESERVED"),
        (SigningRefused("APPROVAL_REJECTED"), None, "RELEASED"),
    ],
)
def test_what_the_provider_answers_decides(
    store: PaymentStore,
    provider: Any,
    answer: Exception,
    code: PaymentCode | None,
    state: str,
) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    store.deposit("d", TENANT, "alice", "ETH", 2 * ETHER, wallet_id("ethereum", key, "m/0/7"))
    pid = f"a-{secrets.token_hex(3)}"
    service = PaymentService(store, Waiting(keys=provider.keys, held={f"payment:{pid}:0"}))
    _held(service, _eth(key, pid))
    service.provider.answer = answer  # type: ignore[attr-defined]
    height = store.height()
    if code is None:
        out = service.cancel(TENANT, pid)
        assert (out.state, out.error_code) == (state, "APPROVAL_REJECTED")
        assert store.balance(customer(TENANT, "alice", "ETH")) == 2 * ETHER
        with pytest.raises(PaymentError) as info:
            service.cancel(TENANT, pid)
        assert info.value.code is PaymentCode.PAYMENT_ALREADY_RELEASED
        return
    with pytest.raises(PaymentError) as info:
        service.cancel(TENANT, pid)
    assert info.value.code is code
    assert store.get(TENANT, pid).state == state and store.height() == height


def test_a_provider_that_cannot_cancel(store: PaymentStore, provider: Any) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    store.deposit("d", TENANT, "alice", "ETH", 2 * ETHER, wallet_id("ethereum", key, "m/0/7"))
    _held(
        PaymentService(store, Waiting(keys=provider.keys, held={"payment:n-1:0"})), _eth(key, "n-1")
    )
    with pytest.raises(PaymentError) as info:
        PaymentService(store, ThresholdProvider(keys=provider.keys)).cancel(TENANT, "n-1")
    assert info.value.code is PaymentCode.PAYMENT_NOT_CANCELLABLE
    assert store.get(TENANT, "n-1").state == "RESERVED"
