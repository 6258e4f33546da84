"""Prometheus metrics of the coordinator (``prometheus-client``).

Served over plain HTTP at ``coordinator.metrics_address`` of ``custody.json``
(or ``CUSTODY_METRICS_ADDRESS``) when set. Labels carry no secrets and no
tenant payloads: method, status reason, scheme, key id, node id, culprit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

API_REQUESTS = Counter(
    "custody_api_requests",
    "CustodyService calls by method and outcome (OK or the ErrorInfo reason).",
    ("method", "outcome"),
    registry=REGISTRY,
)
API_LATENCY = Histogram(
    "custody_api_latency_seconds",
    "CustodyService call latency by method.",
    ("method",),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SIGNATURES = Counter(
    "custody_signatures",
    "Signature requests that reached a final state, by scheme and outcome.",
    ("scheme", "outcome"),
    registry=REGISTRY,
)
SIGNING_LATENCY = Histogram(
    "custody_signing_latency_seconds",
    "Time from accepting a signature request to its final state, by scheme.",
    ("scheme",),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SIGNING_PHASE = Histogram(
    "custody_signing_phase_seconds",
    "Wall time of each phase of a signature request in the coordinator: intake (validate and "
    "store), governance (register and pre-evaluate), reserve (nonces or presignature), "
    "reports (the signers' history reports), shares (their signature shares), combine "
    "(aggregate and verify), record (outcome and history, one commit), refill (pool check).",
    ("phase",),
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
POOL_LEVEL = Gauge(
    "custody_pool_level",
    "Unused FROST nonces per key and node, or DKLs23 presignatures per key and signer set.",
    ("key_id", "kind", "holder"),
    registry=REGISTRY,
)
NODE_UP = Gauge(
    "custody_node_up",
    "1 when the last call to the node succeeded, 0 when it failed.",
    ("node",),
    registry=REGISTRY,
)
ABORTS = Counter(
    "custody_protocol_aborts",
    "Protocol aborts and refused contributions, by protocol and culprit node ('none' when the "
    "protocol guarantees abort only).",
    ("protocol", "culprit"),
    registry=REGISTRY,
)


def serve(address: str) -> int:
    """Start the HTTP exporter on ``host:port``; returns the bound port."""
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=REGISTRY)
    return int(server.server_port)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time a block as signing phase ``name`` (SIGNING_PHASE)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        SIGNING_PHASE.labels(name).observe(time.perf_counter() - started)


def record_aborts(protocol: str, culprits: set[int] | list[int]) -> None:
    if not culprits:
        ABORTS.labels(protocol, "none").inc()
    for c in culprits:
        ABORTS.labels(protocol, str(c)).inc()
