"""ProofService over real mTLS: who may fetch what, and stable error reasons."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from sqlalchemy import update

from custody._pb.custody.por.v1 import por_pb2 as pb
from custody._pb.custody.por.v1 import por_pb2_grpc
from custody.pki import CertificateAuthority
from custody.por.service import SERVICE_NAME, ProofServicer
from custody.por.snapshot import load_liabilities, take_snapshot
from custody.por.store import CustomerRow, SnapshotStore
from proofs import verifier
from proofs.build import BuiltSnapshot
from proofs.snapshot import canonical_json
from signer_nodes.grpc_errors import reason_of
from signer_nodes.serving import serve_mtls
from tests.proofs.service.helpers import CUTOFF, SERVICE, SoftwareKeys, custody_keys, rows

TENANTS = ("acme", "globex")
Stub = Callable[[str], por_pb2_grpc.ProofServiceStub]


class Service:
    def __init__(self, root: Path) -> None:
        ca = CertificateAuthority.create()
        self.ca = ca.save(root / "ca").read_bytes()
        self.certs = {
            name: ca.issue(name, unit, root / name, "client", server=False, client=True)
            for name, unit in [
                ("acme", "tenant"),
                ("globex", "tenant"),
                ("auditor", "auditor"),
                ("node-1", "node"),  # a certificate of the CA that is no reader
            ]
        }
        server_cert = ca.issue(
            "coordinator", "coordinator", root / "srv", "server", server=True, client=False
        )
        self.store = SnapshotStore(f"sqlite:///{root / 'coordinator.db'}")
        self.built = [self._publish(f"por-{i}") for i in range(3)]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        por_pb2_grpc.add_ProofServiceServicer_to_server(
            ProofServicer(self.store, TENANTS), self.server
        )
        port = serve_mtls(
            self.server,
            SERVICE_NAME,
            "127.0.0.1:0",
            key=server_cert.key.read_bytes(),
            cert=server_cert.cert.read_bytes(),
            ca=self.ca,
        )
        self.address = f"127.0.0.1:{port}"
        self.server.start()
        self.channels: list[grpc.Channel] = []

    def _publish(self, snapshot_id: str) -> BuiltSnapshot:
        built = take_snapshot(
            load_liabilities(rows(6), TENANTS),
            custody=custody_keys(),
            sign_challenge=SoftwareKeys(),
            service=SERVICE,
            cutoff=CUTOFF,
            snapshot_id=snapshot_id,
        )
        self.store.publish(built)
        return built

    def stub(self, who: str) -> por_pb2_grpc.ProofServiceStub:
        paths = self.certs[who]
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.ca,
            private_key=paths.key.read_bytes(),
            certificate_chain=paths.cert.read_bytes(),
        )
        channel = grpc.secure_channel(self.address, creds)
        self.channels.append(channel)
        return por_pb2_grpc.ProofServiceStub(channel)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.server.stop(None)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("por-service"))
    try:
        yield svc
    finally:
        svc.close()


def _reason(call: Callable[[], object]) -> tuple[grpc.StatusCode, str | None]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), reason_of(info.value)


def test_tenant_gets_its_customers_proof_which_verifies(service: Service) -> None:
    acme = service.stub("acme")
    newest = service.built[-1]
    got = acme.GetInclusionProof(pb.GetInclusionProofRequest(customer_id="acme/cust-0002"))
    assert got.snapshot_id == "por-2" and got.customer_id == "acme/cust-0002"
    row = newest.liabilities.customer_ids.index("acme/cust-0002")
    assert got.proof_json == (canonical_json(newest.proof(row).to_json()) + b"\n").decode()
    snapshot = acme.GetSnapshot(pb.GetSnapshotRequest(snapshot_id="por-2"))
    report = verifier.verify_customer(
        json.loads(snapshot.snapshot_json),
        json.loads(got.proof_json),
        trusted_service_key=SERVICE.public_key,
        customer_id="acme/cust-0002",
        expected_balances={"BTC": 2001, "ETH": 15},
        expected_minor_balances={"ETH": 14 * 10**9 + 2},  # rounded up to 15 gwei
    )
    assert report.snapshot_id == "por-2"
    older = acme.GetInclusionProof(
        pb.GetInclusionProofRequest(snapshot_id="por-0", customer_id="acme/cust-0002")
    )
    assert json.loads(older.proof_json)["snapshot_id"] == "por-0"


def test_another_tenant_cannot_fetch_it(service: Service) -> None:
    globex = service.stub("globex")
    for cid in ("acme/cust-0002", "acme/does-not-exist"):  # same answer: no existence oracle
        request = pb.GetInclusionProofRequest(customer_id=cid)
        assert _reason(functools.partial(globex.GetInclusionProof, request)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CUSTOMER_NOT_OF_TENANT",
        )
    own = globex.GetInclusionProof(pb.GetInclusionProofRequest(customer_id="globex/cust-0001"))
    assert json.loads(own.proof_json)["customer_id"] == "globex/cust-0001"


def test_auditor_reads_snapshots_but_no_proofs(service: Service) -> None:
    auditor = service.stub("auditor")
    snap = auditor.GetSnapshot(pb.GetSnapshotRequest())
    assert snap.summary.snapshot_id == "por-2"
    assert snap.snapshot_json.encode() == canonical_json(service.built[-1].raw) + b"\n"
    assert snap.summary.service_public_key == SERVICE.public_key.hex()
    assert snap.summary.leaf_count == 6 and list(snap.summary.assets) == ["BTC", "ETH", "USDC"]
    verifier.audit(json.loads(snap.snapshot_json), trusted_service_key=SERVICE.public_key)
    assert _reason(
        lambda: auditor.GetInclusionProof(pb.GetInclusionProofRequest(customer_id="acme/cust-0000"))
    ) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_A_TENANT")


def test_other_certificates_of_the_ca_read_nothing(service: Service) -> None:
    node = service.stub("node-1")
    denied = (grpc.StatusCode.PERMISSION_DENIED, "NOT_A_READER")
    assert _reason(lambda: node.ListSnapshots(pb.ListSnapshotsRequest())) == denied
    assert _reason(lambda: node.GetSnapshot(pb.GetSnapshotRequest())) == denied
    request = pb.GetInclusionProofRequest(customer_id="acme/cust-0000")
    assert _reason(lambda: node.GetInclusionProof(request)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_A_TENANT",
    )


def test_listing_pages(service: Service) -> None:
    stub = service.stub("auditor")
    page = stub.ListSnapshots(pb.ListSnapshotsRequest(page_size=2))
    assert [s.snapshot_id for s in page.snapshots] == ["por-2", "por-1"]
    rest = stub.ListSnapshots(pb.ListSnapshotsRequest(page_size=2, page_token=page.next_page_token))
    assert [s.snapshot_id for s in rest.snapshots] == ["por-0"] and rest.next_page_token == ""
    assert len(stub.ListSnapshots(pb.ListSnapshotsRequest()).snapshots) == 3


@pytest.mark.parametrize(
    ("method", "request_", "code", "reason"),
    [
        (
            "GetSnapshot",
            pb.GetSnapshotRequest(snapshot_id="por-9"),
            "NOT_FOUND",
            "SNAPSHOT_NOT_FOUND",
        ),
        (
            "GetSnapshot",
            pb.GetSnapshotRequest(snapshot_id="a b"),
            "INVALID_ARGUMENT",
            "INVALID_SNAPSHOT_ID",
        ),
        (
            "GetInclusionProof",
            pb.GetInclusionProofRequest(snapshot_id="por-9", customer_id="acme/cust-0000"),
            "NOT_FOUND",
            "SNAPSHOT_NOT_FOUND",
        ),
        (
            "GetInclusionProof",
            pb.GetInclusionProofRequest(customer_id="acme/nobody"),
            "NOT_FOUND",
            "PROOF_NOT_FOUND",
        ),
        (
            "GetInclusionProof",
            pb.GetInclusionProofRequest(customer_id="cust-0000"),
            "INVALID_ARGUMENT",
            "INVALID_CUSTOMER_ID",
        ),
        (
            "GetInclusionProof",
            pb.GetInclusionProofRequest(customer_id=""),
            "INVALID_ARGUMENT",
            "INVALID_CUSTOMER_ID",
        ),
        (
            "GetInclusionProof",
            pb.GetInclusionProofRequest(customer_id="acme/" + "x" * 1020),
            "INVALID_ARGUMENT",
            "INVALID_CUSTOMER_ID",
        ),
        (
            "ListSnapshots",
            pb.ListSnapshotsRequest(page_size=-1),
            "INVALID_ARGUMENT",
            "INVALID_PAGE_SIZE",
        ),
        (
            "ListSnapshots",
            pb.ListSnapshotsRequest(page_size=1001),
            "INVALID_ARGUMENT",
            "INVALID_PAGE_SIZE",
        ),
        (
            "ListSnapshots",
            pb.ListSnapshotsRequest(page_token="por-9"),
            "INVALID_ARGUMENT",
            "INVALID_PAGE_TOKEN",
        ),
        (
            "ListSnapshots",
            pb.ListSnapshotsRequest(page_token="!"),
            "INVALID_ARGUMENT",
            "INVALID_PAGE_TOKEN",
        ),
    ],
)
def test_stable_error_reasons(
    service: Service, method: str, request_: object, code: str, reason: str
) -> None:
    stub = service.stub("acme")
    assert _reason(lambda: getattr(stub, method)(request_)) == (grpc.StatusCode[code], reason)


def test_unknown_fields_are_refused(service: Service) -> None:
    service.stub("acme")  # opens an acme channel; send raw bytes through it
    raw = (
        pb.GetSnapshotRequest(snapshot_id="por-1").SerializeToString() + b"\x98\x06\x01"
    )  # field 99
    method = service.channels[-1].unary_unary(
        f"/{SERVICE_NAME}/GetSnapshot",
        request_serializer=lambda b: b,
        response_deserializer=pb.Snapshot.FromString,
    )
    assert _reason(lambda: method(raw)) == (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_FIELD")


def test_a_proof_that_no_longer_matches_the_snapshot_is_withheld(service: Service) -> None:
    with service.store.transaction() as s:
        s.execute(
            update(CustomerRow)
            .where(CustomerRow.snapshot_id == "por-1", CustomerRow.customer_id == "acme/cust-0004")
            .values(balances=(9).to_bytes(8, "big") * 3)
        )
    stub = service.stub("acme")
    assert _reason(
        lambda: stub.GetInclusionProof(
            pb.GetInclusionProofRequest(snapshot_id="por-1", customer_id="acme/cust-0004")
        )
    ) == (grpc.StatusCode.DATA_LOSS, "PROOF_INCONSISTENT")
