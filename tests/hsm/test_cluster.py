"""The HSM end to end, on a real cluster (3 node processes + coordinator) whose
nodes seal everything in SoftHSM2 tokens created by ``custody init``.

The tests share one cluster and run in file order: secrets never in the
clear; tampered blobs and bad PINs refused; a backup / wipe / restore drill
that ends with the restored node in a verified signature, with every error
case of the backup commands; an online key rotation while the cluster signs.

Until then only nodes 1 and 2 sign together: node 3 has never seen node 1's
signing-history head when the restored node 1 (whose history was lost with
its database) first signs with it. A peer that did see a longer head refuses
the restored node with HISTORY_ROLLBACK; restoring history is not part of
the HSM backup (see the report to the lead).
Anything that needs the cluster's tokens runs in a child process
(``tests.hsm.cluster_tool``): this test process already loaded SoftHSM2 with
another configuration.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody._pb.custody.node.v1 import node_pb2, node_pb2_grpc
from custody.client import CustodyClient
from custody.cluster import Cluster, ClusterError
from custody.config import ClusterConfig
from custody.hsm_setup import HsmSetupError
from custody.init import init_cluster
from custody.node_records import encode_share_public
from hsm.backup import BackupPublicKey, ManifestEntry, _build_backup
from hsm.config import SOFTHSM2_CANDIDATES, PinSource
from hsm.deployment import HsmDeployment
from hsm.sealer import RecordKind
from hsm.softhsm import SoftHsmHome, delete_token, provision_tokens, token_labels
from signer_nodes.grpc_errors import reason_of
from signer_nodes.mpc.frost import PublicKeyPackage
from tests.hsm.conftest import softhsm_available
from tests.hsm.scan import assert_absent, assert_absent_in_database

pytestmark = pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 not installed")
ROOT = Path(__file__).resolve().parents[2]
EXIT_REFUSED = 3


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_NODE_")}
    env.pop("SOFTHSM2_CONF", None)  # each process takes the data dir's own
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def cli(data_dir: Path, *commands: list[str], **env: str) -> list[dict[str, Any]]:
    """Run ``custody hsm|backup`` command lines in one child process."""
    r = subprocess.run(
        [sys.executable, "-m", "tests.hsm.cluster_tool", "cli", str(data_dir)],
        input=json.dumps([list(c) for c in commands]),
        capture_output=True,
        text=True,
        env=_env(**env),
        cwd=ROOT,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    results: list[dict[str, Any]] = json.loads(r.stdout)
    return results


def secrets_of(data_dir: Path) -> dict[int, list[dict[str, Any]]]:
    """Every sealed value of every node, unsealed through its token."""
    r = subprocess.run(
        [sys.executable, "-m", "tests.hsm.cluster_tool", "secrets", str(data_dir)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return {int(k): v for k, v in json.loads(r.stdout).items()}


def needles(values: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[bytes]:
    return [bytes.fromhex(n) for v in values if v["kind"] in kinds for n in v["needles"]]


def refused(result: dict[str, Any], code: str) -> bool:
    return bool(result["code"] == 2 and f"error {code}:" in result["stderr"])


@dataclass
class Hc:
    config: ClusterConfig
    cluster: Cluster
    client: CustodyClient
    key_id: str
    public_key: bytes

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    def sign(self, message: bytes) -> tuple[bytes, list[int]]:
        r = self.client.sign(self.key_id, message=message)
        # what was signed is the message's domain-separated digest (policy/payloads/messages.py)
        Ed25519PublicKey.from_public_bytes(self.public_key).verify(r.signature, r.signed_digest)
        return r.signature, list(r.signers)

    def node_db(self, node: int) -> sqlite3.Connection:
        return sqlite3.connect(self.config.node_dir(node) / "node.db")


@pytest.fixture(scope="module")
def hc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hc]:
    if not softhsm_available():
        pytest.skip("SoftHSM2 not installed")
    config = init_cluster(tmp_path_factory.mktemp("hsm-cluster") / "data", 3, 2)
    cluster = Cluster(config, env=_env())
    cluster.start()
    try:
        with CustodyClient.from_data_dir(config.data_dir, "acme") as client:
            key = client.create_key("eddsa-ed25519")
            state = Hc(config, cluster, client, key.key_id, key.public_key)
            state.sign(b"first signature")
            yield state
    finally:
        cluster.stop()


def start_node(hc: Hc, node: int, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "signer_nodes.node.server",
            "--data-dir",
            str(hc.data_dir),
            "--node",
            str(node),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
        cwd=ROOT,
    )


# -- at rest ---------------------------------------------------------------------


def test_no_share_nonce_or_identity_key_in_the_clear(hc: Hc, tmp_path: Path) -> None:
    values = secrets_of(hc.data_dir)
    for node in (1, 2, 3):
        kinds = [v["kind"] for v in values[node]]
        assert kinds.count("share") == 1 and kinds.count("identity") == 1, kinds
        assert kinds.count("nonce") >= 1, kinds  # the pool is filled, so nonces are at rest
    secrets = [n for node in values.values() for n in needles(node, ("share", "nonce", "identity"))]
    scanned = assert_absent([hc.data_dir], secrets)
    assert scanned > 20  # databases, WAL files, tokens, logs, certificates, hsm.json ...
    for node in hc.config.nodes:
        assert assert_absent_in_database(hc.config.node_database_url(node.node_id), secrets) > 20
    # the scan does find a secret that is there
    (tmp_path / "leak").write_bytes(b"..." + secrets[0] + b"...")
    with pytest.raises(AssertionError, match="in the clear"):
        assert_absent([tmp_path], secrets)


def test_tampered_share_blob_is_refused(hc: Hc) -> None:
    with hc.node_db(3) as db:
        (blob,) = db.execute(
            "SELECT sealed_key_package FROM key_shares WHERE key_id = ?", (hc.key_id,)
        ).fetchone()
        bad = bytearray(blob)
        bad[-5] ^= 0x40
        db.execute(
            "UPDATE key_shares SET sealed_key_package = ? WHERE key_id = ?", (bytes(bad), hc.key_id)
        )
    try:
        cdir = hc.config.coordinator_dir
        creds = grpc.ssl_channel_credentials(
            root_certificates=hc.config.ca_cert.read_bytes(),
            private_key=(cdir / "client.key").read_bytes(),
            certificate_chain=(cdir / "client.pem").read_bytes(),
        )
        with (
            grpc.secure_channel(hc.config.node(3).address, creds) as channel,
            pytest.raises(grpc.RpcError) as exc,
        ):
            node_pb2_grpc.NodeServiceStub(channel).SignShare(
                node_pb2.SignShareRequest(
                    request_id="tamper-probe", key_id=hc.key_id, nonce_id="n"
                ),
                timeout=10,
            )
        assert exc.value.code() == grpc.StatusCode.DATA_LOSS
        assert reason_of(exc.value) == "SEALED_BLOB_INVALID"
    finally:
        with hc.node_db(3) as db:
            db.execute(
                "UPDATE key_shares SET sealed_key_package = ? WHERE key_id = ?", (blob, hc.key_id)
            )


def test_a_node_starts_only_with_its_pin_and_an_intact_identity(hc: Hc, tmp_path: Path) -> None:
    """Every case fails before the node listens, so node 3 keeps running meanwhile."""
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("not-the-pin-123\n")
    identity = hc.config.node_dir(3) / "identity.sealed"
    original = identity.read_bytes()
    pin = str(hc.data_dir / "hsm" / "pins" / "node-3.pin")
    cases = {
        "HSM_PIN_INCORRECT": start_node(hc, 3, "--pin-file", str(wrong)),
        "HSM_PIN_MISSING CUSTODY_NODE_3_HSM_PIN": start_node(hc, 3),
        "HSM_MODULE_NOT_FOUND": start_node(
            hc, 3, "--pin-file", pin, PKCS11_MODULE=str(tmp_path / "no-such-module.so")
        ),
    }
    tampered = bytearray(original)
    tampered[-3] ^= 0x01
    identity.write_bytes(bytes(tampered))
    try:
        cases["SEALED_BLOB_INVALID"] = start_node(hc, 3, "--pin-file", pin)
        outcomes = {
            expected: (*p.communicate(timeout=60), p.returncode) for expected, p in cases.items()
        }
    finally:
        identity.write_bytes(original)
    for expected, (out, err, status) in outcomes.items():
        code, _, named = expected.partition(" ")
        assert status == EXIT_REFUSED, (expected, err)
        assert f"error {code}:" in err and named in err, (expected, err)
        assert "not-the-pin" not in out + err
    log = (hc.data_dir / "logs" / "node-3.log").read_text()
    assert (
        "not-the-pin" not in log
        and (hc.data_dir / "hsm" / "pins" / "node-3.pin").read_text().strip() not in log
    )


# -- backup and restore -------------------------------------------------------------


def _corrupt(path: Path, out: Path) -> Path:
    doc = json.loads(path.read_text())
    ct = bytearray(doc["records"][0]["ct"].encode())
    ct[10] = ord("A") if ct[10] != ord("A") else ord("B")
    doc["records"][0]["ct"] = ct.decode()
    out.write_text(json.dumps(doc))
    return out


def _crafted(hc: Hc, values: dict[int, list[dict[str, Any]]], out: Path, *, swap: bool) -> Path:
    """A backup for node 1 written with the backup public key (which anyone may
    hold): node 2's share (``swap=False``) or node 1's share with the verifying
    shares of nodes 1 and 2 swapped in its public key package (``swap=True``)."""
    deployment = HsmDeployment.from_json(
        json.loads((hc.data_dir / "hsm.json").read_text()), hc.data_dir, hc.data_dir / "hsm.json"
    )
    share = next(v for v in values[1 if swap else 2] if v["kind"] == "share")
    with hc.node_db(2) as db:  # every node stores the same public key package
        scheme, public = db.execute(
            "SELECT scheme, public_key_package FROM key_shares WHERE key_id = ?", (hc.key_id,)
        ).fetchone()
    if swap:
        package = PublicKeyPackage.from_bytes(public)
        shares = dict(package.verifying_shares)
        shares[1], shares[2] = shares[2], shares[1]
        public = PublicKeyPackage(
            package.suite, package.group_public_key, shares, package.min_signers, package.chain_code
        ).to_bytes()
    _build_backup(
        out,
        cluster_id=deployment.cluster_id,
        node_id=1,
        public_key=BackupPublicKey.from_pem(deployment.public_key_path.read_bytes()),
        oaep_hash=deployment.oaep_hash,
        items=[
            (
                ManifestEntry(
                    RecordKind.SHARE,
                    hc.key_id,
                    0,
                    1,
                    encode_share_public({"scheme": scheme, "public_key_package": public}),
                ),
                bytes.fromhex(share["plaintext"]),
            )
        ],
        created_at="2026-01-01T00:00:00+00:00",
    )
    return out


def test_backup_restore_drill_ends_in_a_verified_signature(hc: Hc, tmp_path: Path) -> None:
    d, out = hc.data_dir, tmp_path / "backups"
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("not-the-pin-456\n")
    foreign_pem = tmp_path / "foreign.pem"
    foreign_pem.write_bytes(
        rsa.generate_private_key(65537, 3072)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    files = [str(out / f"node-{i}.backup") for i in (1, 2, 3)]
    bad_pin, created, verified, foreign = cli(
        d,
        ["backup", "create", "--out", str(tmp_path / "x"), "--node", "2", "--pin-file", str(wrong)],
        ["backup", "create", "--out", str(out), "--json"],
        ["backup", "verify", *files, "--json"],
        [
            "backup",
            "create",
            "--out",
            str(tmp_path / "foreign"),
            "--node",
            "1",
            "--public-key",
            str(foreign_pem),
        ],
    )
    assert refused(bad_pin, "HSM_PIN_INCORRECT") and "not-the-pin" not in bad_pin["stderr"]
    assert not list((tmp_path / "x").glob("*"))
    assert created["code"] == 0, created["stderr"]
    for b in json.loads(created["stdout"])["backups"]:
        assert b["counts"] == {"share": 1, "identity": 1}  # never nonces or presignatures
    assert verified["code"] == 0 and len(json.loads(verified["stdout"])["verified"]) == 3
    assert foreign["code"] == 0, foreign["stderr"]

    values = secrets_of(d)
    node1 = needles(values[1], ("share", "identity"))
    assert_absent([out], [n for v in values.values() for n in needles(v, ("share", "identity"))])

    # Lose node 1: process, token, database and identity.
    hc.cluster.kill("node-1")
    delete_token(SoftHsmHome(d / "hsm"), "node-1")
    assert "node-1" not in token_labels(SoftHsmHome(d / "hsm"))
    for path in hc.config.node_dir(1).glob("node.db*"):
        path.unlink()
    (hc.config.node_dir(1) / "identity.sealed").unlink()
    with pytest.raises(ClusterError, match="HSM_TOKEN_NOT_FOUND"):
        hc.cluster.restart("node-1")

    corrupted = _corrupt(out / "node-1.backup", tmp_path / "corrupted.backup")
    r = cli(
        d,
        ["backup", "create", "--out", str(tmp_path / "y"), "--node", "1"],
        ["backup", "verify", str(corrupted)],
        ["backup", "verify", str(tmp_path / "foreign" / "node-1.backup")],
        ["backup", "verify", files[1], "--node", "1"],
        ["backup", "restore", files[1], "--node", "1"],
        ["backup", "restore", files[1], "--node", "2"],
        ["backup", "restore", str(tmp_path / "foreign" / "node-1.backup"), "--node", "1"],
        ["backup", "verify", str(_crafted(hc, values, tmp_path / "c1.backup", swap=False))],
        ["backup", "verify", str(_crafted(hc, values, tmp_path / "c2.backup", swap=True))],
        ["backup", "verify", str(tmp_path / "missing.backup")],
    )
    expected = [
        "HSM_TOKEN_NOT_FOUND",
        "BACKUP_CORRUPTED",
        "BACKUP_FOREIGN",
        "BACKUP_WRONG_NODE",
        "BACKUP_WRONG_NODE",
        "RESTORE_TARGET_NOT_EMPTY",
        "BACKUP_FOREIGN",
        "BACKUP_WRONG_NODE",
        "RESTORE_RECORD_MISMATCH",
        "BACKUP_CORRUPTED",
    ]
    for result, code in zip(r, expected, strict=True):
        assert refused(result, code), (code, result)
    assert not (tmp_path / "y").exists() or not list((tmp_path / "y").glob("*"))

    # A restore that fails after creating the fresh token leaves neither token nor records.
    (failed,) = cli(d, ["backup", "restore", str(corrupted), "--node", "1"])
    assert refused(failed, "BACKUP_CORRUPTED")
    assert "node-1" not in token_labels(SoftHsmHome(d / "hsm"))
    assert not (hc.config.node_dir(1) / "identity.sealed").exists()
    with hc.node_db(1) as db:
        assert db.execute("SELECT count(*) FROM key_shares").fetchone() == (0,)

    (restored,) = cli(d, ["backup", "restore", files[0], "--node", "1", "--json"])
    assert restored["code"] == 0, restored["stderr"]
    report = json.loads(restored["stdout"])
    assert report["token_created"] and report["counts"] == {"share": 1, "identity": 1}
    assert report["pool_entries_discarded"] >= 1
    with hc.node_db(1) as db:
        assert db.execute("SELECT count(*) FROM nonces").fetchone() == (0,)
        assert db.execute("SELECT key_id FROM key_shares").fetchall() == [(hc.key_id,)]

    hc.cluster.restart("node-1")
    # The coordinator's channel to node 1 is in gRPC reconnect backoff after the outage
    # (up to minutes, grpc's default); a coordinator restart reconnects at once.
    hc.cluster.restart("coordinator")
    hc.cluster.kill("node-2")  # the restored node must be one of the two signers
    try:
        signature, signers = hc.sign(b"signed by the restored node")
        assert signers == [1, 3] and len(signature) == 64
    finally:
        hc.cluster.restart("node-2")
    assert_absent([d], node1)


# -- rotation ----------------------------------------------------------------------


def test_rotation_reseals_everything_while_the_cluster_signs(hc: Hc) -> None:
    hc.cluster.kill("node-2")  # node 3 must now take part in every signature
    try:
        command = [["hsm", "rotate", "--node", "3", "--settle-seconds", "1.5", "--json"]]
        rotation = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.hsm.cluster_tool",
                "cli",
                str(hc.data_dir),
                json.dumps(command),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=ROOT,
        )
        during = [hc.sign(f"during rotation {i}".encode())[1] for i in range(3)]
        out, err = rotation.communicate(timeout=120)
        assert rotation.returncode == 0, err
        (result,) = json.loads(out)
        assert result["code"] == 0, result
        report = json.loads(result["stdout"])
        assert report["active_version"] == 2 and report["retired"] == [1]
        assert report["resealed"] >= 3  # share, identity, pool nonces
        assert all(signers == [1, 3] for signers in during)
        (status,) = cli(hc.data_dir, ["hsm", "status", "--node", "3", "--json"])
        state = json.loads(status["stdout"])
        assert state["key_versions"] == [2]
        assert set(state["values"]) == {"seal-key-v2"} and state["values"]["seal-key-v2"] >= 3
        assert hc.sign(b"after rotation")[1] == [1, 3]
    finally:
        hc.cluster.restart("node-2")


# -- init and another vendor's module -------------------------------------------------


def test_init_without_a_module_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PKCS11_MODULE", str(tmp_path / "absent.so"))
    with pytest.raises(HsmSetupError) as exc:
        init_cluster(tmp_path / "data", 3, 2)
    assert exc.value.code == "HSM_MODULE_NOT_FOUND"
    assert list(tmp_path.iterdir()) == []  # no data dir, no staging dir, no token


def test_another_module_by_configuration_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 'vendor' deployment: tokens provisioned outside custody, named in an
    hsm.json with an explicit module path and module environment, PINs only in
    environment variables; custody init, the nodes and the backup commands use
    nothing else."""
    pins = {"CUSTODY_NODE_1_HSM_PIN": "vendor-pin-1", "CUSTODY_NODE_2_HSM_PIN": "vendor-pin-2"}
    pins["CUSTODY_BACKUP_HSM_PIN"] = "vendor-pin-b"
    labels = {"CUSTODY_NODE_1_HSM_PIN": "hsm-a", "CUSTODY_NODE_2_HSM_PIN": "hsm-b"}
    labels["CUSTODY_BACKUP_HSM_PIN"] = "vault"
    vendor = SoftHsmHome(tmp_path / "vendor")
    module = next(p for p in SOFTHSM2_CANDIDATES if Path(p).is_file())
    for var, pin in pins.items():
        monkeypatch.setenv(var, pin)
    provision_tokens(
        vendor,
        list(labels.values()),
        pins={label: PinSource(env=var) for var, label in labels.items()},
    )
    for pin_file in vendor.pins.glob("*"):
        pin_file.unlink()  # the deployment below knows only the environment
    config_file = tmp_path / "vendor-hsm.json"
    config_file.write_text(
        json.dumps(
            {
                "format": 1,
                "module_path": module,
                "module_env": {"SOFTHSM2_CONF": str(vendor.conf)},
                "softhsm_home": None,
                "oaep_hash": "sha1",
                "seal_key_prefix": "custody-seal-",
                "nodes": {"1": {"token_label": "hsm-a"}, "2": {"token_label": "hsm-b"}},
                "backup": {
                    "token_label": "vault",
                    "key_label": "offline-backup",
                    "public_key": "vault.pem",
                },
            }
        )
    )
    config = init_cluster(tmp_path / "data", 2, 2, hsm_config=config_file)
    assert not (config.data_dir / "hsm").exists()  # no SoftHSM2 home of our own
    cluster = Cluster(config, env=_env(**pins))
    assert all("--pin-file" not in p.command for p in cluster.processes)
    cluster.start()
    try:
        with CustodyClient.from_data_dir(config.data_dir, "acme") as client:
            key = client.create_key("eddsa-ed25519")
            r = client.sign(key.key_id, message=b"vendor")
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(r.signature, r.signed_digest)
    finally:
        cluster.stop()
    made, checked = cli(
        config.data_dir,
        ["backup", "create", "--out", str(tmp_path / "b"), "--json"],
        ["backup", "verify", str(tmp_path / "b" / "node-2.backup")],
        **pins,
    )
    assert made["code"] == 0 and checked["code"] == 0, (made, checked)
