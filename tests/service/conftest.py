"""A real cluster per test module: 3 node processes + coordinator, mTLS gRPC.

Databases are SQLite files in the data dir unless ``CUSTODY_TEST_POSTGRES``
holds an admin URL (``postgresql+psycopg://user@host/postgres``), in which case
every process gets its own fresh PostgreSQL database.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custody.client import CustodyClient
from custody.cluster import Cluster
from custody.config import ClusterConfig
from custody.init import free_port, init_cluster

TENANTS = ("acme", "globex")


def _postgres_env(config: ClusterConfig) -> dict[str, str]:
    admin = os.environ.get("CUSTODY_TEST_POSTGRES")
    if not admin:
        return {}
    import sqlalchemy

    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    prefix = f"custody_{secrets.token_hex(4)}"
    names = {"CUSTODY_DATABASE_URL": f"{prefix}_coordinator"}
    names |= {
        f"CUSTODY_NODE_{n.node_id}_DATABASE_URL": f"{prefix}_node{n.node_id}" for n in config.nodes
    }
    with engine.connect() as conn:
        for db in names.values():
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))
    base = admin.rsplit("/", 1)[0]
    return {var: f"{base}/{db}" for var, db in names.items()}


class RunningCluster:
    """A 3-node cluster with the test tenants; ``settings`` replace fields of its
    ``custody.json`` (``nonce_pool_target=...``). As a context manager it runs the
    cluster for the ``with`` block."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.config = init_cluster(root, 3, 2, TENANTS)
        if settings:
            self.config = dataclasses.replace(self.config, **settings)
            self.config.save()
        self.env = _postgres_env(self.config)
        self.metrics_address = f"127.0.0.1:{free_port()}"
        self.env["CUSTODY_METRICS_ADDRESS"] = self.metrics_address
        os.environ.update(self.env)  # so tests reading databases see the same URLs
        self.cluster = Cluster(self.config, env=self.env)

    def client(self, tenant: str = "acme") -> CustodyClient:
        return CustodyClient.from_data_dir(self.config.data_dir, tenant)

    def stop(self) -> None:
        """Stop every process and drop the environment this cluster set."""
        self.cluster.stop()
        for var in self.env:
            os.environ.pop(var, None)

    def __enter__(self) -> RunningCluster:
        self.cluster.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with RunningCluster(tmp_path_factory.mktemp("cluster") / "data") as rc:
        yield rc


@pytest.fixture(scope="module")
def acme(running: RunningCluster) -> Iterator[CustodyClient]:
    with running.client("acme") as client:
        yield client
