"""What every gRPC process here serves the same way: mTLS with a required
client certificate from the cluster CA, gRPC health checking, and server
reflection for the named service."""

from __future__ import annotations

import gc

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


def serve_mtls(
    server: grpc.Server,
    service_name: str,
    address: str,
    *,
    key: bytes,
    cert: bytes,
    ca: bytes,
    extra_services: tuple[str, ...] = (),
) -> int:
    """Add health, reflection and a client-authenticated TLS port; returns the port.
    ``extra_services``: further services on the same server (reflection, health)."""
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            service_name,
            *extra_services,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )
    port = server.add_secure_port(address, credentials)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in (service_name, *extra_services):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return port


def freeze_startup_heap() -> int:
    """Leave what the process built before serving out of every later garbage collection.

    A full (generation 2) collection visits every tracked object. In a started node or
    coordinator that is several hundred thousand objects (modules, protobuf descriptors,
    SQLAlchemy metadata, the HSM session), all alive for the life of the process, so each
    full collection stalls every thread for 100-200 ms on this kind of host. Collecting
    once and then freezing the survivors (``gc.freeze``, a permanent generation the
    collector skips) makes later full collections visit only what requests left behind.
    Call it once, just before the server starts. Returns the number of frozen objects."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
