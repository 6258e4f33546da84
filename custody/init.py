"""``custody init``: a complete local cluster configuration in one directory.

Creates, atomically (built in a sibling temp dir, then renamed into place):
the CA; per node a server certificate, an Ed25519/X25519 identity (sealed
with the node's sealer) and its directory; the coordinator's server and
client certificates; a client certificate per tenant; ``custody.json`` with
free loopback ports.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

from custody.config import CONFIG_FILE, ClusterConfig, ConfigError, NodeEntry
from custody.pki import COORDINATOR_CLIENT, CertificateAuthority
from signer_nodes.node.sealing import FileSealer, SealContext
from signer_nodes.wire.identity import NodeIdentity

MAX_NODES = 15


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _valid_tenant(name: str) -> bool:
    return (
        1 <= len(name) <= 64
        and all(c.isalnum() or c in "-_" for c in name)
        and name != COORDINATOR_CLIENT
    )


def init_cluster(
    data_dir: Path,
    nodes: int,
    threshold: int,
    tenants: tuple[str, ...] = ("acme",),
    host: str = "127.0.0.1",
) -> ClusterConfig:
    data_dir = data_dir.resolve()
    if not 1 <= threshold <= nodes <= MAX_NODES:
        raise ConfigError(f"need 1 <= threshold <= nodes <= {MAX_NODES}")
    if not tenants or not all(_valid_tenant(t) for t in tenants):
        raise ConfigError("tenant names are 1-64 characters [A-Za-z0-9_-]")
    if (data_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{data_dir} already holds a cluster; choose another --data-dir")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ConfigError(f"{data_dir} exists and is not empty")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}-init-", dir=data_dir.parent))
    try:
        ca = CertificateAuthority.create()
        ca.save(staging / "ca")
        entries = []
        for i in range(1, nodes + 1):
            node_dir = staging / f"node-{i}"
            ca.issue(f"node-{i}", "node", node_dir, "server", server=True, client=False)
            identity = NodeIdentity.generate(i)
            sealer = FileSealer.open(node_dir / "seal.key")
            blob = sealer.seal(identity.to_bytes(), SealContext(i, "node-identity", 0, "identity"))
            (node_dir / "identity.sealed").write_bytes(blob)
            pub = identity.public
            entries.append(
                NodeEntry(i, f"{host}:{free_port(host)}", pub.signing_key, pub.encryption_key)
            )
        cdir = staging / "coordinator"
        ca.issue(COORDINATOR_CLIENT, "coordinator", cdir, "server", server=True, client=False)
        ca.issue(COORDINATOR_CLIENT, "coordinator", cdir, "client", server=False, client=True)
        for tenant in tenants:
            ca.issue(
                tenant, "tenant", staging / "tenants" / tenant, "client", server=False, client=True
            )
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
    return ClusterConfig.load(data_dir)
