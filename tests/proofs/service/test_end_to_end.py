"""``custody por snapshot`` against a real cluster, audited by the standalone ``custody-por``.

One cluster per module (3 nodes, threshold 2, tenants acme and globex). The custody
keys are threshold keys of two schemes (FROST Ed25519 and FROST BIP340) that sign
the snapshot's challenge through the custody API; ProofService runs in-process on
the coordinator's certificate and database, as it will when mounted on the
coordinator.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy
from typer.testing import CliRunner

from custody._pb.custody.por.v1 import por_pb2 as pb
from custody._pb.custody.por.v1 import por_pb2_grpc
from custody.por.cli import por_app
from custody.por.keys import default_key_path, ensure_snapshot_key
from custody.por.service import SERVICE_NAME, add_proof_service
from custody.por.store import SnapshotStore
from proofs.build import proof_filename
from proofs.cli import main as custody_por
from proofs.snapshot import canonical_json, signing_message
from signer_nodes.grpc_errors import reason_of
from signer_nodes.serving import serve_mtls
from tests.service.conftest import RunningCluster

CUSTODY_POR = str(Path(sys.executable).with_name("custody-por"))
# Minor units: satoshi and wei (ETH is counted in gwei in the snapshot; 18.5 ETH is
# more than 2^64 wei).
LIABILITIES = """customer_id,asset,amount
acme/alice,BTC,150000000
acme/alice,ETH,2000000000000000000
acme/bob,BTC,5
globex/carol,ETH,18500000000000000001
globex/dave,BTC,0
"""


@dataclass
class World:
    running: RunningCluster
    root: Path
    out: Path
    result: dict[str, Any]
    service_key: str
    grpc_address: str

    def stub(self, tenant: str) -> por_pb2_grpc.ProofServiceStub:
        config = self.running.config
        tdir = config.tenant_dir(tenant)
        creds = grpc.ssl_channel_credentials(
            root_certificates=config.ca_cert.read_bytes(),
            private_key=(tdir / "client.key").read_bytes(),
            certificate_chain=(tdir / "client.pem").read_bytes(),
        )
        return por_pb2_grpc.ProofServiceStub(grpc.secure_channel(self.grpc_address, creds))


def _snapshot(running: RunningCluster, *args: str) -> tuple[int, dict[str, Any]]:
    argv = ["snapshot", "--data-dir", str(running.config.data_dir), "--json", *args]
    result = CliRunner().invoke(por_app, argv)
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def _signature_requests(running: RunningCluster) -> int:
    engine = sqlalchemy.create_engine(running.config.coordinator_database_url())
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sqlalchemy.text("SELECT count(*) FROM signature_requests")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _published(running: RunningCluster) -> int:
    store = SnapshotStore(running.config.coordinator_database_url())
    try:
        return len(store.list_snapshots(1000) or [])
    finally:
        store.engine.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("por-e2e")
    running = RunningCluster(root / "data")
    running.cluster.start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    try:
        with running.client("acme") as acme:
            ed = acme.create_key("eddsa-ed25519")
            bip = acme.create_key("schnorr-bip340")
        (root / "liabilities.csv").write_text(LIABILITIES)
        (root / "assets.csv").write_text(
            "key_id,address,asset,amount\n"
            f"{bip.key_id},bc1p-example,BTC,200000000\n"
            f"{ed.key_id},,ETH,20500000001999999999\n"
        )
        out = root / "out"
        code, result = _snapshot(
            running,
            "--out",
            str(out),
            "--liabilities",
            str(root / "liabilities.csv"),
            "--assets",
            str(root / "assets.csv"),
            "--cutoff",
            "2024-06-30T00:00:00Z",
        )
        assert code == 0, result
        add_proof_service(server, running.config)
        cdir = running.config.coordinator_dir
        port = serve_mtls(
            server,
            SERVICE_NAME,
            "127.0.0.1:0",
            key=(cdir / "server.key").read_bytes(),
            cert=(cdir / "server.pem").read_bytes(),
            ca=running.config.ca_cert.read_bytes(),
        )
        server.start()
        service_key = ensure_snapshot_key(default_key_path(cdir)).public_key.hex()
        yield World(running, root, out, result, service_key, f"127.0.0.1:{port}")
    finally:
        server.stop(None)
        running.stop()


def test_snapshot_is_published_with_threshold_proof_of_control(world: World) -> None:
    raw = json.loads((world.out / "snapshot.json").read_text())
    assert {c["scheme"] for c in raw["custody"]} == {"eddsa-ed25519", "schnorr-bip340"}
    assert raw["unit_exponents"] == {"BTC": 0, "ETH": 9}
    # carol's 1 wei above 18.5 ETH rounds up to a whole gwei, the key's 999999999 wei down
    assert raw["liabilities"] == {"BTC": "150000005", "ETH": "20500000001"}
    assert raw["reserves"] == {"BTC": "200000000", "ETH": "20500000001"}
    assert raw["cutoff"] == "2024-06-30T00:00:00Z" and raw["leaf_count"] == 4
    assert world.result["service_public_key"] == world.service_key
    names = sorted(p.name for p in (world.out / "proofs").iterdir())
    customers = ["acme/alice", "acme/bob", "globex/carol", "globex/dave"]
    assert names == sorted(proof_filename(c) for c in customers)
    audit = subprocess.run(
        [
            CUSTODY_POR,
            "audit",
            "--snapshot",
            str(world.out / "snapshot.json"),
            "--service-key",
            world.service_key,
        ],
        capture_output=True,
        text=True,
    )
    assert audit.returncode == 0, audit.stderr
    assert audit.stdout.startswith(f"OK snapshot {raw['snapshot_id']} (2 custody keys)")
    for cid in customers:
        proof = world.out / "proofs" / proof_filename(cid)
        argv = ["verify", "--snapshot", str(world.out / "snapshot.json"), "--proof", str(proof)]
        assert custody_por([*argv, "--customer-id", cid, "--service-key", world.service_key]) == 0


def _edit_signature(raw: dict[str, Any], i: int) -> None:
    sig = raw["custody"][i]["signature"]
    raw["custody"][i]["signature"] = sig[:-2] + f"{int(sig[-2:], 16) ^ 1:02x}"


def _edit_balance(raw: dict[str, Any]) -> None:
    entry = next(c for c in raw["custody"] if c["balances"]["BTC"] != "0")
    entry["balances"]["BTC"] = entry["minor_balances"]["BTC"] = str(
        int(entry["balances"]["BTC"]) + 1
    )


def _edit_rounding(raw: dict[str, Any]) -> None:
    entry = next(c for c in raw["custody"] if c["balances"]["ETH"] != "0")
    entry["balances"]["ETH"] = raw["reserves"]["ETH"] = str(int(entry["balances"]["ETH"]) + 1)


def _edit_balance_and_reserves(raw: dict[str, Any]) -> None:
    entry = next(c for c in raw["custody"] if c["balances"]["BTC"] != "0")
    entry["balances"]["BTC"] = raw["reserves"]["BTC"] = "150000004"
    entry["minor_balances"]["BTC"] = "150000004"


@pytest.mark.parametrize(
    ("edit", "resigned_code"),
    [
        (lambda raw: _edit_signature(raw, 0), "POR_BAD_CONTROL_SIGNATURE"),
        (lambda raw: _edit_signature(raw, 1), "POR_BAD_CONTROL_SIGNATURE"),
        (_edit_balance, "POR_RESERVES_MISMATCH"),
        (_edit_rounding, "POR_UNIT_ROUNDING"),
        (_edit_balance_and_reserves, "POR_INSOLVENT"),
    ],
)
def test_audit_fails_after_any_edit(
    world: World, tmp_path: Path, edit: Any, resigned_code: str
) -> None:
    raw = json.loads((world.out / "snapshot.json").read_text())
    edit(raw)
    path = tmp_path / "edited.json"
    path.write_bytes(canonical_json(raw))
    argv = ["audit", "--snapshot", str(path), "--service-key", world.service_key, "--json"]
    assert custody_por(argv) == 1  # the service signature no longer matches
    # A malicious service re-signs its edit: the deeper checks must still catch it.
    service = ensure_snapshot_key(default_key_path(world.running.config.coordinator_dir))
    resigned = copy.deepcopy(raw)
    unsigned = {k: v for k, v in resigned.items() if k != "service_signature"}
    resigned["service_signature"]["signature"] = service.sign(signing_message(unsigned)).hex()
    path.write_bytes(canonical_json(resigned))
    audit = subprocess.run(
        [sys.executable, "-m", "proofs.cli", *argv], capture_output=True, text=True, check=False
    )
    assert audit.returncode == 1, audit.stderr
    assert json.loads(audit.stdout)["code"] == resigned_code


def test_customer_fetches_its_proof_with_the_tenant_certificate(
    world: World, tmp_path: Path
) -> None:
    got = world.stub("acme").GetInclusionProof(
        pb.GetInclusionProofRequest(customer_id="acme/alice")
    )
    assert got.snapshot_id == world.result["snapshot_id"]
    assert got.proof_json == (world.out / "proofs" / proof_filename("acme/alice")).read_text()
    snap = world.stub("globex").GetSnapshot(pb.GetSnapshotRequest())
    assert snap.snapshot_json == (world.out / "snapshot.json").read_text()
    (tmp_path / "s.json").write_text(snap.snapshot_json)
    (tmp_path / "p.json").write_text(got.proof_json)
    argv = ["verify", "--snapshot", str(tmp_path / "s.json"), "--proof", str(tmp_path / "p.json")]
    expect = ["--expect", "BTC=150000000", "--expect-minor", "ETH=2000000000000000000"]
    assert custody_por([*argv, "--service-key", world.service_key, *expect]) == 0


def test_another_tenant_cannot_fetch_it(world: World) -> None:
    globex = world.stub("globex")
    with pytest.raises(grpc.RpcError) as info:
        globex.GetInclusionProof(pb.GetInclusionProofRequest(customer_id="acme/alice"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(info.value) == "CUSTOMER_NOT_OF_TENANT"
    own = globex.GetInclusionProof(pb.GetInclusionProofRequest(customer_id="globex/carol"))
    assert json.loads(own.proof_json)["balances"] == {"BTC": "0", "ETH": "18500000001"}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (LIABILITIES + "acme/erin,BTC,-3\n", "POR_BALANCE_RANGE", "CSV line 7: amount '-3'"),
        (
            LIABILITIES + f"acme/erin,ETH,{2**64 * 10**9}\n",
            "POR_BALANCE_RANGE",
            "CSV line 7: ETH amount 18446744073709551616000000000 is 18446744073709551616"
            " units of 10^9 minor units, not below 2^64; declare a larger unit for ETH",
        ),
        (
            LIABILITIES.replace("acme/bob,BTC,5", "acme/bob,BTC"),
            "POR_MALFORMED",
            "CSV line 4: expected 3 fields",
        ),
        (LIABILITIES + "acme/alice,BTC,1\n", "POR_DUPLICATE_CUSTOMER", "CSV line 7: repeated"),
        (LIABILITIES + "erin,BTC,1\n", "POR_CUSTOMER_NAMESPACE", "CSV line 7: customer id 'erin'"),
    ],
)
def test_malformed_csv_is_refused_by_line_and_nothing_is_written(
    world: World, tmp_path: Path, body: str, code: str, words: str
) -> None:
    (tmp_path / "l.csv").write_text(body)
    before = (_signature_requests(world.running), _published(world.running))
    exit_code, result = _snapshot(
        world.running,
        "--out",
        str(tmp_path / "out"),
        "--liabilities",
        str(tmp_path / "l.csv"),
        "--assets",
        str(world.root / "assets.csv"),
    )
    assert exit_code == 2 and result["code"] == code and words in result["detail"], result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.csv"]
    assert (_signature_requests(world.running), _published(world.running)) == before


def test_unknown_key_or_taken_id_is_refused_before_signing(world: World, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("key_id,asset,amount\nno-such-key,BTC,1\n")
    before = (_signature_requests(world.running), _published(world.running))
    liabilities = str(world.root / "liabilities.csv")
    exit_code, result = _snapshot(
        world.running,
        "--out",
        str(tmp_path / "o1"),
        "--liabilities",
        liabilities,
        "--assets",
        str(tmp_path / "a.csv"),
    )
    assert (exit_code, result["code"]) == (2, "POR_UNKNOWN_KEY")
    exit_code, result = _snapshot(
        world.running,
        "--out",
        str(tmp_path / "o2"),
        "--liabilities",
        liabilities,
        "--snapshot-id",
        world.result["snapshot_id"],
    )
    assert (exit_code, result["code"]) == (1, "POR_SNAPSHOT_EXISTS")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
    assert (_signature_requests(world.running), _published(world.running)) == before
