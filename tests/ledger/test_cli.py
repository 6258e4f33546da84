"""``ledger`` and ``payment`` command groups over a cluster configuration, signing with
the in-process threshold provider installed through the factory hook."""

from __future__ import annotations

import json
import secrets

import pytest
from embit.transaction import Transaction as EmbitTransaction
from eth_account import Account
from typer.testing import CliRunner

from custody.config import ClusterConfig, NodeEntry
from custody.ledger import liabilities_source
from custody.payments import cli
from custody.por.snapshot import load_liabilities
from tests.ledger.conftest import key_of
from tests.ledger.threshold import ThresholdProvider

ETH_DEST = "0x52908400098527886E0F7030069857D2E4169EE7"
MAX_FEE = 21_000 * 30 * 10**9
BTC_DEST = "bc1p2wsldez5mud2yam29q22wgfh9439spgduvct83k3pm50fcxa5dps59h4z5"
runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path, provider, monkeypatch):
    monkeypatch.delenv("CUSTODY_DATABASE_URL", raising=False)
    nodes = tuple(NodeEntry(i, f"127.0.0.1:{i}", bytes(32), bytes(32)) for i in (1, 2, 3))
    ClusterConfig(tmp_path, 2, "127.0.0.1:9", nodes, ("acme", "globex")).save()

    def limit(request, found):
        return "BLOCKED_BY_RULE" if found.amount > 10**18 else None

    cli.set_provider_factory(
        lambda config, tenant: ThresholdProvider(keys=provider.keys, policy=limit)
    )
    yield tmp_path
    cli.set_provider_factory(None)


def run(app, *args: str, code: int = 0) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if result.stdout.strip() else {}


def test_ethereum_payment_from_the_command_line(data_dir, provider) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    d = str(data_dir)
    common = ["--data-dir", d, "--chain", "ethereum", "--key", key]
    dep = run(cli.ledger_app, "deposit", *common, "--amount", str(3 * 10**18), "--id", "dep-1")
    assert dep == {"entry_id": "dep-1", "height": 1, "replayed": False}
    assert run(cli.ledger_app, "deposit", *common, "--amount", str(3 * 10**18), "--id", "dep-1")[
        "replayed"
    ]
    run(cli.ledger_app, "deposit", *common, "--operator", "--amount", str(10**17))
    payment = run(
        cli.payment_app,
        "create",
        *common,
        "--to",
        ETH_DEST,
        "--amount",
        str(10**18),
        "--id",
        "cli-1",
    )
    assert payment["state"] == "SETTLED"
    assert (payment["fee_payer"], payment["fee"], payment["fee_paid"]) == (
        "customer",
        str(MAX_FEE),
        None,
    )
    raw = bytes.fromhex(payment["raw_transaction"])
    assert Account.recover_transaction(raw) == payment["from_address"]
    assert run(cli.payment_app, "show", "--data-dir", d, "--id", "cli-1") == payment
    # a refusal: printed, exit status 1, funds back
    refused = run(
        cli.payment_app,
        "create",
        *common,
        "--to",
        ETH_DEST,
        "--amount",
        str(3 * 10**18 // 2),
        code=1,
    )
    assert refused["state"] == "RELEASED" and refused["error_code"] == "BLOCKED_BY_RULE"
    # the operator pays this one's fee
    op = run(
        cli.payment_app,
        "create",
        *common,
        "--to",
        ETH_DEST,
        "--amount",
        str(10**17),
        "--fee-payer",
        "operator",
        "--id",
        "cli-op",
    )
    assert (op["state"], op["fee_payer"]) == ("SETTLED", "operator")
    # the broadcaster reports the fee the chain took for cli-1: the rest comes back
    taken = 21_000 * 10**10
    done = run(
        cli.payment_app, "confirm", "--data-dir", d, "--id", "cli-1", "--fee-paid", str(taken)
    )
    assert done["fee_paid"] == str(taken)
    balances = run(cli.ledger_app, "balance", "--data-dir", d, "--customer", "main")
    left = 2 * 10**18 - 10**17 - taken
    assert {a["account"]: a["balance"] for a in balances["accounts"]} == {
        "customer:acme:main:ETH": str(left),
        "pending:acme:main:ETH": "0",
    }
    kinds = [e["kind"] for e in run(cli.ledger_app, "journal", "--data-dir", d)["entries"]]
    assert kinds == [
        *("deposit", "fund", "reserve", "settle", "reserve", "release"),
        *("reserve", "settle", "refund"),
    ]
    assert len(run(cli.payment_app, "outbox", "--data-dir", d)["outbox"]) == 1  # cli-op
    # Proof of Reserves reads the same books (custody/por checks the namespacing)
    rows = liabilities_source(ClusterConfig.load(d))()
    assert rows == [("acme/main", "ETH", left)]
    table = load_liabilities(rows, ("acme", "globex"))
    assert (table.assets, tuple(table.customer_ids)) == (("ETH",), ("acme/main",))
    # the other tenant sees none of it
    other = run(cli.ledger_app, "balance", "--data-dir", d, "--tenant", "globex")
    assert other["accounts"] == []


def test_bitcoin_payment_from_the_command_line(data_dir, provider) -> None:
    key = key_of(provider, "schnorr-bip340")
    d = str(data_dir)
    common = ["--data-dir", d, "--chain", "bitcoin", "--key", key, "--path", "m/3"]
    txid = secrets.token_hex(32)
    run(cli.ledger_app, "deposit", *common, "--amount", "90000", "--txid", txid, "--vout", "0")
    fees = secrets.token_hex(32)
    run(
        cli.ledger_app,
        "deposit",
        *common,
        "--operator",
        "--amount",
        "5000",
        "--txid",
        fees,
        "--vout",
        "1",
    )
    payment = run(
        cli.payment_app, "create", *common, "--to", BTC_DEST, "--amount", "40000", "--fee-rate", "2"
    )
    assert payment["state"] == "SETTLED" and payment["from_address"].startswith("bc1p")
    tx = EmbitTransaction.parse(bytes.fromhex(payment["raw_transaction"]))
    assert tx.txid().hex() == payment["txid"] and tx.vout[0].value == 40000
    # a Bitcoin deposit without its coin is refused as bad input
    result = runner.invoke(cli.ledger_app, ["deposit", *common, "--amount", "1"])
    assert result.exit_code == 2 and "PAYMENT_INVALID" in result.output


def test_errors_are_stable_codes(data_dir, provider, tmp_path) -> None:
    key = key_of(provider, "ecdsa-secp256k1")
    d = str(data_dir)
    result = runner.invoke(
        cli.payment_app,
        [
            "create",
            "--data-dir",
            d,
            "--chain",
            "ethereum",
            "--key",
            key,
            "--to",
            "0x12",
            "--amount",
            "1",
        ],
    )
    assert result.exit_code == 2 and "PAYMENT_INVALID" in result.output
    result = runner.invoke(
        cli.payment_app,
        [
            "create",
            "--data-dir",
            d,
            "--chain",
            "ethereum",
            "--key",
            key,
            "--to",
            ETH_DEST,
            "--amount",
            "1",
        ],
    )
    assert result.exit_code == 1 and "INSUFFICIENT_FUNDS" in result.output
    result = runner.invoke(
        cli.payment_app,
        [
            "create",
            "--data-dir",
            d,
            "--chain",
            "ethereum",
            "--key",
            key,
            "--to",
            ETH_DEST,
            "--amount",
            "1",
            "--fee-payer",
            "nobody",
        ],
    )
    assert result.exit_code == 2 and "PAYMENT_INVALID" in result.output
    result = runner.invoke(cli.payment_app, ["show", "--data-dir", d, "--id", "nope"])
    assert result.exit_code == 1 and "PAYMENT_NOT_FOUND" in result.output
    for args in (["--fee-paid", "-1"], ["--fee-paid", "1"]):
        result = runner.invoke(cli.payment_app, ["confirm", "--data-dir", d, "--id", "nope", *args])
        code = "FEE_INVALID" if args[1] == "-1" else "PAYMENT_NOT_FOUND"
        assert result.exit_code == (2 if code == "FEE_INVALID" else 1), result.output
        assert code in result.output
    result = runner.invoke(cli.payment_app, ["cancel", "--data-dir", d, "nope"])
    assert result.exit_code == 1 and "PAYMENT_NOT_FOUND" in result.output
    result = runner.invoke(cli.ledger_app, ["balance", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "CONFIG_INVALID" in result.output
