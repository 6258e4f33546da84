"""``custody por``: take and publish a Proof-of-Reserves snapshot of a running cluster.

``custody por snapshot --data-dir D --out DIR [--liabilities CSV] [--assets CSV]``
reads the liabilities (the ledger, or a CSV for dry runs), has every custody key
threshold-sign the snapshot's challenge through the custody API, signs the
snapshot with the service key (``<data-dir>/coordinator/por-snapshot.key``,
created on first use), stores it in the coordinator database (from where
ProofService serves it) and writes ``DIR/snapshot.json`` and ``DIR/proofs/``.

Every input is checked before anything is signed or written; on any failure
nothing is published. Exit codes: 0 published; 1 the cluster did not sign or the
snapshot id is taken; 2 bad input, I/O or usage. Errors print
``error <CODE>: <detail>`` with the stable codes of ``docs/por-format.md``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from custody.config import ClusterConfig, ConfigError
from custody.por.errors import SnapshotCode, SnapshotError

if TYPE_CHECKING:  # the CLI imports its heavy modules (grpc, numpy, SQLAlchemy) per command
    from custody.por.snapshot import CustodyKey, LiabilitySource
    from proofs.build import BuiltSnapshot, Liabilities, ServiceSigner

LedgerFactory = Callable[[ClusterConfig], "LiabilitySource"]
_INPUT_CODES = {
    SnapshotCode.CUSTOMER_NAMESPACE,
    SnapshotCode.UNKNOWN_KEY,
    SnapshotCode.NO_LIABILITIES_SOURCE,
    SnapshotCode.SERVICE_KEY_INVALID,
}

DATA_DIR = typer.Option(Path("./custody-data"), "--data-dir", "-d", help="cluster data directory")
JSON = typer.Option(False, "--json", help="print one JSON object")
OUT = typer.Option(..., "--out", help="output directory (must not exist)")
LIABILITIES = typer.Option(
    None, "--liabilities", help="CSV customer_id,asset,amount (dry run; default: the ledger)"
)
ASSETS = typer.Option(
    None, "--assets", help="CSV key_id,[address,]asset,amount: custody keys and their balances"
)
KEYS = typer.Option([], "--key", help="custody key proving control, no balance (repeatable)")


def _fail(code: str, detail: str, exit_code: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": False, "code": code, "detail": detail}))
    else:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error[/red] {code}: {detail}", markup=True
        )
    raise typer.Exit(exit_code)


def _parse_cutoff(text: str | None) -> str:
    from custody.por.snapshot import timestamp
    from proofs import fields as f

    if text is None:
        return timestamp(dt.datetime.now(dt.UTC))
    if not f.TIME_RE.fullmatch(text):
        raise typer.BadParameter("expected YYYY-MM-DDTHH:MM:SSZ", param_hint="--cutoff")
    return text


def make_por_app(ledger: LedgerFactory | None = None) -> typer.Typer:
    """The ``por`` command group; ``ledger`` supplies liabilities when no CSV is given."""
    app = typer.Typer(no_args_is_help=True, help="Proof of Reserves: snapshots and proofs.")

    @app.command()
    def snapshot(
        data_dir: Path = DATA_DIR,
        out: Path = OUT,
        liabilities: Path | None = LIABILITIES,
        assets: Path | None = ASSETS,
        keys: list[str] = KEYS,
        tenant: str | None = typer.Option(
            None, "--tenant", help="tenant whose keys are the custody keys (default: first)"
        ),
        cutoff: str | None = typer.Option(None, "--cutoff", help="YYYY-MM-DDTHH:MM:SSZ"),
        snapshot_id: str | None = typer.Option(None, "--snapshot-id"),
        as_json: bool = JSON,
    ) -> None:
        """Take, sign and publish a snapshot; write snapshot.json and one proof per customer."""
        from proofs.errors import PorError, PorVerificationError

        try:
            result = _snapshot(
                data_dir,
                out,
                liabilities,
                assets,
                keys,
                tenant,
                _parse_cutoff(cutoff),
                snapshot_id,
                ledger,
            )
        except ConfigError as exc:
            _fail(exc.code, str(exc), 2, as_json)
        except SnapshotError as exc:
            _fail(exc.code.value, exc.detail, 2 if exc.code in _INPUT_CODES else 1, as_json)
        except PorError as exc:
            _fail(
                exc.code.value,
                exc.detail,
                1 if isinstance(exc, PorVerificationError) else 2,
                as_json,
            )
        if as_json:
            print(json.dumps(result))
        else:
            print(
                f"published {result['snapshot_id']} ({result['leaf_count']} customers,"
                f" {result['custody_keys']} custody keys) to {result['out']}\n"
                f"root {result['root_hash']}\nservice key {result['service_public_key']}"
            )

    @app.command("service-key")
    def service_key(data_dir: Path = DATA_DIR, as_json: bool = JSON) -> None:
        """Print the snapshot-signing public key that auditors pin (created if missing)."""
        from custody.por.keys import default_key_path, ensure_snapshot_key

        try:
            config = ClusterConfig.load(data_dir)
            signer = ensure_snapshot_key(default_key_path(config.coordinator_dir))
        except ConfigError as exc:
            _fail(exc.code, str(exc), 2, as_json)
        except SnapshotError as exc:
            _fail(exc.code.value, exc.detail, 2, as_json)
        key = signer.public_key.hex()
        print(json.dumps({"ok": True, "service_public_key": key}) if as_json else key)

    return app


def _snapshot(
    data_dir: Path,
    out: Path,
    liabilities_csv: Path | None,
    assets_csv: Path | None,
    zero_keys: list[str],
    tenant: str | None,
    cutoff: str,
    snapshot_id: str | None,
    ledger: LedgerFactory | None,
) -> dict[str, Any]:
    from custody.por.keys import default_key_path, ensure_snapshot_key
    from custody.por.publish import check_output_dir, publish
    from custody.por.snapshot import CustodyKey, custody_keys_from_csv, load_liabilities
    from custody.por.store import SnapshotStore
    from proofs.rows import read_liabilities_csv

    config = ClusterConfig.load(data_dir)
    if tenant is not None and tenant not in config.tenants:
        raise typer.BadParameter(f"no tenant {tenant!r} in this cluster", param_hint="--tenant")
    out = out.resolve()
    check_output_dir(out)
    source: LiabilitySource
    if liabilities_csv is not None:
        source = read_liabilities_csv(liabilities_csv)
    elif ledger is not None:
        source = ledger(config)
    else:
        raise SnapshotError(
            SnapshotCode.NO_LIABILITIES_SOURCE, "no ledger is configured; pass --liabilities CSV"
        )
    liabilities = load_liabilities(source, config.tenants)
    custody = custody_keys_from_csv(assets_csv) if assets_csv is not None else []
    custody += [CustodyKey(key_id=k) for k in zero_keys]
    store = SnapshotStore(config.coordinator_database_url())
    try:
        if snapshot_id is not None and store.get_snapshot(snapshot_id) is not None:
            raise SnapshotError(
                SnapshotCode.SNAPSHOT_EXISTS, f"snapshot {snapshot_id} is already published"
            )
        service = ensure_snapshot_key(default_key_path(config.coordinator_dir))
        built = _sign(config, tenant, liabilities, custody, service, cutoff, snapshot_id)
        publish(built, store, out)
    finally:
        store.engine.dispose()
    snap = built.snapshot
    return {
        "ok": True,
        "snapshot_id": snap.snapshot_id,
        "cutoff": snap.cutoff,
        "root_hash": snap.root_hash.hex(),
        "leaf_count": snap.leaf_count,
        "custody_keys": len(snap.custody),
        "liabilities": dict(zip(snap.assets, map(str, snap.liabilities), strict=True)),
        "reserves": dict(zip(snap.assets, map(str, snap.reserves), strict=True)),
        "service_public_key": snap.service_public_key.hex(),
        "out": str(out),
    }


def _sign(
    config: ClusterConfig,
    tenant: str | None,
    liabilities: Liabilities,
    custody: list[CustodyKey],
    service: ServiceSigner,
    cutoff: str,
    snapshot_id: str | None,
) -> BuiltSnapshot:
    from custody.client import CustodyClient
    from custody.governance.genesis import por_initiator_id
    from custody.por.snapshot import ClusterChallengeSigner, take_snapshot

    tenant = tenant or config.tenants[0]
    initiator = por_initiator_id(tenant)  # the tenant's attestation-only initiator
    with CustodyClient.from_data_dir(config.data_dir, tenant, initiator) as client:
        signer = ClusterChallengeSigner(client)
        signer.check_keys(k.key_id for k in custody)
        return take_snapshot(
            liabilities,
            custody=custody,
            sign_challenge=signer,
            service=service,
            cutoff=cutoff,
            snapshot_id=snapshot_id,
        )


por_app = make_por_app()
