"""The coordinator's Prometheus exporter reflects what the service did."""

from __future__ import annotations

import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families


def _scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_signatures_pools_and_node_health_are_exported(running, acme) -> None:
    key = acme.create_key("schnorr-bip340")
    acme.sign(key.key_id, message=b"metrics")
    with pytest.raises(grpc.RpcError):
        acme.sign(key.key_id, digest=b"short")
    samples = _scrape(running.metrics_address)
    assert (
        _value(samples, "custody_api_requests_total", method="RequestSignature", outcome="OK") >= 1
    )
    assert (
        _value(
            samples,
            "custody_api_requests_total",
            method="RequestSignature",
            outcome="PAYLOAD_INVALID",
        )
        >= 1
    )
    assert (
        _value(samples, "custody_signatures_total", scheme="frost-bip340", outcome="SUCCEEDED") >= 1
    )
    assert _value(samples, "custody_signing_latency_seconds_count", scheme="frost-bip340") >= 1
    for phase in ("intake", "governance", "reserve", "reports", "shares", "combine", "record"):
        assert _value(samples, "custody_signing_phase_seconds_count", phase=phase) >= 1
    levels = [
        v
        for (name, labels), v in samples.items()
        if name == "custody_pool_level" and ("key_id", key.key_id) in labels
    ]
    assert levels and all(v >= 0 for v in levels)
    deadline = time.monotonic() + 15  # the health monitor probes every 5 s
    while time.monotonic() < deadline:
        samples = _scrape(running.metrics_address)
        if all(_value(samples, "custody_node_up", node=f"node-{i}") == 1 for i in (1, 2, 3)):
            break
        time.sleep(0.5)
    assert all(_value(samples, "custody_node_up", node=f"node-{i}") == 1 for i in (1, 2, 3))
