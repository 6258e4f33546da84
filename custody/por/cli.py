"""``custody por``: take and publish a Proof-of-Reserves snapshot of a running cluster.

``custody por snapshot --data-dir D --out DIR [--liabilities CSV] [--assets CSV]``
reads the liabilities (the ledger as it stood at the cut-off,
:mod:`custody.por.ledger`, or a CSV for dry runs), rounds them up to each asset's
PoR unit (``--unit``), has every custody key threshold-sign the snapshot's challenge
through the custody API, signs the snapshot with the service key
(``<data-dir>/coordinator/por-snapshot.key``, created on first use), stores it in
the coordinator database (from where ProofService serves it) and writes
``DIR/snapshot.json`` and ``DIR/proofs/``.

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
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from custody.config import ClusterConfig, ConfigError
from custody.por.errors import SnapshotCode, SnapshotError

if TYPE_CHECKING:  # the CLI imports its heavy modules (grpc, numpy, SQLAlchemy) per command
    from custody.por.client import ProofClient
    from custody.por.snapshot import CustodyKey, LiabilitySource
    from proofs.build import BuiltSnapshot, Liabilities, ServiceSigner

LedgerFactory = Callable[[ClusterConfig], "LiabilitySource"]
_INPUT_CODES = {
    SnapshotCode.CUSTOMER_NAMESPACE,
    SnapshotCode.UNKNOWN_KEY,
    SnapshotCode.NO_LIABILITIES_SOURCE,
    SnapshotCode.SERVICE_KEY_INVALID,
    SnapshotCode.CUTOFF_IN_FUTURE,
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
OUT_FILE = typer.Option(..., "--out", help="file to write (must not exist)")
IDENTITY = typer.Option(
    "auditor", "--as", help="client certificate to use: auditor (default) or a tenant"
)
KEYS = typer.Option([], "--key", help="custody key proving control, no balance (repeatable)")
UNITS = typer.Option(
    [],
    "--unit",
    help="PoR unit of an asset as ASSET=EXPONENT: 10^EXPONENT minor units (repeatable;"
    " default ETH=9, every other asset 0)",
)


def _fail(code: str, detail: str, exit_code: int, as_json: bool) -> NoReturn:
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


T = TypeVar("T")


def _call(data_dir: Path, identity: str, as_json: bool, fn: Callable[[ProofClient], T]) -> T:
    """``fn`` on a ProofService client as ``identity``; failures exit 2 (config) or 1."""
    import grpc

    from custody.por.client import ProofClient
    from signer_nodes.grpc_errors import reason_of

    try:
        with ProofClient.from_data_dir(data_dir, identity) as client:
            return fn(client)
    except ConfigError as exc:
        _fail(exc.code, str(exc), 2, as_json)
    except grpc.RpcError as exc:
        _fail(reason_of(exc) or exc.code().name, str(exc.details()), 1, as_json)


def _summary(s: Any) -> dict[str, Any]:
    return {
        "snapshot_id": s.snapshot_id,
        "cutoff": s.cutoff,
        "created_at": s.created_at,
        "root_hash": s.root_hash,
        "leaf_count": s.leaf_count,
        "assets": list(s.assets),
        "service_public_key": s.service_public_key,
        "publish_time": s.publish_time,
    }


def _write_new(path: Path, text: str, as_json: bool) -> None:
    try:
        with open(path, "x", encoding="ascii") as fh:
            fh.write(text)
    except OSError as exc:
        _fail("POR_IO", f"cannot write {path}: {exc.strerror}", 2, as_json)


def _done(as_json: bool, result: dict[str, Any]) -> None:
    if as_json:
        print(json.dumps({"ok": True, **result}))
    else:
        print(f"wrote {result['out']} ({result['snapshot_id']})")


def _parse_units(values: list[str]) -> dict[str, int]:
    from custody.por.snapshot import DEFAULT_UNIT_EXPONENTS
    from proofs import fields as f
    from proofs.units import MAX_EXPONENT

    out = dict(DEFAULT_UNIT_EXPONENTS)
    for value in values:
        asset, sep, exponent = value.partition("=")
        if not (
            sep
            and f.ASSET_RE.fullmatch(asset)
            and exponent.isascii()
            and exponent.isdigit()
            and int(exponent) <= MAX_EXPONENT
        ):
            raise typer.BadParameter(
                f"expected ASSET=EXPONENT with EXPONENT in 0..{MAX_EXPONENT}", param_hint="--unit"
            )
        out[asset] = int(exponent)
    return out


def make_por_app(ledger: LedgerFactory | None = None) -> typer.Typer:
    """The ``por`` command group.

    Without ``--liabilities`` a snapshot reads the cluster's ledger (coordinator
    database) as it stood at the cut-off (:func:`custody.por.ledger.ledger_at_cutoff`).
    ``ledger`` is accepted for callers written when a factory of the *current* books
    was passed in; it is not used, because the current books are not the books at
    the cut-off (a deposit made after it would be counted).
    """
    app = typer.Typer(no_args_is_help=True, help="Proof of Reserves: snapshots and proofs.")

    @app.command()
    def snapshot(
        data_dir: Path = DATA_DIR,
        out: Path = OUT,
        liabilities: Path | None = LIABILITIES,
        assets: Path | None = ASSETS,
        keys: list[str] = KEYS,
        unit: list[str] = UNITS,
        tenant: str | None = typer.Option(
            None, "--tenant", help="only this tenant's keys may be custody keys (default: any)"
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
                _parse_units(unit),
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

    @app.command("list")
    def list_snapshots(
        data_dir: Path = DATA_DIR,
        identity: str = IDENTITY,
        as_json: bool = JSON,
    ) -> None:
        """Published snapshots, newest first (ProofService, as the auditor by default)."""
        rows = _call(data_dir, identity, as_json, lambda c: [_summary(s) for s in c.snapshots()])
        if as_json:
            print(json.dumps({"ok": True, "snapshots": rows}))
        else:
            for row in rows:
                print(
                    f"{row['snapshot_id']}  cutoff {row['cutoff']}  {row['leaf_count']} customers"
                )

    @app.command("get")
    def get_snapshot(
        data_dir: Path = DATA_DIR,
        snapshot_id: str = typer.Option("", "--snapshot-id", help="default: the newest"),
        out_file: Path = OUT_FILE,
        identity: str = IDENTITY,
        as_json: bool = JSON,
    ) -> None:
        """Fetch a published snapshot.json, byte for byte, for ``custody-por audit``."""
        got = _call(data_dir, identity, as_json, lambda c: c.snapshot(snapshot_id))
        _write_new(out_file, got.snapshot_json, as_json)
        _done(as_json, {"snapshot_id": got.summary.snapshot_id, "out": str(out_file)})

    @app.command("proof")
    def get_proof(
        data_dir: Path = DATA_DIR,
        customer: str = typer.Option(..., "--customer", help="<tenant>/<account>"),
        snapshot_id: str = typer.Option("", "--snapshot-id", help="default: the newest"),
        out_file: Path = OUT_FILE,
        identity: str | None = typer.Option(
            None, "--as", help="tenant certificate to use (default: the customer's tenant)"
        ),
        as_json: bool = JSON,
    ) -> None:
        """Fetch a customer's inclusion proof, for ``custody-por verify`` (tenants only)."""
        who = identity or customer.partition("/")[0]
        got = _call(data_dir, who, as_json, lambda c: c.proof(customer, snapshot_id))
        _write_new(out_file, got.proof_json, as_json)
        _done(as_json, {"snapshot_id": got.snapshot_id, "out": str(out_file)})

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
    unit_exponents: dict[str, int],
) -> dict[str, Any]:
    from custody.por.keys import default_key_path, ensure_snapshot_key
    from custody.por.ledger import ledger_at_cutoff
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
    ledger_height: int | None = None
    if liabilities_csv is not None:
        source = read_liabilities_csv(liabilities_csv)
    else:
        books = ledger_at_cutoff(config, cutoff)
        source, ledger_height = books.rows, books.height
    liabilities = load_liabilities(source, config.tenants, unit_exponents)
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
        "ledger_height": ledger_height,
        "unit_exponents": dict(zip(snap.assets, snap.unit_exponents, strict=True)),
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
    from contextlib import ExitStack

    from custody.client import CustodyClient
    from custody.governance.genesis import por_initiator_id
    from custody.por.snapshot import ClusterChallengeSigner, take_snapshot

    tenants = [tenant] if tenant is not None else list(config.tenants)
    with ExitStack() as stack:
        clients = {  # each tenant's attestation-only initiator signs for that tenant's keys
            t: stack.enter_context(
                CustodyClient.from_data_dir(config.data_dir, t, por_initiator_id(t))
            )
            for t in tenants
        }
        signer = ClusterChallengeSigner(clients)
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
