"""``hsm`` and ``backup`` command groups, for the ``custody`` CLI to mount::

    from hsm.cli import backup_app, hsm_app
    app.add_typer(hsm_app, name="hsm")
    app.add_typer(backup_app, name="backup")

Development layout (SoftHSM2): ``<data-dir>/hsm`` is the
:class:`~hsm.softhsm.SoftHsmHome` with tokens ``node-<i>`` and ``backup``,
PIN files in ``<data-dir>/hsm/pins``; node ``i``'s sealed records live in
``<data-dir>/node-<i>/sealed.db`` until the node database takes them over.
Errors print ``error CODE: message`` and exit with status 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from hsm.backup import BackupKeyHolder, BackupPublicKey, create_backup, restore_backup
from hsm.backup import verify_backup as _verify
from hsm.config import HsmConfig
from hsm.errors import HsmError
from hsm.sealer import Sealer
from hsm.softhsm import SoftHsmHome, provision_tokens
from hsm.store import SqliteSealedStore, retire_old_keys, rotate_store

hsm_app = typer.Typer(no_args_is_help=True, help="Node HSM tokens and sealing keys.")
backup_app = typer.Typer(no_args_is_help=True, help="Backups of node shares to the backup key.")

DATA_DIR = typer.Option(Path("data"), "--data-dir", help="cluster data directory")
PUBLIC_KEY = typer.Option(None, "--public-key", help="backup key PEM; default the data dir's")


def _home(data_dir: Path) -> SoftHsmHome:
    return SoftHsmHome(data_dir / "hsm")


def _config(data_dir: Path, label: str) -> HsmConfig:
    return _home(data_dir).config(label)


def _store(data_dir: Path, node: int) -> SqliteSealedStore:
    return SqliteSealedStore(data_dir / f"node-{node}" / "sealed.db", node)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except HsmError as exc:
        typer.echo(f"error {exc.code}: {exc.message}", err=True)
        raise typer.Exit(2) from None


@hsm_app.command("init")
def init(data_dir: Path = DATA_DIR, nodes: int = typer.Option(3, "--nodes", "-n")) -> None:
    """Create one SoftHSM2 token per node and the backup token, their keys and PIN files."""
    with _errors():
        labels = [f"node-{i}" for i in range(1, nodes + 1)]
        configs = provision_tokens(_home(data_dir), [*labels, "backup"])
        for label in labels:
            Sealer.open(configs[label], create_key=True).close()
        try:
            holder = BackupKeyHolder.open(configs["backup"])
        except HsmError:
            holder = BackupKeyHolder.generate(configs["backup"])
        (data_dir / "hsm" / "backup-key.pem").write_bytes(holder.public_key.to_pem())
        typer.echo(
            f"tokens ready in {_home(data_dir).root}; backup key {holder.public_key.fingerprint}"
        )
        holder.close()


@hsm_app.command("rotate")
def rotate(data_dir: Path = DATA_DIR, node: int = typer.Option(..., "--node")) -> None:
    """Re-seal all of one node's records under a new sealing key, then retire the old ones."""
    with _errors():
        store = _store(data_dir, node)
        with Sealer.open(_config(data_dir, f"node-{node}")) as sealer:
            report = rotate_store(sealer, store)
            retired = retire_old_keys(sealer, [store])
        typer.echo(
            f"node {node}: active key v{report.active_version}, {report.resealed} resealed, "
            f"{report.unchanged} already current, retired {retired}"
        )


@backup_app.command("create")
def create(
    out: Path,
    data_dir: Path = DATA_DIR,
    node: int = typer.Option(..., "--node"),
    cluster_id: str = typer.Option(..., "--cluster-id"),
    public_key: Path | None = PUBLIC_KEY,
) -> None:
    """Back up one node's shares, encrypted to the backup public key."""
    with _errors():
        pem = public_key or data_dir / "hsm" / "backup-key.pem"
        config = _config(data_dir, f"node-{node}")
        with Sealer.open(config) as sealer:
            m = create_backup(
                out,
                sealer=sealer,
                store=_store(data_dir, node),
                cluster_id=cluster_id,
                public_key=BackupPublicKey.from_pem(pem.read_bytes()),
                oaep_hash=config.oaep_hash,
            )
        typer.echo(f"{out}: node {m.node_id}, {m.counts}")


@backup_app.command("verify")
def verify(
    path: Path,
    data_dir: Path = DATA_DIR,
    node: int = typer.Option(None, "--node"),
    cluster_id: str = typer.Option(None, "--cluster-id"),
) -> None:
    """Check a backup inside the backup token; writes nothing."""
    with _errors():
        holder = BackupKeyHolder.open(_config(data_dir, "backup"))
        try:
            m = _verify(path, holder, cluster_id=cluster_id, node_id=node)
        finally:
            holder.close()
        typer.echo(f"{path}: OK, cluster {m.cluster_id}, node {m.node_id}, {m.counts}")


@backup_app.command("restore")
def restore(
    path: Path,
    data_dir: Path = DATA_DIR,
    node: int = typer.Option(..., "--node"),
    cluster_id: str = typer.Option(..., "--cluster-id"),
    token: str = typer.Option(..., "--token", help="label of the fresh token to restore into"),
) -> None:
    """Rebuild a node's shares into a fresh token (never presignatures or nonces)."""
    with _errors():
        holder = BackupKeyHolder.open(_config(data_dir, "backup"))
        try:
            with Sealer.open(_config(data_dir, token)) as target:
                m = restore_backup(
                    path, holder, target=target, store=_store(data_dir, node), cluster_id=cluster_id
                )
        finally:
            holder.close()
        typer.echo(f"node {node} restored into token {token!r}: {m.counts}")
