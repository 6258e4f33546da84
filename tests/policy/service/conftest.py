"""Coordinator-side governance over a fresh database per test (SQLite, or PostgreSQL with
``CUSTODY_TEST_POSTGRES``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from custody.governance.approvals import RequestApprovals
from custody.governance.chain import PolicyGovernance
from custody.governance.store import GovernanceStore
from tests.policy.helpers import T0, key
from tests.policy.service.db import database_url
from tests.policy.service.fixtures import FakeClock, genesis_pin

AUDIT_KEY = key("coordinator-audit")


class Gov:
    """One coordinator's governance objects; ``activated`` collects pushed bundles."""

    def __init__(self, url: str, clock: FakeClock, *, checkpoint_every: int = 4) -> None:
        self.url = url
        self.clock = clock
        self.activated: list[bytes] = []
        self.store = GovernanceStore(url, AUDIT_KEY, checkpoint_every=checkpoint_every, clock=clock)
        self.chain = PolicyGovernance(self.store, genesis_pin(), on_activated=self.activated.append)
        self.approvals = RequestApprovals(self.store, self.chain)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def gov(tmp_path: Path, clock: FakeClock) -> Gov:
    return Gov(database_url(tmp_path, "coordinator"), clock)


# --------------------------------------------------------------------------- served over mTLS


class Served:
    """GovernanceService over mTLS on a copy of an ``init_cluster`` data dir, with the dev
    governance profile (officer-1..3, acme-initiator, acme-approver-1..2, ...)."""

    def __init__(self, data_dir: Path, db_url: str, clock: FakeClock | None = None) -> None:
        import dataclasses
        from concurrent import futures

        import grpc

        from custody.config import ClusterConfig
        from custody.governance.genesis import GenesisFiles, governance_root, init_governance
        from custody.governance.wiring import open_governance
        from custody.init import free_port
        from signer_nodes.serving import serve_mtls

        # the in-process server logs where CliRunner does not capture the command's output
        self._log_sink = open(os.devnull, "w")  # noqa: SIM115 - closed in stop()
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=self._log_sink))
        config = ClusterConfig.load(data_dir)
        config = dataclasses.replace(config, coordinator_address=f"127.0.0.1:{free_port()}")
        config.save()
        self.config = config
        root = governance_root(config.data_dir)
        if (root / "genesis.bundle").exists():
            self.files = GenesisFiles.load(root)
        else:
            self.files = init_governance(root, config.tenants)
        self.files.install(config.coordinator_dir)
        for n in config.nodes:
            self.files.install(config.node_dir(n.node_id))
        self.pushed: list[bytes] = []
        self.db_url = db_url
        self.gov = open_governance(
            db_url, config.coordinator_dir, on_activated=self.pushed.append, checkpoint_every=4
        )
        if clock is not None:
            self.gov.store.clock = clock
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        name = self.gov.add_to_server(self.server, config.tenants)
        cdir = config.coordinator_dir
        serve_mtls(
            self.server,
            name,
            config.coordinator_address,
            key=(cdir / "server.key").read_bytes(),
            cert=(cdir / "server.pem").read_bytes(),
            ca=config.ca_cert.read_bytes(),
        )
        self.server.start()

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    def stop(self) -> None:
        self.server.stop(grace=None)
        structlog.reset_defaults()
        self._log_sink.close()


@pytest.fixture(scope="session")
def cluster_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from custody.init import init_cluster

    return init_cluster(
        tmp_path_factory.mktemp("template") / "data", 3, 2, ("acme", "globex")
    ).data_dir


@pytest.fixture
def served(tmp_path: Path, cluster_template: Path) -> Iterator[Served]:
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(cluster_template, data_dir, symlinks=True)
    s = Served(data_dir, database_url(tmp_path, "coordinator"))
    try:
        yield s
    finally:
        s.stop()
