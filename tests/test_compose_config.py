"""The docker-compose addresses (custody/compose_config.py): nodes under their service
names, and a coordinator that binds every interface of its container while the
``custody`` commands on the host dial the published port at ``localhost``.

Found by running every compose service as a host process with its exact command and
environment (service names in /etc/hosts, no Docker engine): the cluster came up on
PostgreSQL, but ``custody key create`` dialled the bind address ``0.0.0.0`` and mTLS
refused it (no certificate names ``0.0.0.0``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog

from custody import compose_config
from custody.client import CustodyClient
from custody.config import ClusterConfig
from custody.init import free_port, init_cluster


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "custody-data"
    init_cluster(root, 3, 2)
    return root


def test_rewrite_names_services_and_splits_the_coordinators_addresses(data_dir: Path) -> None:
    before = ClusterConfig.load(data_dir)
    assert before.coordinator_listen_address is None
    assert before.coordinator_bind_address == before.coordinator_address
    assert (
        "listen_address" not in json.loads((data_dir / "custody.json").read_text())["coordinator"]
    )

    assert compose_config.main([str(data_dir)]) == 0

    after = ClusterConfig.load(data_dir)
    assert [n.address for n in after.nodes] == ["node-1:50051", "node-2:50051", "node-3:50051"]
    assert after.coordinator_address == "localhost:50051"
    assert after.coordinator_bind_address == "0.0.0.0:50051"
    # nothing else changed, and the split survives a save
    assert [n.public_identity for n in after.nodes] == [n.public_identity for n in before.nodes]
    assert (after.threshold, after.tenants) == (before.threshold, before.tenants)
    after.save()
    assert ClusterConfig.load(data_dir).coordinator_bind_address == "0.0.0.0:50051"


def test_usage_error() -> None:
    assert compose_config.main([]) == 2


@contextmanager
def coordinator_at(data_dir: Path, address: str, listen_address: str) -> Iterator[int]:
    """The coordinator's server, built from a ``custody.json`` with these addresses and
    started; yields the port it bound."""
    from custody.server import build_server

    raw = json.loads((data_dir / "custody.json").read_text())
    raw["coordinator"]["address"] = address
    raw["coordinator"]["listen_address"] = listen_address
    (data_dir / "custody.json").write_text(json.dumps(raw))
    server, coordinator, bound = build_server(ClusterConfig.load(data_dir))
    server.start()
    try:
        yield bound
    finally:
        server.stop(grace=None).wait()
        coordinator.close()
        structlog.reset_defaults()


def test_coordinator_binds_its_listen_address_and_clients_dial_its_address(
    data_dir: Path,
) -> None:
    port = free_port()
    with coordinator_at(data_dir, f"localhost:{port}", f"0.0.0.0:{port}") as bound:
        assert bound == port
        with CustodyClient.from_data_dir(data_dir) as client:  # dials localhost:<port>
            assert client.list_keys() == []


def test_the_listen_address_is_what_the_coordinator_binds(data_dir: Path) -> None:
    """A published port other than the container's (``"6000:50051"``): the server binds
    ``listen_address``'s port, not ``address``'s."""
    inside, published = free_port(), free_port()
    with coordinator_at(data_dir, f"localhost:{published}", f"127.0.0.1:{inside}") as bound:
        assert bound == inside != published
