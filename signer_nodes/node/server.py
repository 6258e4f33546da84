"""The signer-node process::

    python -m signer_nodes.node.server --data-dir D --node I [--pin-file F | --pin-env VAR]

Serves NodeService over mTLS (server certificate from the cluster CA; only a
client certificate named ``coordinator`` may call NodeService), plus gRPC
health checking and server reflection. Logs are structlog JSON lines on
stderr carrying node, session and request ids, never secrets.

Before anything else the node logs in to its PKCS#11 token (``hsm.json`` of
the data dir names it) with the PIN from ``--pin-file``, ``--pin-env`` or, by
default, the variable ``CUSTODY_NODE_<i>_HSM_PIN``, and unseals its identity
key there. If that fails it does not start: it prints ``error CODE: message``
(``HSM_PIN_MISSING``, ``HSM_PIN_INCORRECT``, ``HSM_TOKEN_NOT_FOUND``,
``HSM_MODULE_NOT_FOUND``, ``SEALED_BLOB_INVALID``...) and exits with status
:data:`EXIT_REFUSED`. The PIN itself is never logged or stored.
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
from custody.config import ClusterConfig, ConfigError
from custody.logging import configure_logging
from custody.pki import COORDINATOR_CLIENT
from custody.sealed_files import identity_path, load_identity
from hsm.config import PinSource
from hsm.deployment import HsmDeployment
from hsm.errors import HsmError
from signer_nodes.db import SchemaError
from signer_nodes.mpc.errors import EncodingError
from signer_nodes.node.policy_state import PolicyState, PolicyStateError
from signer_nodes.node.sealing import HsmSealer, SealingError
from signer_nodes.node.service import NodeServicer
from signer_nodes.node.store import NodeStore
from signer_nodes.serving import freeze_startup_heap, serve_mtls
from signer_nodes.wire.identity import NodeIdentity

SERVICE_NAME = node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name
#: Exit status of a node that refuses to start (bad PIN, token, identity, config).
EXIT_REFUSED = 3


class StartupError(Exception):
    """The node cannot start; ``code`` is stable, the message names no secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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


def open_sealer(config: ClusterConfig, node_id: int, pin: PinSource | None = None) -> HsmSealer:
    """Log in to node ``node_id``'s token; ``pin`` defaults to ``CUSTODY_NODE_<i>_HSM_PIN``."""
    deployment = HsmDeployment.load(config.data_dir)
    pin = pin or deployment.node_pin(node_id, dev_fallback=False)
    return HsmSealer.open(node_id, deployment.node_token(node_id, pin))


def unseal_identity(config: ClusterConfig, node_id: int, sealer: HsmSealer) -> NodeIdentity:
    """The node's identity key, unsealed in its token and checked against ``custody.json``."""
    path = identity_path(config.data_dir, node_id)
    try:
        identity = load_identity(sealer, config.data_dir, node_id)
    except FileNotFoundError:
        raise StartupError(
            "NODE_IDENTITY_MISSING", f"{path} not found (restore the node from a backup)"
        ) from None
    except EncodingError:
        raise StartupError("NODE_IDENTITY_INVALID", f"{path} does not hold an identity") from None
    if identity.public != config.node(node_id).public_identity:
        raise StartupError(
            "NODE_IDENTITY_MISMATCH",
            f"node {node_id}: identity key does not match the cluster directory",
        )
    return identity


def build_server(
    config: ClusterConfig,
    node_id: int,
    *,
    pin: PinSource | None = None,
    max_workers: int = 16,
) -> tuple[grpc.Server, int]:
    """Everything the node needs, or :class:`StartupError` / ``HsmError`` /
    ``SealingError`` before anything listens."""
    entry = config.node(node_id)
    node_dir = config.node_dir(node_id)
    sealer = open_sealer(config, node_id, pin)
    try:
        identity = unseal_identity(config, node_id, sealer)
    except BaseException:
        sealer.close()
        raise
    store = NodeStore(config.node_database_url(node_id))
    policy = PolicyState.for_node(config.node_database_url(node_id), node_dir)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[CoordinatorOnly()],
        options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)],
    )
    node_pb2_grpc.add_NodeServiceServicer_to_server(
        NodeServicer(identity, config.directory, store, sealer, policy), server
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
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument("--pin-file", type=Path, help="file holding the token PIN")
    pin.add_argument("--pin-env", help="environment variable holding the token PIN")
    args = parser.parse_args(argv)
    configure_logging(f"node-{args.node}")
    log = structlog.get_logger("signer_node")
    source = (
        PinSource(file=args.pin_file)
        if args.pin_file
        else PinSource(env=args.pin_env)
        if args.pin_env
        else None
    )
    try:
        config = ClusterConfig.load(args.data_dir)
        server, port = build_server(config, args.node, pin=source)
    except (
        StartupError,
        SealingError,
        ConfigError,
        HsmError,
        PolicyStateError,
        SchemaError,
    ) as exc:
        code = str(exc.code)
        message = exc.message if isinstance(exc, HsmError) else str(exc)
        log.error("node_start_refused", node_id=args.node, code=code, error=message)
        print(f"error {code}: {message}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    frozen = freeze_startup_heap()
    server.start()
    log.info(
        "node_serving",
        node_id=args.node,
        address=config.node(args.node).address,
        port=port,
        frozen_objects=frozen,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    log.info("node_stopped", node_id=args.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
