"""``custody backup create | verify | restore`` on a cluster data dir.

- *create* writes ``<out>/node-<i>.backup`` for each node: its shares and
  identity, unsealed in the node's token and encrypted to the backup public
  key (:func:`hsm.backup.create_backup`). Pool entries (nonces,
  presignatures) are never included. Either every requested file is written
  or none.
- *verify* decrypts a backup inside the backup token, and checks that each
  share is the node's share of the key named by its public key package and
  that the identity is the node's identity in ``custody.json``.
- *restore* rebuilds one node into a fresh token: the node must have no
  identity file and no share (wipe them first). Every check that needs no
  HSM runs first; in the development profile a missing token is then created
  (and removed again if the restore fails); the records are decrypted in the
  backup token, checked, re-sealed under the node's token and committed in
  one transaction. Finally the coordinator's unused pool entries that involve
  the node are discarded: they name nonces and presignatures that the node no
  longer has.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import MetaData, inspect, select, update
from sqlalchemy.engine import make_url

from custody.config import ClusterConfig
from custody.node_records import NodeShareStore, check_record
from hsm.backup import (
    BackupKeyHolder,
    BackupManifest,
    BackupPublicKey,
    check_manifest,
    create_backup,
    read_manifest,
    restore_backup,
    verify_backup,
)
from hsm.config import PinSource
from hsm.deployment import HsmDeployment
from hsm.errors import Code, HsmError
from hsm.sealer import Sealer
from hsm.softhsm import delete_token, provision_token, token_labels
from signer_nodes.db import make_engine


def backup_name(node_id: int) -> str:
    return f"node-{node_id}.backup"


def _public_key(deployment: HsmDeployment, path: Path | None = None) -> BackupPublicKey:
    path = path or deployment.public_key_path
    try:
        return BackupPublicKey.from_pem(path.read_bytes())
    except FileNotFoundError:
        raise HsmError(Code.BACKUP_KEY_NOT_FOUND, f"backup public key {path} not found") from None
    except ValueError as exc:
        raise HsmError(Code.BACKUP_KEY_NOT_FOUND, f"{path}: {exc}") from None


@contextmanager
def _backup_holder(deployment: HsmDeployment, pin: PinSource) -> Iterator[BackupKeyHolder]:
    holder = BackupKeyHolder.open(deployment.backup_token(pin), label=deployment.backup.key_label)
    try:
        yield holder
    finally:
        holder.close()


def create_backups(
    config: ClusterConfig,
    deployment: HsmDeployment,
    out_dir: Path,
    node_ids: list[int],
    *,
    pin_file: Path | None = None,
    public_key: Path | None = None,
) -> list[tuple[Path, BackupManifest]]:
    """One backup file per node in ``out_dir``, encrypted to the backup key
    (``public_key``: a PEM file instead of the data dir's); all written or none."""
    public = _public_key(deployment, public_key)
    done: list[tuple[Path, BackupManifest]] = []
    try:
        for node_id in node_ids:
            path = out_dir / backup_name(node_id)
            store = NodeShareStore(config, node_id)
            try:
                pin = deployment.node_pin(node_id, file=pin_file)
                with Sealer.open(deployment.node_token(node_id, pin)) as sealer:
                    manifest = create_backup(
                        path,
                        sealer=sealer,
                        store=store,
                        cluster_id=deployment.cluster_id,
                        public_key=public,
                        oaep_hash=deployment.oaep_hash,
                    )
            finally:
                store.close()
            done.append((path, manifest))
    except BaseException:
        for path, _ in done:
            path.unlink(missing_ok=True)
        raise
    return done


def verify_backups(
    config: ClusterConfig,
    deployment: HsmDeployment,
    paths: list[Path],
    *,
    node_id: int | None = None,
    backup_pin_file: Path | None = None,
) -> list[BackupManifest]:
    """Check each backup inside the backup token; writes nothing."""
    out = []
    with _backup_holder(deployment, deployment.backup_pin(file=backup_pin_file)) as holder:
        for path in paths:
            owner = read_manifest(path).node_id
            if node_id is not None and owner != node_id:
                raise HsmError(
                    Code.BACKUP_WRONG_NODE, f"{path} is a backup of node {owner}, not {node_id}"
                )
            config.node(owner)
            out.append(
                verify_backup(
                    path,
                    holder,
                    cluster_id=deployment.cluster_id,
                    node_id=owner,
                    check=partial(check_record, config, owner),
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class RestoreReport:
    manifest: BackupManifest
    token_created: bool
    pool_entries_discarded: int


def restore_node(
    config: ClusterConfig,
    deployment: HsmDeployment,
    path: Path,
    node_id: int,
    *,
    pin_file: Path | None = None,
    backup_pin_file: Path | None = None,
) -> RestoreReport:
    """Rebuild node ``node_id`` from ``path``; the node must be stopped and empty."""
    config.node(node_id)
    check_manifest(
        read_manifest(path),
        backup_key_fingerprint=_public_key(deployment).fingerprint,
        cluster_id=deployment.cluster_id,
        node_id=node_id,
    )
    store = NodeShareStore(config, node_id)
    try:
        if not store.is_empty():
            raise HsmError(
                Code.RESTORE_TARGET_NOT_EMPTY,
                f"node {node_id} still has an identity or key shares; a restore rebuilds a "
                "wiped node only (stop it, remove its database and identity.sealed)",
            )
        pin = deployment.node_pin(node_id, file=pin_file)
        created = _ensure_token(deployment, node_id, pin)
        try:
            with (
                _backup_holder(deployment, deployment.backup_pin(file=backup_pin_file)) as holder,
                Sealer.open(deployment.node_token(node_id, pin)) as target,
            ):
                manifest = restore_backup(
                    path,
                    holder,
                    target=target,
                    store=store,
                    cluster_id=deployment.cluster_id,
                    check=partial(check_record, config, node_id),
                )
        except BaseException:
            if created and deployment.home is not None:
                delete_token(deployment.home, deployment.node_label(node_id))
            raise
    finally:
        store.close()
    return RestoreReport(manifest, created, discard_pool_entries(config, node_id))


def _ensure_token(deployment: HsmDeployment, node_id: int, pin: PinSource) -> bool:
    """Development profile: create the node's token if it is missing (keeping
    the node's PIN file if there is one). Must run before this process loads
    the PKCS#11 module, which sees only the tokens that exist at that moment."""
    home = deployment.home
    label = deployment.node_label(node_id)
    if home is None or label in token_labels(home):
        return False
    keep = pin if pin.file is not None and pin.file.exists() else None
    provision_token(home, label, pin=keep, module_path=deployment.module_path)
    return True


def discard_pool_entries(config: ClusterConfig, node_id: int) -> int:
    """Mark the coordinator's unused pool entries that involve ``node_id`` as
    used (FROST nonce commitments of the node, presignatures it took part
    in), so the coordinator never hands them out; returns how many. Nothing
    to do if the coordinator has no database yet."""
    url = make_url(config.coordinator_database_url())
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return 0
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        names = set(inspect(engine).get_table_names())
        metadata = MetaData()
        metadata.reflect(
            engine, only=[n for n in ("pool_nonces", "pool_presignatures") if n in names]
        )
        count = 0
        with engine.begin() as conn:
            nonces = metadata.tables.get("pool_nonces")
            if nonces is not None:
                result = conn.execute(
                    update(nonces)
                    .where(nonces.c.node_id == node_id, nonces.c.state == "unused")
                    .values(state="used")
                )
                count += int(result.rowcount)
            presigs = metadata.tables.get("pool_presignatures")
            if presigs is not None:
                rows = conn.execute(
                    select(presigs.c.presignature_id, presigs.c.signers).where(
                        presigs.c.state == "unused"
                    )
                )
                ids = [r[0] for r in rows if str(node_id) in str(r[1]).split(",")]
                if ids:
                    result = conn.execute(
                        update(presigs)
                        .where(presigs.c.presignature_id.in_(ids), presigs.c.state == "unused")
                        .values(state="used")
                    )
                    count += int(result.rowcount)
        return count
    finally:
        engine.dispose()
