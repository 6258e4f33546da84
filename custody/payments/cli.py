"""``custody ledger deposit|balance|journal`` and
``custody payment create|show|resume|cancel|confirm|outbox``.

Both groups open the payments store in the coordinator's database
(``ClusterConfig.coordinator_database_url()``, i.e. ``CUSTODY_DATABASE_URL`` or the
SQLite file in the data dir). ``custody/cli.py`` mounts them::

    from custody.payments.cli import ledger_app, payment_app
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(payment_app, name="payment")

Signing goes through the provider factory's :class:`SignatureProvider`; by default the
running cluster's custody API as the tenant's initiator
(:class:`custody.payments.grpc_provider.CustodyServiceProvider`), which
``set_provider_factory(factory)`` replaces (``None`` restores the default). The ledger
commands need no signer. Amounts are integers in minor units (wei, satoshi). Without
``--customer`` a command acts on the tenant's own account, ``main``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from custody.config import ClusterConfig, ConfigError
from custody.ledger import LedgerError
from custody.payments.errors import PaymentError
from custody.payments.provider import SignatureProvider, Waiting
from custody.payments.service import PaymentService, PaymentStore
from custody.payments.service import confirm as confirm_fee
from custody.payments.spec import DEFAULT_FEE_PAYER, FEE_PAYERS, GWEI, PaymentSpec, wallet_id
from policy.payloads.chains import CHAINS

ProviderFactory = Callable[[ClusterConfig, str], SignatureProvider]
DEFAULT_CUSTOMER = "main"
DEFAULT_WAIT = 60.0


def service_provider(config: ClusterConfig, tenant: str) -> SignatureProvider:
    """The default factory: the cluster's custody API (imported on first use, so the
    ``custody`` command starts as fast as before)."""
    from custody.payments.grpc_provider import service_provider as make

    return make(config, tenant)


_provider_factory: ProviderFactory = service_provider


def set_provider_factory(factory: ProviderFactory | None) -> None:
    """Install how ``payment`` commands obtain a :class:`SignatureProvider` for a tenant
    (``None``: the default, :func:`service_provider`)."""
    global _provider_factory
    _provider_factory = factory or service_provider


def provider_for(
    config: ClusterConfig, tenant: str, wait: float | None = None
) -> SignatureProvider:
    """The tenant's provider; ``wait`` (seconds) bounds how long the service provider
    waits for signing and approvals before the payment is left ``RESERVED``."""
    provider = _provider_factory(config, tenant)
    if wait is not None and isinstance(provider, Waiting):
        provider.timeout = wait
    return provider


ledger_app = typer.Typer(no_args_is_help=True, help="Double-entry books: deposits, balances.")
payment_app = typer.Typer(no_args_is_help=True, help="Withdrawals signed by threshold keys.")
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True)

DATA_DIR = typer.Option(Path("./custody-data"), "--data-dir", "-d", help="cluster data directory")
JSON = typer.Option(False, "--json", help="print one JSON object")
TENANT = typer.Option(None, "--tenant", help="tenant (default: the first of the cluster)")
CUSTOMER = typer.Option(DEFAULT_CUSTOMER, "--customer", help="customer account id")
CHAIN = typer.Option(..., "--chain", help=" | ".join(CHAINS))
KEY = typer.Option(..., "--key", help="key id")
PATH = typer.Option("m", "--path", help="BIP32 path of the wallet address (non-hardened)")
WAIT = typer.Option(
    DEFAULT_WAIT, "--wait", min=0.0, help="seconds to wait for signing and approvals"
)
_INPUT_CODES = {
    "PAYMENT_INVALID",
    "ENTRY_INVALID",
    "AMOUNT_INVALID",
    "ACCOUNT_INVALID",
    "KEY_NOT_FOUND",
    "FEE_INVALID",
}


def _fail(code: str, message: str, exit_code: int | None = None) -> NoReturn:
    err.print(f"[red]error[/red] {code}: {message}", markup=True)
    raise typer.Exit(exit_code if exit_code is not None else 2 if code in _INPUT_CODES else 1)


def _open(data_dir: Path, tenant: str | None) -> tuple[ClusterConfig, PaymentStore, str]:
    try:
        config = ClusterConfig.load(data_dir)
    except ConfigError as exc:
        _fail(exc.code, str(exc), 2)
    chosen = tenant or config.tenants[0]
    if chosen not in config.tenants:
        _fail("TENANT_UNKNOWN", f"{chosen!r} is not a tenant of this cluster", 2)
    config.coordinator_dir.mkdir(parents=True, exist_ok=True)
    return config, PaymentStore(config.coordinator_database_url()), chosen


def _amount(text: str) -> int:
    if not text.isdigit():
        _fail("AMOUNT_INVALID", "amounts are non-negative integers in minor units", 2)
    return int(text)


def _emit(obj: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        out.print(json.dumps(obj, sort_keys=True), markup=False)
    else:
        for line in lines:
            out.print(line, markup=False)


# -- ledger -------------------------------------------------------------------------


@ledger_app.command("deposit")
def deposit(
    data_dir: Path = DATA_DIR,
    chain: str = CHAIN,
    key: str = KEY,
    path: str = PATH,
    amount: str = typer.Option(..., "--amount", help="minor units"),
    asset: str = typer.Option("", "--asset", help="default: the chain's native asset"),
    customer: str = CUSTOMER,
    operator: bool = typer.Option(
        False, "--operator", help="the operator's own funds (pays network fees)"
    ),
    txid: str = typer.Option("", "--txid", help="Bitcoin: the deposit's transaction id"),
    vout: int = typer.Option(-1, "--vout", help="Bitcoin: the deposit's output index"),
    entry_id: str = typer.Option("", "--id", help="idempotency id (default: random)"),
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """Record funds received into the wallet of KEY at PATH for a customer."""
    _, store, tenant_id = _open(data_dir, tenant)
    if chain not in CHAINS:
        _fail("PAYMENT_INVALID", f"unknown chain {chain!r}")
    n = _amount(amount)
    the_asset = asset or CHAINS[chain].native_asset
    eid = entry_id or f"deposit-{secrets.token_hex(8)}"
    who = None if operator else customer
    try:
        if CHAINS[chain].family == "bitcoin":
            if not txid or vout < 0 or the_asset != CHAINS[chain].native_asset:
                _fail("PAYMENT_INVALID", "a Bitcoin deposit names its coin: --txid and --vout")
            posted = store.deposit_coin(
                eid,
                tenant_id,
                who,
                chain=chain,
                key_id=key,
                path=path,
                txid=txid,
                vout=vout,
                amount=n,
            )
        elif who is None:
            posted = store.fund(eid, tenant_id, the_asset, n, wallet_id(chain, key, path))
        else:
            posted = store.deposit(eid, tenant_id, who, the_asset, n, wallet_id(chain, key, path))
    except (LedgerError, PaymentError) as exc:
        _fail(exc.code, str(exc).split(": ", 1)[-1])
    _emit(
        {"entry_id": posted.entry_id, "height": posted.height, "replayed": posted.replayed},
        as_json,
        [f"{eid}: height {posted.height}{' (already posted)' if posted.replayed else ''}"],
    )


@ledger_app.command("balance")
def balance(
    data_dir: Path = DATA_DIR,
    customer: str | None = typer.Option(None, "--customer", help="only this customer"),
    height: int | None = typer.Option(None, "--height", help="as of this journal height"),
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """Every account's balance (natural sign: never negative)."""
    _, store, tenant_id = _open(data_dir, tenant)
    rows = [
        (a, n)
        for a, n in store.balances(tenant_id, height)
        if customer is None or (a.kind in ("customer", "pending") and a.owner == customer)
    ]
    at = store.height() if height is None else height
    _emit(
        {
            "tenant": tenant_id,
            "height": at,
            "accounts": [
                {
                    "account": a.label(),
                    "kind": a.kind,
                    "owner": a.owner,
                    "asset": a.asset,
                    "balance": str(n),
                }
                for a, n in rows
            ],
        },
        as_json,
        [f"height {at}"] + [f"{a.label():60} {n}" for a, n in rows],
    )


@ledger_app.command("journal")
def show_journal(
    data_dir: Path = DATA_DIR,
    after: int = typer.Option(0, "--after", help="entries above this height"),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """Journal entries with their legs, oldest first."""
    _, store, tenant_id = _open(data_dir, tenant)
    entries = store.journal(tenant_id, after, limit)
    lines = []
    for e in entries:
        lines.append(f"#{e['height']} {e['kind']} {e['entry_id']}")
        lines += [f"    {g['debit']} -> {g['credit']}  {g['amount']}" for g in e["legs"]]
    _emit({"tenant": tenant_id, "entries": entries}, as_json, lines)


# -- payments -----------------------------------------------------------------------


def _print_payment(payment: dict[str, Any], as_json: bool) -> None:
    lines = [
        f"payment {payment['payment_id']}: {payment['state']}",
        f"  {payment['amount']} {payment['asset']} on {payment['chain']}"
        f" from {payment['from_address']} to {payment['destination']}",
        f"  fee {payment['fee']} {payment['fee_asset']} paid by the {payment['fee_payer']}"
        + (f" ({payment['fee_paid']} taken by the chain)" if payment["fee_paid"] else ""),
    ]
    if payment["txid"]:
        lines += [f"  txid {payment['txid']}", f"  raw  {payment['raw_transaction']}"]
    if payment["error_code"]:
        lines.append(f"  error {payment['error_code']}: {payment['error_message']}")
    _emit(payment, as_json, lines)


@payment_app.command("create")
def create(
    data_dir: Path = DATA_DIR,
    key: str = KEY,
    chain: str = CHAIN,
    to: str = typer.Option(..., "--to", help="destination address"),
    amount: str = typer.Option(..., "--amount", help="minor units (wei, satoshi)"),
    asset: str = typer.Option("", "--asset", help="default: native; ERC-20: e.g. USDC"),
    path: str = PATH,
    customer: str = CUSTOMER,
    payment_id: str = typer.Option("", "--id", help="idempotency id (default: random)"),
    fee_rate: int = typer.Option(10, "--fee-rate", help="Bitcoin: sat/vB"),
    max_fee: int = typer.Option(30 * GWEI, "--max-fee-per-gas", help="Ethereum: wei"),
    priority_fee: int = typer.Option(GWEI, "--priority-fee", help="Ethereum: wei"),
    gas: int = typer.Option(0, "--gas", help="Ethereum: gas limit (default by kind)"),
    fee_payer: str = typer.Option(
        DEFAULT_FEE_PAYER,
        "--fee-payer",
        help=f"{' | '.join(FEE_PAYERS)}: who pays the network fee (the customer: on top"
        " of the amount, in the chain's native asset)",
    ),
    wait: float = WAIT,
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """Reserve, sign through the cluster, and put the signed transaction in the outbox.
    A payment still waiting for approvals after --wait stays RESERVED (resume it)."""
    config, store, tenant_id = _open(data_dir, tenant)
    try:
        spec = PaymentSpec(
            payment_id=payment_id or f"pay-{secrets.token_hex(8)}",
            tenant=tenant_id,
            customer_id=customer,
            key_id=key,
            path=path,
            chain=chain,
            asset=asset,
            destination=to,
            amount=_amount(amount),
            fee_rate=fee_rate,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority_fee,
            gas=gas,
            fee_payer=fee_payer,
        )
        payment = PaymentService(store, provider_for(config, tenant_id, wait)).create(spec)
    except (LedgerError, PaymentError) as exc:
        _fail(exc.code, str(exc).split(": ", 1)[-1])
    _print_payment(payment.to_json(), as_json)
    if payment.state != "SETTLED":
        raise typer.Exit(1)


@payment_app.command("show")
def show(
    data_dir: Path = DATA_DIR,
    payment_id: str = typer.Option(..., "--id", help="payment id"),
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """A payment's state, transaction and error."""
    _, store, tenant_id = _open(data_dir, tenant)
    try:
        payment = store.get(tenant_id, payment_id)
    except PaymentError as exc:
        _fail(exc.code, str(exc).split(": ", 1)[-1])
    _print_payment(payment.to_json(), as_json)


@payment_app.command("resume")
def resume(
    data_dir: Path = DATA_DIR,
    payment_id: str = typer.Option(..., "--id", help="payment id"),
    wait: float = WAIT,
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """Finish a payment left RESERVED after SIGNING_UNAVAILABLE."""
    config, store, tenant_id = _open(data_dir, tenant)
    try:
        payment = PaymentService(store, provider_for(config, tenant_id, wait)).resume(
            tenant_id, payment_id
        )
    except (LedgerError, PaymentError) as exc:
        _fail(exc.code, str(exc).split(": ", 1)[-1])
    _print_payment(payment.to_json(), as_json)
    if payment.state != "SETTLED":
        raise typer.Exit(1)


@payment_app.command("cancel")
def cancel(
    payment_id: str = typer.Argument(..., help="payment id"),
    data_dir: Path = DATA_DIR,
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """Cancel a withdrawal waiting for approvals and release its funds: its signing
    request is cancelled at the cluster first (signed by the tenant's initiator), so it
    can never be signed afterwards. Exit 0 once the funds are back."""
    config, store, tenant_id = _open(data_dir, tenant)
    try:
        payment = PaymentService(store, provider_for(config, tenant_id)).cancel(
            tenant_id, payment_id
        )
    except (LedgerError, PaymentError) as exc:
        _fail(exc.code, str(exc).split(": ", 1)[-1])
    _print_payment(payment.to_json(), as_json)
    if payment.state not in ("CANCELLED", "RELEASED"):
        raise typer.Exit(1)


@payment_app.command("confirm")
def confirm(
    data_dir: Path = DATA_DIR,
    payment_id: str = typer.Option(..., "--id", help="payment id"),
    fee_paid: str = typer.Option(
        ..., "--fee-paid", help="the network fee the chain took (Ethereum: gasUsed x price)"
    ),
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """Record a settled transaction as included with the fee it paid; the unused part of
    the booked fee goes back to whoever paid it."""
    _, store, tenant_id = _open(data_dir, tenant)
    if not fee_paid.isdigit():
        _fail("FEE_INVALID", "--fee-paid: a non-negative integer in minor units")
    try:
        payment = confirm_fee(store, tenant_id, payment_id, int(fee_paid))
    except (LedgerError, PaymentError) as exc:
        _fail(exc.code, str(exc).split(": ", 1)[-1])
    _print_payment(payment.to_json(), as_json)


@payment_app.command("outbox")
def outbox(data_dir: Path = DATA_DIR, as_json: bool = JSON) -> None:
    """Signed transactions waiting for broadcast."""
    _, store, _ = _open(data_dir, None)
    rows = store.outbox()
    _emit(
        {"outbox": rows},
        as_json,
        [f"{r['id']} {r['chain']} {r['txid']} ({r['tenant']}/{r['payment_id']})" for r in rows],
    )


__all__ = [
    "ledger_app",
    "payment_app",
    "provider_for",
    "service_provider",
    "set_provider_factory",
]
