"""Worker functions for the multi-process tests (importable by ``spawn`` children)."""

from __future__ import annotations

from custody.ledger import Entry, LedgerError, LedgerStore, Leg, customer, pending
from custody.payments import PaymentError, PaymentService, PaymentSpec, PaymentStore
from signer_nodes.mpc.dkls23.keyshare import KeyShare
from tests.ledger.threshold import ThresholdProvider


def reserve_many(url: str, worker: int, attempts: int) -> list[str]:
    """Try ``attempts`` reservations of 1 unit; report each outcome."""
    store = LedgerStore(url)
    out = []
    for i in range(attempts):
        try:
            store.post(
                Entry(
                    f"w{worker}-{i}",
                    "reserve",
                    (Leg(customer("acme", "alice", "BTC"), pending("acme", "alice", "BTC"), 1),),
                )
            )
            out.append("ok")
        except LedgerError as exc:
            out.append(exc.code.value)
    store.engine.dispose()
    return out


def withdraw_many(
    url: str,
    worker: int,
    key_id: str,
    shares: dict[int, bytes],
    attempts: int,
    amount: int,
    fee_payer: str = "customer",
    customers: tuple[str, ...] = ("alice",),
) -> list[str]:
    """Full withdrawals (real DKLs23 signing in this process) of ``amount`` wei each,
    from ``customers`` in turn, with the network fee paid by ``fee_payer``."""
    provider = ThresholdProvider(
        keys={key_id: ("ecdsa-secp256k1", {i: KeyShare.from_bytes(b) for i, b in shares.items()})}
    )
    service = PaymentService(PaymentStore(url), provider)
    out = []
    for i in range(attempts):
        spec = PaymentSpec(
            payment_id=f"proc-{worker}-{i}",
            tenant="acme",
            customer_id=customers[i % len(customers)],
            key_id=key_id,
            path="m/0/7",
            chain="ethereum",
            destination="0x52908400098527886E0F7030069857D2E4169EE7",
            amount=amount,
            fee_payer=fee_payer,
        )
        try:
            payment = service.create(spec)
            out.append(f"{payment.state}:{payment.nonce}")
        except (LedgerError, PaymentError) as exc:
            out.append(exc.code.value)
    service.store.engine.dispose()
    return out
