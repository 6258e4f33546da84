"""The signer-node process: ``python -m signer_nodes.node.server --data-dir D --node I``.

Serves NodeService over mTLS (server certificate from the cluster CA; only a
client certificate named ``coordinator`` may call NodeService), plus gRPC
health checking and server reflection. Logs are structlog JSON lines on
stderr carrying node, session and request ids, never secrets.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import structlog

from custody._pb.custody.node.v1 import node_pb2, node_pb2_grpc
from custody.config import ClusterConfig
from custody.logging import configure_logging
from custody.pki import COORDINATOR_CLIENT
from signer_nodes.node.sealing import FileSealer, SealContext
from signer_nodes.node.service import NodeServicer
from signer_nodes.node.store import NodeStore
from signer_nodes.serving import serve_mtls
from signer_nodes.wire.identity import NodeIdentity

SERVICE_NAME = node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name


def peer_common_names(context: grpc.ServicerContext) -> list[bytes]:
    """The subject common names of the verified client certificate."""
    names: bytes | Iterable[bytes] = context.auth_context().get("x509_common_name") or []
    return [names] if isinstance(names, bytes) else list(names)


class CoordinatorOnly(grpc.ServerInterceptor):
    """Refuse NodeService calls from any client certificate but the coordinator's."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None or not details.method.startswith(f"/{SERVICE_NAME}/"):
            return handler

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "only the coordinator may call NodeService"
            )

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            if peer_common_names(context) != [COORDINATOR_CLIENT.encode()]:
                return deny(request, context)
            return handler.unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def identity_path(config: ClusterConfig, node_id: int) -> Path:
    return config.node_dir(node_id) / "identity.sealed"


def load_identity(config: ClusterConfig, node_id: int, sealer: FileSealer) -> NodeIdentity:
    blob = identity_path(config, node_id).read_bytes()
    return NodeIdentity.from_bytes(
        sealer.unseal(blob, SealContext(node_id, "node-identity", 0, "identity"))
    )


def build_server(
    config: ClusterConfig, node_id: int, *, max_workers: int = 16
) -> tuple[grpc.Server, int]:
    entry = config.node(node_id)
    node_dir = config.node_dir(node_id)
    sealer = FileSealer.open(node_dir / "seal.key")
    identity = load_identity(config, node_id, sealer)
    if identity.public != entry.public_identity:
        raise SystemExit(f"node {node_id}: identity key does not match the cluster directory")
    store = NodeStore(config.node_database_url(node_id))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[CoordinatorOnly()],
        options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)],
    )
    node_pb2_grpc.add_NodeServiceServicer_to_server(
        NodeServicer(identity, config.directory, store, sealer), server
    )
    port = serve_mtls(
        server,
        SERVICE_NAME,
        entry.address,
        key=(node_dir / "server.key").read_bytes(),
        cert=(node_dir / "server.pem").read_bytes(),
        ca=config.ca_cert.read_bytes(),
    )
    return server, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signer-node")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--node", type=int, required=True)
    args = parser.parse_args(argv)
    configure_logging(f"node-{args.node}")
    log = structlog.get_logger("signer_node")
    config = ClusterConfig.load(args.data_dir)
    server, port = build_server(config, args.node)
    server.start()
    log.info("node_serving", node_id=args.node, address=config.node(args.node).address, port=port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    log.info("node_stopped", node_id=args.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
