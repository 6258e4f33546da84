"""Cluster configuration: one versioned JSON file, ``<data-dir>/custody.json``.

Every process reads it with ``--data-dir``; paths inside are relative to the
data dir so the directory can be moved or mounted into containers. Database
URLs default to SQLite files in the data dir and are overridden by
``CUSTODY_DATABASE_URL`` (coordinator) and ``CUSTODY_NODE_<i>_DATABASE_URL``
(node i), e.g. ``postgresql+psycopg://user@host/db``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.pki import RESERVED_NAMES
from signer_nodes.wire.identity import NodeDirectory, NodePublicIdentity

FORMAT = 1
CONFIG_FILE = "custody.json"


class ConfigError(Exception):
    code = "CONFIG_INVALID"


@dataclass(frozen=True, slots=True)
class NodeEntry:
    node_id: int
    address: str
    signing_key: bytes
    encryption_key: bytes

    @property
    def name(self) -> str:
        return f"node-{self.node_id}"

    @property
    def public_identity(self) -> NodePublicIdentity:
        return NodePublicIdentity(self.node_id, self.signing_key, self.encryption_key)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    data_dir: Path
    threshold: int
    coordinator_address: str
    nodes: tuple[NodeEntry, ...]
    tenants: tuple[str, ...]
    nonce_pool_target: int = 16
    # DKLs23 presignatures kept ready per key and per preferred signer set.
    presignature_pool_target: int = 8
    # host:port of the coordinator's Prometheus exporter (plain HTTP); None: not served.
    metrics_address: str | None = None
    # Where the coordinator's API binds when that is not where clients dial it (a
    # container binds 0.0.0.0 while clients on its host dial the published port at
    # localhost, custody/compose_config.py); None: it binds ``coordinator_address``.
    coordinator_listen_address: str | None = None

    @property
    def coordinator_bind_address(self) -> str:
        """host:port the coordinator's API server binds."""
        return self.coordinator_listen_address or self.coordinator_address

    # -- paths ---------------------------------------------------------------

    @property
    def ca_cert(self) -> Path:
        return self.data_dir / "ca" / "ca.pem"

    def node_dir(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}"

    @property
    def coordinator_dir(self) -> Path:
        return self.data_dir / "coordinator"

    def tenant_dir(self, tenant: str) -> Path:
        return self.data_dir / "tenants" / tenant

    def node(self, node_id: int) -> NodeEntry:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise ConfigError(f"no node {node_id} in {self.data_dir / CONFIG_FILE}")

    @property
    def directory(self) -> NodeDirectory:
        return NodeDirectory({n.node_id: n.public_identity for n in self.nodes})

    def coordinator_database_url(self) -> str:
        return (
            os.environ.get("CUSTODY_DATABASE_URL")
            or f"sqlite:///{self.coordinator_dir / 'coordinator.db'}"
        )

    def node_database_url(self, node_id: int) -> str:
        return (
            os.environ.get(f"CUSTODY_NODE_{node_id}_DATABASE_URL")
            or f"sqlite:///{self.node_dir(node_id) / 'node.db'}"
        )

    # -- (de)serialisation ---------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "threshold": self.threshold,
            "coordinator": {"address": self.coordinator_address}
            | ({"metrics_address": self.metrics_address} if self.metrics_address else {})
            | (
                {"listen_address": self.coordinator_listen_address}
                if self.coordinator_listen_address
                else {}
            ),
            "nonce_pool_target": self.nonce_pool_target,
            "presignature_pool_target": self.presignature_pool_target,
            "nodes": [
                {
                    "id": n.node_id,
                    "address": n.address,
                    "signing_key": n.signing_key.hex(),
                    "encryption_key": n.encryption_key.hex(),
                }
                for n in self.nodes
            ],
            "tenants": list(self.tenants),
        }

    def save(self) -> None:
        path = self.data_dir / CONFIG_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, data_dir: Path | str) -> ClusterConfig:
        data_dir = Path(data_dir).resolve()
        path = data_dir / CONFIG_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"{path} not found; run 'custody init --data-dir {data_dir}' first"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        try:
            if raw["format"] != FORMAT:
                raise ConfigError(f"{path}: unsupported format {raw['format']}")
            nodes = tuple(
                NodeEntry(
                    int(n["id"]),
                    str(n["address"]),
                    bytes.fromhex(n["signing_key"]),
                    bytes.fromhex(n["encryption_key"]),
                )
                for n in raw["nodes"]
            )
            config = cls(
                data_dir=data_dir,
                threshold=int(raw["threshold"]),
                coordinator_address=str(raw["coordinator"]["address"]),
                nodes=nodes,
                tenants=tuple(str(t) for t in raw["tenants"]),
                nonce_pool_target=int(raw.get("nonce_pool_target", 16)),
                presignature_pool_target=int(raw.get("presignature_pool_target", 8)),
                metrics_address=raw["coordinator"].get("metrics_address"),
                coordinator_listen_address=(
                    None
                    if raw["coordinator"].get("listen_address") is None
                    else str(raw["coordinator"]["listen_address"])
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: missing or malformed field ({exc})") from None
        if not 1 <= config.threshold <= len(config.nodes):
            raise ConfigError(f"{path}: threshold must be between 1 and the number of nodes")
        reserved = sorted(set(config.tenants) & RESERVED_NAMES)
        if reserved:  # their client certificates are the coordinator's and the auditor's
            raise ConfigError(f"{path}: {', '.join(reserved)} cannot be a tenant name")
        return config
