"""``custody up``: run N signer nodes and the coordinator on loopback.

Each process is started with the same interpreter, its JSON logs go to
``<data-dir>/logs/<name>.log``, and it is considered up when its gRPC health
service answers SERVING over mTLS. ``cluster.json`` lists every process's
name, pid and address while the cluster runs; stopping sends SIGTERM (then
SIGKILL after a grace period) to every child and removes that file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custody.config import ClusterConfig

CLUSTER_FILE = "cluster.json"


@dataclass
class Process:
    name: str
    address: str
    command: list[str]
    popen: subprocess.Popen[bytes] | None = None


class ClusterError(Exception):
    code = "CLUSTER_START_FAILED"


def _healthy(config: ClusterConfig, address: str, timeout: float = 1.0) -> bool:
    tdir = config.coordinator_dir
    creds = grpc.ssl_channel_credentials(
        root_certificates=config.ca_cert.read_bytes(),
        private_key=(tdir / "client.key").read_bytes(),
        certificate_chain=(tdir / "client.pem").read_bytes(),
    )
    with grpc.secure_channel(address, creds) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


class Cluster:
    def __init__(self, config: ClusterConfig, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = {**os.environ, **(env or {})}
        d = str(config.data_dir)
        py = sys.executable
        self.processes = [
            Process(
                n.name,
                n.address,
                [py, "-m", "signer_nodes.node.server", "--data-dir", d, "--node", str(n.node_id)],
            )
            for n in config.nodes
        ]
        self.processes.append(
            Process(
                "coordinator",
                config.coordinator_address,
                [py, "-m", "custody.server", "--data-dir", d],
            )
        )
        (config.data_dir / "logs").mkdir(exist_ok=True)

    def process(self, name: str) -> Process:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(name)

    def start_process(self, p: Process) -> None:
        log = (self.config.data_dir / "logs" / f"{p.name}.log").open("ab")
        p.popen = subprocess.Popen(
            p.command, stdout=log, stderr=log, env=self.env, start_new_session=True
        )
        log.close()

    def start(self, timeout: float = 30.0) -> None:
        for p in self.processes:
            self.start_process(p)
        self.wait_healthy(self.processes, timeout)
        self.write_state()

    def wait_healthy(self, processes: list[Process], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(processes)
        while pending:
            for p in list(pending):
                assert p.popen is not None
                if p.popen.poll() is not None:
                    self.stop()
                    logfile = self.config.data_dir / "logs" / f"{p.name}.log"
                    raise ClusterError(f"{p.name} exited with {p.popen.returncode}; see {logfile}")
                if _healthy(self.config, p.address, timeout=0.5):
                    pending.remove(p)
            if pending and time.monotonic() > deadline:
                self.stop()
                raise ClusterError(
                    f"not healthy after {timeout:.0f}s: {', '.join(p.name for p in pending)}"
                )
            if pending:
                time.sleep(0.1)

    def write_state(self) -> None:
        state = {
            "data_dir": str(self.config.data_dir),
            "api_address": self.config.coordinator_address,
            "processes": [
                {"name": p.name, "pid": p.popen.pid if p.popen else None, "address": p.address}
                for p in self.processes
            ],
        }
        path = self.config.data_dir / CLUSTER_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(path)

    def kill(self, name: str) -> None:
        """SIGKILL one process (for failure drills)."""
        p = self.process(name)
        assert p.popen is not None
        p.popen.kill()
        p.popen.wait()

    def restart(self, name: str, timeout: float = 30.0) -> None:
        p = self.process(name)
        if p.popen is not None and p.popen.poll() is None:
            p.popen.terminate()
            p.popen.wait(10)
        self.start_process(p)
        self.wait_healthy([p], timeout)
        self.write_state()

    def stop(self, grace: float = 5.0) -> None:
        for p in self.processes:
            if p.popen is not None and p.popen.poll() is None:
                p.popen.terminate()
        deadline = time.monotonic() + grace
        for p in self.processes:
            if p.popen is None:
                continue
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()
        (self.config.data_dir / CLUSTER_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_state(data_dir: Path) -> dict[str, object]:
    state: dict[str, object] = json.loads((data_dir / CLUSTER_FILE).read_text())
    return state
