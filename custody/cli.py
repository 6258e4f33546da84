"""The ``custody`` command line: init, up, key, sign, demo."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import grpc
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from custody.config import ConfigError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="MPC custody service command line."
)
key_app = typer.Typer(no_args_is_help=True, help="Create, list and derive threshold keys.")
app.add_typer(key_app, name="key")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DATA_DIR = typer.Option(Path("./custody-data"), "--data-dir", "-d", help="cluster data directory")
JSON = typer.Option(False, "--json", help="print one JSON object")
DEMO_DIR = typer.Option(
    None, "--data-dir", "-d", help="where to create the demo cluster (default: temp)"
)


def fail(code: str, message: str, exit_code: int = 1) -> None:
    err_console.print(f"[red]error[/red] {code}: {message}")
    raise typer.Exit(exit_code)


def _rpc_error(exc: grpc.RpcError) -> None:
    from signer_nodes.grpc_errors import reason_of

    reason = reason_of(exc) or exc.code().name
    fail(reason, exc.details() or "request failed")


@app.callback()
def _root() -> None:
    """MPC custody: threshold keys and signatures, no single holder of a key."""


@app.command()
def init(
    data_dir: Path = DATA_DIR,
    nodes: int = typer.Option(3, "--nodes", "-n", help="number of signer nodes"),
    threshold: int = typer.Option(2, "--threshold", "-t", help="signers needed"),
    tenant: str = typer.Option("acme", "--tenant", help="name of the first tenant"),
) -> None:
    """Create a local CA, certificates, node identities and configuration."""
    from custody.init import init_cluster

    try:
        config = init_cluster(data_dir, nodes, threshold, (tenant,))
    except ConfigError as exc:
        fail(exc.code, str(exc), 2)
    console.print(
        f"initialised {config.data_dir}: {nodes} nodes, threshold {threshold}, tenant {tenant!r}"
    )


@app.command()
def up(data_dir: Path = DATA_DIR) -> None:
    """Start every signer node and the coordinator; Ctrl-C stops them."""
    from custody.cluster import Cluster, ClusterError
    from custody.config import ClusterConfig

    try:
        config = ClusterConfig.load(data_dir)
    except ConfigError as exc:
        fail(exc.code, str(exc), 2)
    cluster = Cluster(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with console.status(f"starting {len(config.nodes)} signer nodes and the coordinator"):
        try:
            cluster.start()
        except ClusterError as exc:
            fail(exc.code, str(exc))
    summary = f"{len(config.nodes)} nodes, t={config.threshold}"
    console.print(f"ready: API at {config.coordinator_address} ({summary})", highlight=False)
    try:
        stop.wait()
    finally:
        cluster.stop()
        console.print("stopped")


def _client(data_dir: Path) -> Any:
    from custody.client import CustodyClient

    try:
        return CustodyClient.from_data_dir(data_dir)
    except ConfigError as exc:
        fail(exc.code, str(exc), 2)


@key_app.command("create")
def key_create(
    data_dir: Path = DATA_DIR,
    scheme: str = typer.Option(
        ..., "--scheme", help="ecdsa-secp256k1 | eddsa-ed25519 | schnorr-bip340"
    ),
    as_json: bool = JSON,
) -> None:
    """Run distributed key generation on every node."""
    from custody.client import SCHEMES, OperationFailed

    if scheme not in SCHEMES:
        fail("INVALID_ARGUMENT", f"--scheme must be one of {', '.join(SCHEMES)}", 2)
    with _client(data_dir) as client:
        try:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=as_json,
            ) as bar:
                keygen = bar.add_task(f"distributed key generation ({scheme})", total=1)
                pools = bar.add_task("signing pools (nonces / presignatures)", total=None)

                def show(op: Any) -> None:
                    if op.stage == "pools":
                        bar.update(keygen, completed=1)
                        bar.update(
                            pools, completed=op.progress_done, total=op.progress_total or None
                        )

                key = client.create_key(scheme, progress=show)
                bar.update(keygen, completed=1)
                bar.update(
                    pools, completed=bar.tasks[pools].total or 1, total=bar.tasks[pools].total or 1
                )
        except grpc.RpcError as exc:
            _rpc_error(exc)
        except OperationFailed as exc:
            fail(exc.code, str(exc))
    out = {
        "key_id": key.key_id,
        "scheme": scheme,
        "public_key": key.public_key.hex(),
        "chain_code": key.chain_code.hex(),
    }
    console.print_json(json.dumps(out)) if as_json else console.print(out)


@key_app.command("list")
def key_list(data_dir: Path = DATA_DIR, as_json: bool = JSON) -> None:
    """List this tenant's keys."""
    from custody.client import SCHEME_NAMES

    with _client(data_dir) as client:
        try:
            keys = client.list_keys()
        except grpc.RpcError as exc:
            _rpc_error(exc)
    rows = [
        {"key_id": k.key_id, "scheme": SCHEME_NAMES[k.scheme], "public_key": k.public_key.hex()}
        for k in keys
    ]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("key_id", "scheme", "public_key")
    for r in rows:
        table.add_row(r["key_id"], r["scheme"], r["public_key"])
    console.print(table)


@key_app.command("derive")
def key_derive(
    data_dir: Path = DATA_DIR,
    key: str = typer.Option(..., "--key"),
    path: str = typer.Option(..., "--path"),
    as_json: bool = JSON,
) -> None:
    """The public key at a BIP32 non-hardened path."""
    with _client(data_dir) as client:
        try:
            d = client.derive(key, path)
        except grpc.RpcError as exc:
            _rpc_error(exc)
    out = {
        "key_id": key,
        "path": path,
        "public_key": d.public_key.hex(),
        "chain_code": d.chain_code.hex(),
    }
    console.print_json(json.dumps(out)) if as_json else console.print(out)


def _hex(value: str, name: str) -> bytes:
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        fail("INVALID_ARGUMENT", f"{name} must be hex")
        raise


@app.command()
def sign(
    data_dir: Path = DATA_DIR,
    key: str = typer.Option(..., "--key", help="key id"),
    digest: str = typer.Option(None, "--digest", help="32-byte digest, hex"),
    message: str = typer.Option(None, "--message", help="message, hex"),
    path: str = typer.Option("", "--path", help="BIP32 path, e.g. m/0/1"),
    request_id: str = typer.Option(None, "--request-id", help="idempotency key"),
    as_json: bool = JSON,
) -> None:
    """Request a threshold signature."""
    from custody.client import OperationFailed

    if (digest is None) == (message is None):
        fail("INVALID_ARGUMENT", "pass exactly one of --digest or --message", 2)
    kwargs: dict[str, Any] = (
        {"digest": _hex(digest, "--digest")}
        if digest is not None
        else {"message": _hex(message, "--message")}
    )
    with _client(data_dir) as client:
        try:
            r = client.sign(key, path=path, request_id=request_id, **kwargs)
        except grpc.RpcError as exc:
            _rpc_error(exc)
        except OperationFailed as exc:
            fail(exc.code, str(exc))
    out: dict[str, Any] = {
        "request_id": r.request_id,
        "key_id": r.key_id,
        "signature": r.signature.hex(),
        "public_key": r.public_key.hex(),
        "signers": list(r.signers),
    }
    if r.recovery_id >= 0:
        out["recovery_id"] = r.recovery_id
    console.print_json(json.dumps(out)) if as_json else console.print(out)


@app.command()
def demo(
    data_dir: Path | None = DEMO_DIR,
    in_process: bool = typer.Option(
        False, "--in-process", help="run the protocol cores in one process instead"
    ),
) -> None:
    """Init a 3-node cluster, start it, create keys, sign, verify independently."""
    if in_process:
        from custody.demo import run_in_process_demo

        ok = run_in_process_demo(console)
    else:
        from custody.demo import run_cluster_demo

        ok = run_cluster_demo(console, data_dir)
    if not ok:
        raise typer.Exit(1)


def _mount_subcommands() -> None:
    """Command groups that live next to their subsystems."""
    from custody.governance.cli import approvals_app, audit_app, policy_app
    from custody.hsm_commands import backup_app, hsm_app
    from custody.payments.cli import ledger_app, payment_app
    from custody.por.cli import make_por_app

    app.add_typer(hsm_app, name="hsm")
    app.add_typer(backup_app, name="backup")
    app.add_typer(policy_app, name="policy")
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(audit_app, name="audit")
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(payment_app, name="payment")
    app.add_typer(make_por_app(), name="por")  # liabilities: the ledger at the cut-off


_mount_subcommands()


def main() -> None:
    app()
