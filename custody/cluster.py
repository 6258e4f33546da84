"""``custody up``: run N signer nodes and the coordinator on loopback.

Each process is started with the same interpreter, its JSON logs go to
``<data-dir>/logs/<name>.log``, and it is considered up when its gRPC health
service answers SERVING over mTLS. ``cluster.json`` lists every process's
name, pid and address while the cluster runs; stopping sends SIGTERM (then
SIGKILL after a grace period) to every child and removes that file.

Each node gets its token PIN as ``--pin-file`` (the development profile's PIN
file) unless ``CUSTODY_NODE_<i>_HSM_PIN`` is set in the cluster's
environment, which the node then reads. A node that refuses to start (wrong
or missing PIN, missing token...) prints ``error CODE: message``; the
:class:`ClusterError` repeats that line.
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
from hsm.deployment import HsmDeployment, node_pin_env

CLUSTER_FILE = "cluster.json"


@dataclass
class Process:
    name: str
    address: str
    command: list[str]
    popen: subprocess.Popen[bytes] | None = None


class ClusterError(Exception):
    code = "CLUSTER_START_FAILED"


def _refusal(logfile: Path) -> str:
    """The ``error CODE: message`` line a process printed before exiting, if any."""
    try:
        lines = logfile.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    for line in reversed(lines[-50:]):
        if line.startswith("error "):
            return line.removeprefix("error ")
    return ""


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
        deployment = HsmDeployment.load(config.data_dir)
        self.processes = []
        for n in config.nodes:
            command = [py, "-m", "signer_nodes.node.server", "--data-dir", d]
            command += ["--node", str(n.node_id)]
            pin_file = deployment.dev_pin_file(deployment.node_label(n.node_id))
            if not self.env.get(node_pin_env(n.node_id)) and pin_file is not None:
                command += ["--pin-file", str(pin_file)]
            self.processes.append(Process(n.name, n.address, command))
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
        """Start the nodes, then (once they serve) the coordinator, which talks
        to the nodes as soon as it is up."""
        nodes = [p for p in self.processes if p.name != "coordinator"]
        try:
            for group in (nodes, [self.process("coordinator")]):
                for p in group:
                    self.start_process(p)
                self.wait_healthy(group, timeout)
        except ClusterError:
            self.stop()
            raise
        self.write_state()

    def wait_healthy(self, processes: list[Process], timeout: float) -> None:
        """Wait until every one of ``processes`` answers SERVING; ``ClusterError``
        (after stopping the ones still pending) if one exits or time runs out."""
        deadline = time.monotonic() + timeout
        pending = list(processes)
        while pending:
            for p in list(pending):
                assert p.popen is not None
                if p.popen.poll() is not None:
                    self._stop(pending)
                    logfile = self.config.data_dir / "logs" / f"{p.name}.log"
                    why = _refusal(logfile)
                    raise ClusterError(
                        f"{p.name} exited with {p.popen.returncode}"
                        + (f" ({why})" if why else "")
                        + f"; see {logfile}"
                    )
                if _healthy(self.config, p.address, timeout=0.5):
                    pending.remove(p)
            if pending and time.monotonic() > deadline:
                self._stop(pending)
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
        self._stop(self.processes, grace)
        (self.config.data_dir / CLUSTER_FILE).unlink(missing_ok=True)

    def _stop(self, processes: list[Process], grace: float = 5.0) -> None:
        for p in processes:
            if p.popen is not None and p.popen.poll() is None:
                p.popen.terminate()
        deadline = time.monotonic() + grace
        for p in processes:
            if p.popen is None:
                continue
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_state(data_dir: Path) -> dict[str, object]:
    state: dict[str, object] = json.loads((data_dir / CLUSTER_FILE).read_text())
    return state
