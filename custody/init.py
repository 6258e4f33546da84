"""``custody init``: a complete local cluster configuration in one directory.

Creates, atomically (built in a sibling temp dir, then renamed into place):
the CA; per node a server certificate, an Ed25519/X25519 identity (generated
and sealed inside the node's HSM token, :mod:`custody.hsm_setup`) and its
directory; the HSM deployment (``hsm.json``; by default SoftHSM2 tokens for
every node and the backup key under ``hsm/``, with PIN files of mode 0600);
the coordinator's server and client certificates; a client certificate per
tenant; the auditor's client certificate (``auditor/``: reads Proof-of-Reserves
snapshots, holds no tenant's keys); ``custody.json`` with free loopback ports. A
failure leaves nothing: the tokens live inside the temp dir until the rename.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

from custody.config import CONFIG_FILE, ClusterConfig, ConfigError, NodeEntry
from custody.governance.genesis import governance_root, init_governance
from custody.hsm_setup import setup_hsm
from custody.pki import (
    AUDITOR_CLIENT,
    AUDITOR_DIR,
    COORDINATOR_CLIENT,
    RESERVED_NAMES,
    CertificateAuthority,
)
from hsm.deployment import HsmDeployment

MAX_NODES = 15


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _valid_tenant(name: str) -> bool:
    return (
        1 <= len(name) <= 64
        and all(c.isalnum() or c in "-_" for c in name)
        and name not in RESERVED_NAMES
    )


def init_cluster(
    data_dir: Path,
    nodes: int,
    threshold: int,
    tenants: tuple[str, ...] = ("acme",),
    host: str = "127.0.0.1",
    *,
    hsm_config: Path | None = None,
) -> ClusterConfig:
    """``hsm_config``: an ``hsm.json`` naming existing tokens of a vendor HSM
    (PINs from ``CUSTODY_NODE_<i>_HSM_PIN`` / ``CUSTODY_BACKUP_HSM_PIN``);
    default: the SoftHSM2 development profile. HSM failures raise
    :class:`~custody.hsm_setup.HsmSetupError` (a ``ConfigError`` whose ``code``
    is the HSM layer's, e.g. ``HSM_MODULE_NOT_FOUND``)."""
    data_dir = data_dir.resolve()
    if not 1 <= threshold <= nodes <= MAX_NODES:
        raise ConfigError(f"need 1 <= threshold <= nodes <= {MAX_NODES}")
    if not tenants or not all(_valid_tenant(t) for t in tenants):
        raise ConfigError(
            "tenant names are 1-64 characters [A-Za-z0-9_-], other than"
            f" {' and '.join(sorted(RESERVED_NAMES))}"
        )
    if (data_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{data_dir} already holds a cluster; choose another --data-dir")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ConfigError(f"{data_dir} exists and is not empty")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}-init-", dir=data_dir.parent))
    try:
        ca = CertificateAuthority.create()
        ca.save(staging / "ca")
        node_ids = list(range(1, nodes + 1))
        for i in node_ids:
            ca.issue(
                f"node-{i}", "node", staging / f"node-{i}", "server", server=True, client=False
            )
        identities = setup_hsm(staging, node_ids, hsm_config=hsm_config)
        entries = [
            NodeEntry(
                i,
                f"{host}:{free_port(host)}",
                identities[i].signing_key,
                identities[i].encryption_key,
            )
            for i in node_ids
        ]
        cdir = staging / "coordinator"
        ca.issue(COORDINATOR_CLIENT, "coordinator", cdir, "server", server=True, client=False)
        ca.issue(COORDINATOR_CLIENT, "coordinator", cdir, "client", server=False, client=True)
        ca.issue(
            AUDITOR_CLIENT, "auditor", staging / AUDITOR_DIR, "client", server=False, client=True
        )
        for tenant in tenants:
            ca.issue(
                tenant, "tenant", staging / "tenants" / tenant, "client", server=False, client=True
            )
        # Governance (dev profile): officer, initiator and approver keys and the starter
        # policy signed by the officer quorum; every node and the coordinator pin genesis.
        genesis = init_governance(governance_root(staging), tenants)
        for i in node_ids:
            genesis.install(staging / f"node-{i}")
        genesis.install(cdir)
        config = ClusterConfig(
            staging, threshold, f"{host}:{free_port(host)}", tuple(entries), tuple(tenants)
        )
        config.save()
        if data_dir.exists():
            data_dir.rmdir()
        os.replace(staging, data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    HsmDeployment.load(data_dir)  # points the SoftHSM2 configuration at the final path
    return ClusterConfig.load(data_dir)
