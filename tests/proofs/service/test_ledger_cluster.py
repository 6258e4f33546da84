"""Proof of Reserves from the ledger, end to end through a real cluster.

One cluster per module (3 signer node processes and the coordinator, threshold 2,
tenants acme and globex). Deposits are recorded with ``custody ledger deposit``; the
snapshot is taken with the ``custody`` console script *without* ``--liabilities``, so
the liabilities are the ledger's books at the cut-off; its custody keys are threshold
keys of all three schemes (DKLs23 ECDSA, FROST BIP340, FROST Ed25519) of both tenants,
each signing the challenge through the normal policy path as its tenant's ``-por``
initiator. Everything is then checked by the standalone ``custody-por`` in a separate
process, and the ECDSA signature once more with an independent library
(``cryptography``). The coordinator's own ProofService serves the auditor (its
``custody init`` certificate) and the tenants.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from custody._pb.custody.governance.v1 import governance_pb2
from custody._pb.custody.por.v1 import por_pb2 as pb
from custody._pb.custody.por.v1 import por_pb2_grpc
from custody._pb.custody.v1 import custody_pb2
from custody.cli import app as custody_app
from custody.client import OFFCHAIN, CustodyClient
from custody.config import ConfigError
from custody.governance.client import GovernanceClient
from custody.init import init_cluster
from custody.por.client import ProofClient
from custody.por.keys import default_key_path, ensure_snapshot_key
from policy.request import RequestType
from proofs.build import proof_filename
from proofs.snapshot import canonical_json, signing_message
from signer_nodes.grpc_errors import reason_of
from tests.service.conftest import RunningCluster

BIN = Path(sys.executable).parent
CUSTODY, CUSTODY_POR = str(BIN / "custody"), str(BIN / "custody-por")
GWEI, ETHER = 10**9, 10**18
runner = CliRunner()

# Customer deposits before the cut-off, in minor units (wei, satoshi, USDC base units).
ALICE_ETH = 18 * ETHER + ETHER // 2 + 1  # 18.5 ETH and 1 wei: more than 2^64 wei
BEFORE = {
    ("acme", "alice", "ETH"): ALICE_ETH,
    ("acme", "alice", "BTC"): 150_000_000,
    ("acme", "bob", "ETH"): 1,  # one wei, owed as one gwei
    ("acme", "bob", "USDC"): 2_500_000,
    ("globex", "carol", "BTC"): 5_000,
}
OPERATOR_ETH = ETHER // 100  # the operator's own funds (fees): the rounding margin
AFTER = {("acme", "alice", "ETH"): ETHER, ("globex", "dave", "BTC"): 7_000}


@dataclass
class Keys:
    ecdsa: str
    bip340: str
    ed25519: str
    globex_bip340: str


@dataclass
class World:
    running: RunningCluster
    root: Path
    keys: Keys
    cutoff: str
    height: int
    out: Path  # the snapshot at the cut-off
    result: dict[str, Any]
    later: Path  # the snapshot taken after the later deposits
    later_result: dict[str, Any]
    service_key: str

    @property
    def data_dir(self) -> str:
        return str(self.running.config.data_dir)

    def raw(self, which: Path | None = None) -> dict[str, Any]:
        return dict(json.loads(((which or self.out) / "snapshot.json").read_text()))

    def entry(self, key_id: str, which: Path | None = None) -> dict[str, Any]:
        return next(c for c in self.raw(which)["custody"] if c["key_id"] == key_id)


def _cli(*args: str, code: int = 0) -> dict[str, Any]:
    """The ``custody`` command group in-process (``ledger``), JSON output."""
    result = runner.invoke(custody_app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _deposit(data_dir: str, keys: Keys, tenant: str, customer: str, asset: str, n: int) -> int:
    if asset == "BTC":
        key = keys.bip340 if tenant == "acme" else keys.globex_bip340
        chain = ["--chain", "bitcoin", "--key", key, "--txid", secrets.token_hex(32), "--vout", "0"]
    else:
        chain = ["--chain", "ethereum", "--key", keys.ecdsa, "--asset", asset]
    who = ["--operator"] if customer == "" else ["--customer", customer]
    args = ["ledger", "deposit", "--data-dir", data_dir, "--tenant", tenant, *chain, *who]
    return int(_cli(*args, "--amount", str(n))["height"])


def _snapshot(data_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``custody por snapshot`` through the console script (no --liabilities: the ledger)."""
    return subprocess.run(
        [CUSTODY, "por", "snapshot", "--data-dir", data_dir, "--json", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )


def _por(*args: str) -> subprocess.CompletedProcess[str]:
    """The standalone verifier, in its own process."""
    return subprocess.run([CUSTODY_POR, *args], capture_output=True, text=True, timeout=60)


def _next_second() -> str:
    """A cut-off after everything so far, once the clock has passed it."""
    cut = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).replace(microsecond=0)
    while dt.datetime.now(dt.UTC) <= cut:
        time.sleep(0.05)
    return cut.strftime("%Y-%m-%dT%H:%M:%SZ")


def _assets_csv(path: Path, keys: Keys, *, later: bool) -> Path:
    """What the chain shows at the cut-off, per custody key (exact minor units)."""
    eth = ALICE_ETH + 1 + OPERATOR_ETH + (ETHER if later else 0)
    globex_btc = 5_000 + (7_000 if later else 0)
    path.write_text(
        "key_id,address,asset,amount\n"
        f"{keys.ecdsa},0xexample,ETH,{eth}\n"
        f"{keys.ecdsa},0xexample,USDC,2500000\n"
        f"{keys.bip340},bc1p-acme,BTC,150000000\n"
        f"{keys.globex_bip340},bc1p-globex,BTC,{globex_btc}\n"
    )
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("por-ledger")
    running = RunningCluster(root / "data")
    running.cluster.start()
    try:
        with running.client("acme") as acme, running.client("globex") as globex:
            keys = Keys(
                ecdsa=acme.create_key("ecdsa-secp256k1", timeout=120).key_id,
                bip340=acme.create_key("schnorr-bip340").key_id,
                ed25519=acme.create_key("eddsa-ed25519").key_id,
                globex_bip340=globex.create_key("schnorr-bip340").key_id,
            )
        d = str(running.config.data_dir)
        for (tenant, customer, asset), amount in BEFORE.items():
            height = _deposit(d, keys, tenant, customer, asset, amount)
        height = _deposit(d, keys, "acme", "", "ETH", OPERATOR_ETH)
        cutoff = _next_second()
        for (tenant, customer, asset), amount in AFTER.items():
            _deposit(d, keys, tenant, customer, asset, amount)
        out = root / "at-cutoff"
        done = _snapshot(
            d,
            "--out",
            str(out),
            "--cutoff",
            cutoff,
            "--assets",
            str(_assets_csv(root / "assets.csv", keys, later=False)),
            "--key",
            keys.ed25519,
        )
        assert done.returncode == 0, done.stderr
        later = root / "later"
        again = _snapshot(
            d,
            "--out",
            str(later),
            "--assets",
            str(_assets_csv(root / "assets-later.csv", keys, later=True)),
        )
        assert again.returncode == 0, again.stderr
        service_key = ensure_snapshot_key(default_key_path(running.config.coordinator_dir))
        yield World(
            running,
            root,
            keys,
            cutoff,
            height,
            out,
            json.loads(done.stdout),
            later,
            json.loads(again.stdout),
            service_key.public_key.hex(),
        )
    finally:
        running.stop()


# -- the snapshot at the cut-off ----------------------------------------------------------


def test_snapshot_is_the_ledger_at_the_cutoff(world: World) -> None:
    r = world.result
    assert r["cutoff"] == world.cutoff and r["ledger_height"] == world.height == 6
    assert r["unit_exponents"] == {"BTC": 0, "ETH": 9, "USDC": 0}
    # alice 18.5 ETH + 1 wei and bob 1 wei, each rounded up to whole gwei
    assert r["liabilities"] == {"BTC": "150005000", "ETH": "18500000002", "USDC": "2500000"}
    # 18.51 ETH + 2 wei held, rounded down; the operator's 0.01 ETH covers the rounding
    assert r["reserves"] == {"BTC": "150005000", "ETH": "18510000000", "USDC": "2500000"}
    assert r["leaf_count"] == 3  # dave's only deposit came after the cut-off
    names = sorted(p.name for p in (world.out / "proofs").iterdir())
    assert names == sorted(proof_filename(c) for c in ("acme/alice", "acme/bob", "globex/carol"))


def test_standalone_audit_passes(world: World) -> None:
    audit = _por(
        "audit",
        "--snapshot",
        str(world.out / "snapshot.json"),
        "--service-key",
        world.service_key,
        "--json",
    )
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout)
    assert report["custody_keys"] == 4 and report["version"] == 2
    schemes = sorted(c["scheme"] for c in world.raw()["custody"])
    assert schemes == ["ecdsa-secp256k1", "eddsa-ed25519", "schnorr-bip340", "schnorr-bip340"]
    assert world.entry(world.keys.ed25519)["balances"] == {"BTC": "0", "ETH": "0", "USDC": "0"}


@pytest.mark.parametrize(
    ("customer", "statement"),
    [
        ("acme/alice", {"ETH": ALICE_ETH, "BTC": 150_000_000, "USDC": 0}),
        ("acme/bob", {"ETH": 1, "BTC": 0, "USDC": 2_500_000}),
        ("globex/carol", {"ETH": 0, "BTC": 5_000, "USDC": 0}),
    ],
)
def test_every_customer_verifies_its_statement(
    world: World, customer: str, statement: dict[str, int]
) -> None:
    argv = [
        "verify",
        "--snapshot",
        str(world.out / "snapshot.json"),
        "--proof",
        str(world.out / "proofs" / proof_filename(customer)),
        "--service-key",
        world.service_key,
        "--customer-id",
        customer,
    ]
    for asset, amount in statement.items():
        argv += ["--expect-minor", f"{asset}={amount}"]
    done = _por(*argv, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["customer_id"] == customer


def test_a_deposit_after_the_cutoff_is_not_counted(world: World) -> None:
    """The format's cut-off: alice's later 1 ETH is not in her proof, dave has no leaf."""
    argv = [
        "verify",
        "--snapshot",
        str(world.out / "snapshot.json"),
        "--proof",
        str(world.out / "proofs" / proof_filename("acme/alice")),
        "--expect-minor",
        f"ETH={ALICE_ETH + ETHER}",
        "--json",
    ]
    done = _por(*argv)
    assert done.returncode == 1 and json.loads(done.stdout)["code"] == "POR_BALANCE_MISMATCH"
    assert not (world.out / "proofs" / proof_filename("globex/dave")).exists()


def test_a_snapshot_taken_later_counts_the_later_deposits(world: World) -> None:
    r = world.later_result
    assert r["leaf_count"] == 4 and r["ledger_height"] == world.height + 2
    assert r["liabilities"]["ETH"] == "19500000002" and r["liabilities"]["BTC"] == "150012000"
    for customer, asset, amount in [
        ("acme/alice", "ETH", ALICE_ETH + ETHER),
        ("globex/dave", "BTC", 7_000),
    ]:
        done = _por(
            "verify",
            "--snapshot",
            str(world.later / "snapshot.json"),
            "--proof",
            str(world.later / "proofs" / proof_filename(customer)),
            "--service-key",
            world.service_key,
            "--expect-minor",
            f"{asset}={amount}",
        )
        assert done.returncode == 0, done.stderr
    assert _por("audit", "--snapshot", str(world.later / "snapshot.json")).returncode == 0


def test_a_cutoff_in_the_future_is_refused_before_anything_is_signed(
    world: World, tmp_path: Path
) -> None:
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = _snapshot(world.data_dir, "--out", str(tmp_path / "o"), "--cutoff", future)
    assert done.returncode == 2
    assert json.loads(done.stdout)["code"] == "POR_CUTOFF_IN_FUTURE"
    assert not (tmp_path / "o").exists()


# -- proof of control with the threshold ECDSA key ----------------------------------------


def _challenge(raw: dict[str, Any]) -> bytes:
    return bytes.fromhex(raw["challenge"])


def _ecdsa_verifies(public_key: bytes, signature: bytes, challenge: bytes) -> bool:
    """An independent ECDSA implementation (OpenSSL via ``cryptography``), not coincurve."""
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        key.verify(utils.encode_dss_signature(r, s), challenge, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def test_ecdsa_proof_of_control_is_standard_ecdsa_over_the_challenge(world: World) -> None:
    entry = world.entry(world.keys.ecdsa)
    assert entry["scheme"] == "ecdsa-secp256k1"
    pub, sig = bytes.fromhex(entry["public_key"]), bytes.fromhex(entry["signature"])
    with world.running.client("acme") as acme:
        assert bytes(acme.get_key(world.keys.ecdsa).public_key) == pub  # the cluster's key
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    assert 0 < int.from_bytes(sig[32:], "big") <= n // 2  # low s
    assert _ecdsa_verifies(pub, sig, _challenge(world.raw()))
    assert not _ecdsa_verifies(pub, sig, _challenge(world.raw(world.later)))


def test_each_key_attested_through_the_policy_path_as_its_tenants_por_initiator(
    world: World,
) -> None:
    """The coordinator's records of the attestations: one ``por_attestation`` request per
    custody key, signed by the owning tenant's ``-por`` initiator, whose payload is the
    challenge preimage and whose signed digest is what section 4 says (SHA-256 of the
    challenge for ECDSA, the challenge itself otherwise)."""
    raw = world.raw()
    challenge = _challenge(raw)
    owners = {
        world.keys.ecdsa: "acme",
        world.keys.bip340: "acme",
        world.keys.ed25519: "acme",
        world.keys.globex_bip340: "globex",
    }
    engine = sqlalchemy.create_engine(world.running.config.coordinator_database_url())
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT tenant, key_id, payload_kind, payload, signing_request,"
                    " signed_digest, state, signature FROM signature_requests"
                    " WHERE payload_kind = 'por_attestation'"
                )
            ).all()
    finally:
        engine.dispose()
    ours = [r for r in rows if hashlib.sha256(bytes(r.payload)).digest() == challenge]
    assert sorted(r.key_id for r in ours) == sorted(owners)
    for row in ours:
        request = governance_pb2.SigningRequest.FromString(bytes(row.signing_request))
        assert row.tenant == request.tenant == owners[row.key_id]
        assert request.initiator == f"{row.tenant}-por"
        assert request.request_type == "por_attestation" and row.state == "SUCCEEDED"
        entry = world.entry(row.key_id)
        ecdsa = entry["scheme"] == "ecdsa-secp256k1"
        assert bytes(row.signed_digest) == (
            hashlib.sha256(challenge).digest() if ecdsa else challenge
        )
        assert bytes(row.signature).hex() == entry["signature"]


def _resigned(world: World, raw: dict[str, Any], path: Path) -> Path:
    """A malicious service re-signs its edit, so only the deeper checks remain."""
    service = ensure_snapshot_key(default_key_path(world.running.config.coordinator_dir))
    unsigned = {k: v for k, v in raw.items() if k != "service_signature"}
    raw["service_signature"]["signature"] = service.sign(signing_message(unsigned)).hex()
    path.write_bytes(canonical_json(raw))
    return path


def _audit_code(path: Path) -> tuple[str, str]:
    done = _por("audit", "--snapshot", str(path), "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    return result["code"], result["detail"]


def test_ecdsa_signature_under_another_key_is_refused(world: World, tmp_path: Path) -> None:
    raw = copy.deepcopy(world.raw())
    entry = next(c for c in raw["custody"] if c["key_id"] == world.keys.ecdsa)
    other = ec.generate_private_key(ec.SECP256K1()).public_key()
    entry["public_key"] = other.public_bytes(Encoding.X962, PublicFormat.CompressedPoint).hex()
    code, detail = _audit_code(_resigned(world, raw, tmp_path / "s.json"))
    assert code == "POR_BAD_CONTROL_SIGNATURE" and world.keys.ecdsa in detail


def test_ecdsa_signature_over_another_challenge_is_refused(world: World, tmp_path: Path) -> None:
    """The same key's signature from the later snapshot does not prove control now."""
    raw = copy.deepcopy(world.raw())
    entry = next(c for c in raw["custody"] if c["key_id"] == world.keys.ecdsa)
    entry["signature"] = world.entry(world.keys.ecdsa, world.later)["signature"]
    code, detail = _audit_code(_resigned(world, raw, tmp_path / "s.json"))
    assert code == "POR_BAD_CONTROL_SIGNATURE" and world.keys.ecdsa in detail


# -- the auditor and the tenants on the coordinator's ProofService ------------------------


def test_init_made_an_auditor_identity_that_is_no_tenant(world: World) -> None:
    adir = world.running.config.data_dir / "auditor"
    cert = x509.load_pem_x509_certificate((adir / "client.pem").read_bytes())
    subject = {a.oid: a.value for a in cert.subject}
    assert subject[NameOID.COMMON_NAME] == "auditor"
    assert subject[NameOID.ORGANIZATIONAL_UNIT_NAME] == "auditor"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (adir / "client.key").stat().st_mode & 0o777 == 0o600
    assert "auditor" not in world.running.config.tenants
    with pytest.raises(ConfigError) as info:
        init_cluster(world.root / "refused", 3, 2, ("acme", "auditor"))
    assert "other than auditor and coordinator" in str(info.value)
    assert not (world.root / "refused").exists()


def test_auditor_lists_and_fetches_snapshots_but_no_proofs(world: World) -> None:
    with ProofClient.from_data_dir(world.data_dir, "auditor") as auditor:
        ids = [s.snapshot_id for s in auditor.snapshots(page_size=1)]
        assert ids == [world.later_result["snapshot_id"], world.result["snapshot_id"]]
        got = auditor.snapshot(world.result["snapshot_id"])
        assert got.snapshot_json == (world.out / "snapshot.json").read_text()
        with pytest.raises(grpc.RpcError) as info:
            auditor.proof("acme/alice")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(info.value) == "NOT_A_TENANT"


def _auditor_channel_args(world: World) -> tuple[str, bytes, bytes, bytes]:
    config = world.running.config
    adir = config.data_dir / "auditor"
    return (
        config.coordinator_address,
        config.ca_cert.read_bytes(),
        (adir / "client.pem").read_bytes(),
        (adir / "client.key").read_bytes(),
    )


def test_auditor_certificate_cannot_use_custody_or_governance(world: World) -> None:
    """Even holding a tenant's initiator key, the auditor's certificate signs nothing."""
    acme = CustodyClient.from_data_dir(world.data_dir, "acme")
    address, ca, cert, key = _auditor_channel_args(world)
    auditor = CustodyClient(
        address,
        ca,
        cert,
        key,
        tenant="acme",
        initiator=acme.initiator,
        initiator_key=acme._initiator_key,  # stolen: the certificate still decides
    )
    calls = [
        lambda: auditor.list_keys(),
        lambda: auditor.get_key(world.keys.ecdsa),
        lambda: auditor.stub.CreateKey(
            custody_pb2.CreateKeyRequest(scheme=custody_pb2.SCHEME_EDDSA_ED25519)
        ),
        lambda: auditor.submit(
            world.keys.ecdsa,
            request_type=RequestType.MESSAGE,
            chain=OFFCHAIN,
            asset=OFFCHAIN,
            payload=b"hello",
            wait=False,
        ),
    ]
    try:
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert reason_of(info.value) == "NOT_A_TENANT"
        governance = GovernanceClient(address, ca, cert, key)
        with pytest.raises(grpc.RpcError) as info:
            governance.version()
        assert reason_of(info.value) == "NOT_A_CLIENT"
        governance.close()
    finally:
        auditor.close()
        acme.close()


def test_tenant_fetches_only_its_own_customers_proofs(world: World, tmp_path: Path) -> None:
    with ProofClient.from_data_dir(world.data_dir, "globex") as globex:
        for cid in ("acme/alice", "acme/nobody"):  # the same refusal: no existence oracle
            with pytest.raises(grpc.RpcError) as info:
                globex.proof(cid, world.result["snapshot_id"])
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert reason_of(info.value) == "CUSTOMER_NOT_OF_TENANT"
        own = globex.proof("globex/carol", world.result["snapshot_id"])
        assert own.proof_json == (world.out / "proofs" / proof_filename("globex/carol")).read_text()
        with pytest.raises(grpc.RpcError) as info:
            globex.proof("globex/dave", world.result["snapshot_id"])  # no leaf at the cut-off
        assert reason_of(info.value) == "PROOF_NOT_FOUND"


def test_por_commands_fetch_what_custody_por_verifies(world: World, tmp_path: Path) -> None:
    d = world.data_dir
    listed = _cli("por", "list", "--data-dir", d)["snapshots"]
    assert [s["snapshot_id"] for s in listed][-1] == world.result["snapshot_id"]
    sid = world.result["snapshot_id"]
    _cli("por", "get", "--data-dir", d, "--snapshot-id", sid, "--out", str(tmp_path / "s.json"))
    _cli(
        "por",
        "proof",
        "--data-dir",
        d,
        "--snapshot-id",
        sid,
        "--customer",
        "acme/bob",
        "--out",
        str(tmp_path / "p.json"),
    )
    done = _por(
        "verify",
        "--snapshot",
        str(tmp_path / "s.json"),
        "--proof",
        str(tmp_path / "p.json"),
        "--service-key",
        world.service_key,
        "--expect-minor",
        "ETH=1",
    )
    assert done.returncode == 0, done.stderr
    refused = _cli(
        "por",
        "proof",
        "--data-dir",
        d,
        "--customer",
        "acme/bob",
        "--as",
        "auditor",
        "--out",
        str(tmp_path / "q.json"),
        code=1,
    )
    assert refused["code"] == "NOT_A_TENANT" and not (tmp_path / "q.json").exists()


def test_proof_service_stub_over_the_coordinator_address(world: World) -> None:
    """The same service as the generated stub sees it (no client helper in between)."""
    address, ca, cert, key = _auditor_channel_args(world)
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    with grpc.secure_channel(address, creds) as channel:
        stub = por_pb2_grpc.ProofServiceStub(channel)
        newest = stub.GetSnapshot(pb.GetSnapshotRequest())
        assert newest.summary.snapshot_id == world.later_result["snapshot_id"]
