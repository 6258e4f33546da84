"""The coordinator process: ``python -m custody.server --data-dir D``.

Serves CustodyService over mTLS (tenants authenticate with client
certificates from the cluster CA), gRPC health checking and reflection, and
drives the signer nodes with its own client certificate.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent import futures

import grpc
import structlog

from custody import metrics
from custody._pb.custody.v1 import custody_pb2, custody_pb2_grpc
from custody.api import CustodyServicer
from custody.config import ClusterConfig, ConfigError
from custody.coordinator.engine import Coordinator
from custody.coordinator.nodes import NodeClients
from custody.coordinator.store import CoordinatorStore
from custody.governance.wiring import open_governance
from custody.logging import configure_logging
from custody.por.service import SERVICE_NAME as PROOF_SERVICE
from custody.por.service import add_proof_service
from signer_nodes.db import SchemaError
from signer_nodes.node.policy_state import PolicyStateError
from signer_nodes.serving import freeze_startup_heap, serve_mtls

SERVICE_NAME = custody_pb2.DESCRIPTOR.services_by_name["CustodyService"].full_name
MAX_REQUEST_BYTES = 1 << 20


def build_server(config: ClusterConfig) -> tuple[grpc.Server, Coordinator, int]:
    store = CoordinatorStore(config.coordinator_database_url())
    holder: list[Coordinator] = []

    def on_activated(_bundle: bytes) -> None:  # push the new version to every node
        holder[0].background.submit(holder[0].push_policy)

    governance = open_governance(
        config.coordinator_database_url(),
        config.coordinator_dir,
        on_activated=on_activated,
        on_request_changed=lambda status: holder[0].on_request_changed(status),
    )
    coordinator = Coordinator(config, store, NodeClients(config), governance)
    holder.append(coordinator)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)],
    )
    custody_pb2_grpc.add_CustodyServiceServicer_to_server(
        CustodyServicer(coordinator, config.tenants), server
    )
    governance_service = governance.add_to_server(server, config.tenants)
    add_proof_service(server, config)
    cdir = config.coordinator_dir
    port = serve_mtls(
        server,
        SERVICE_NAME,
        config.coordinator_bind_address,
        key=(cdir / "server.key").read_bytes(),
        cert=(cdir / "server.pem").read_bytes(),
        ca=config.ca_cert.read_bytes(),
        extra_services=(governance_service, PROOF_SERVICE),
    )
    return server, coordinator, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="custody-coordinator")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    configure_logging("coordinator")
    log = structlog.get_logger("coordinator")
    try:
        config = ClusterConfig.load(args.data_dir)
        server, coordinator, port = build_server(config)
    except (ConfigError, SchemaError, PolicyStateError) as exc:
        log.error("coordinator_start_refused", code=str(exc.code), error=str(exc))
        print(f"error {exc.code}: {exc}", file=sys.stderr, flush=True)
        return 3
    frozen = freeze_startup_heap()
    # Settle what a previous run left before any call is accepted: once the server starts,
    # health says SERVING, and a key generation started then must not be taken for one
    # the restart interrupted.
    coordinator.resume()
    server.start()
    coordinator.background.submit(coordinator.push_policy)
    coordinator.start_health_monitor()
    metrics_address = config.metrics_address or os.environ.get("CUSTODY_METRICS_ADDRESS")
    if metrics_address:
        log.info("metrics_serving", address=metrics_address, port=metrics.serve(metrics_address))
    log.info(
        "coordinator_serving",
        address=config.coordinator_bind_address,
        port=port,
        frozen_objects=frozen,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    coordinator.close()
    log.info("coordinator_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
