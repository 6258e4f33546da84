"""``custody hsm`` and ``custody backup``: typer apps for the custody CLI to mount::

    from custody.hsm_commands import backup_app, hsm_app
    app.add_typer(hsm_app, name="hsm")
    app.add_typer(backup_app, name="backup")

Each command reads the cluster from ``--data-dir`` (``custody.json`` and
``hsm.json``). Token PINs: ``--pin-file`` / ``--backup-pin-file``, else
``CUSTODY_NODE_<i>_HSM_PIN`` / ``CUSTODY_BACKUP_HSM_PIN``, else the
development profile's PIN files. Errors print ``error CODE: message`` on
stderr and exit with status 2; ``--json`` prints one JSON object on success.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from custody.backup import create_backups, restore_node, verify_backups
from custody.config import ClusterConfig, ConfigError
from custody.rotation import DEFAULT_SETTLE, NodeMaterial, rotate_node
from hsm.backup import BackupManifest
from hsm.deployment import HsmDeployment
from hsm.errors import HsmError
from hsm.sealer import Sealer

hsm_app = typer.Typer(no_args_is_help=True, help="Node HSM tokens and sealing keys.")
backup_app = typer.Typer(
    no_args_is_help=True, help="Backups of node shares to the backup token's key."
)

DATA_DIR = typer.Option(Path("./custody-data"), "--data-dir", "-d", help="cluster data directory")
NODE = typer.Option(..., "--node", help="node id")
PIN_FILE = typer.Option(None, "--pin-file", help="file holding the node token's PIN")
BACKUP_PIN_FILE = typer.Option(
    None, "--backup-pin-file", help="file holding the backup token's PIN"
)
JSON = typer.Option(False, "--json", help="print one JSON object")
OUT = typer.Option(..., "--out", help="directory for the node-<i>.backup files")
NODES = typer.Option([], "--node", help="node id (repeatable; default: every node)")
ONE_PIN_FILE = typer.Option(
    None, "--pin-file", help="PIN file of the node's token (with a single --node)"
)
PUBLIC_KEY = typer.Option(
    None, "--public-key", help="backup public key (PEM); default: the one custody init wrote"
)
PATHS = typer.Argument(..., help="backup files")
PATH = typer.Argument(..., help="the node's backup file")


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except HsmError as exc:
        typer.echo(f"error {exc.code}: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        typer.echo(f"error {exc.code}: {exc}", err=True)
        raise typer.Exit(2) from None


def _load(data_dir: Path) -> tuple[ClusterConfig, HsmDeployment]:
    return ClusterConfig.load(data_dir), HsmDeployment.load(data_dir)


def _out(as_json: bool, doc: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(doc, sort_keys=True) if as_json else text)


def _summary(path: Path, m: BackupManifest) -> dict[str, Any]:
    return {"file": str(path), "node": m.node_id, "cluster_id": m.cluster_id, "counts": m.counts}


@hsm_app.command("rotate")
def rotate(
    data_dir: Path = DATA_DIR,
    node: int = NODE,
    pin_file: Path | None = PIN_FILE,
    settle: float = typer.Option(
        DEFAULT_SETTLE,
        "--settle-seconds",
        help="wait before retiring the old key, so a running node switches first",
    ),
    as_json: bool = JSON,
) -> None:
    """Re-seal all of a node's material under a new sealing key; the node may keep running."""
    with _errors():
        config, deployment = _load(data_dir)
        token = deployment.node_token(node, deployment.node_pin(node, file=pin_file))
        with Sealer.open(token) as sealer:
            r = rotate_node(config, sealer, node, settle=max(0.0, settle))
        _out(
            as_json,
            {
                "node": node,
                "active_version": r.active_version,
                "resealed": r.resealed,
                "retired": list(r.retired),
            },
            f"node {node}: sealing key v{r.active_version}, {r.resealed} values re-sealed, "
            f"retired {', '.join(f'v{v}' for v in r.retired)}",
        )


@hsm_app.command("status")
def status(
    data_dir: Path = DATA_DIR,
    node: int = NODE,
    pin_file: Path | None = PIN_FILE,
    as_json: bool = JSON,
) -> None:
    """A node's sealing key versions and how many sealed values each key holds."""
    with _errors():
        config, deployment = _load(data_dir)
        token = deployment.node_token(node, deployment.node_pin(node, file=pin_file))
        with Sealer.open(token) as sealer:
            versions = sealer.key_versions()
        material = NodeMaterial(config, node)
        try:
            usage = dict(material.usage())
        finally:
            material.close()
        _out(
            as_json,
            {"node": node, "token": token.token_label, "key_versions": versions, "values": usage},
            f"node {node} token {token.token_label!r}: keys {versions}; values per key {usage}",
        )


@backup_app.command("create")
def create(
    data_dir: Path = DATA_DIR,
    out: Path = OUT,
    nodes: list[int] = NODES,
    pin_file: Path | None = ONE_PIN_FILE,
    public_key: Path | None = PUBLIC_KEY,
    as_json: bool = JSON,
) -> None:
    """Back up every node's shares and identity, encrypted to the backup key."""
    with _errors():
        config, deployment = _load(data_dir)
        ids = list(nodes) or [n.node_id for n in config.nodes]
        if pin_file is not None and len(ids) != 1:
            raise ConfigError("--pin-file needs exactly one --node")
        out.mkdir(parents=True, exist_ok=True)
        done = create_backups(
            config, deployment, out, ids, pin_file=pin_file, public_key=public_key
        )
        _out(
            as_json,
            {"backups": [_summary(p, m) for p, m in done]},
            "\n".join(f"{p}: node {m.node_id}, {m.counts}" for p, m in done),
        )


@backup_app.command("verify")
def verify(
    paths: list[Path] = PATHS,
    data_dir: Path = DATA_DIR,
    node: int | None = typer.Option(None, "--node", help="require this node's backup"),
    backup_pin_file: Path | None = BACKUP_PIN_FILE,
    as_json: bool = JSON,
) -> None:
    """Check backups inside the backup token; writes nothing."""
    with _errors():
        config, deployment = _load(data_dir)
        manifests = verify_backups(
            config, deployment, list(paths), node_id=node, backup_pin_file=backup_pin_file
        )
        _out(
            as_json,
            {"verified": [_summary(p, m) for p, m in zip(paths, manifests, strict=True)]},
            "\n".join(
                f"{p}: OK, node {m.node_id}, {m.counts}"
                for p, m in zip(paths, manifests, strict=True)
            ),
        )


@backup_app.command("restore")
def restore(
    path: Path = PATH,
    data_dir: Path = DATA_DIR,
    node: int = NODE,
    pin_file: Path | None = PIN_FILE,
    backup_pin_file: Path | None = BACKUP_PIN_FILE,
    as_json: bool = JSON,
) -> None:
    """Rebuild a stopped, wiped node into a fresh token (never nonces or presignatures)."""
    with _errors():
        config, deployment = _load(data_dir)
        r = restore_node(
            config, deployment, path, node, pin_file=pin_file, backup_pin_file=backup_pin_file
        )
        _out(
            as_json,
            {
                **_summary(path, r.manifest),
                "token_created": r.token_created,
                "pool_entries_discarded": r.pool_entries_discarded,
            },
            f"node {node} restored: {r.manifest.counts}"
            + (" into a new token" if r.token_created else "")
            + f"; {r.pool_entries_discarded} coordinator pool entries of the node discarded",
        )
