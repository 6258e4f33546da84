"""A ProofService client for auditors and tenants (``custody por list|get|proof``).

The caller's identity is its mTLS client certificate (``docs/por-format.md``
section 11): the auditor's (``<data-dir>/auditor/``, made by ``custody init``) to
list and fetch snapshots, or a tenant's (``<data-dir>/tenants/<T>/``) to fetch the
inclusion proofs of that tenant's customers as well. Everything returned is the
published file as is; checking it is the standalone verifier's job (``custody-por``),
so nothing here needs to be trusted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import grpc

from custody._pb.custody.por.v1 import por_pb2 as pb
from custody._pb.custody.por.v1 import por_pb2_grpc
from custody.config import ClusterConfig, ConfigError
from custody.pki import AUDITOR_CLIENT, AUDITOR_DIR

DEFAULT_TIMEOUT = 30.0


def identity_dir(config: ClusterConfig, identity: str) -> Path:
    """Where the client certificate of ``identity`` (the auditor or a tenant) lives."""
    if identity == AUDITOR_CLIENT:
        return config.data_dir / AUDITOR_DIR
    if identity in config.tenants:
        return config.tenant_dir(identity)
    raise ConfigError(f"{identity!r} is neither {AUDITOR_CLIENT!r} nor a tenant of this cluster")


class ProofClient:
    """ProofService over mTLS as one identity."""

    def __init__(
        self, address: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, *, identity: str
    ) -> None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        )
        self.identity = identity
        self.channel = grpc.secure_channel(address, creds)
        self.stub = por_pb2_grpc.ProofServiceStub(self.channel)

    @classmethod
    def from_data_dir(cls, data_dir: Path | str, identity: str = AUDITOR_CLIENT) -> ProofClient:
        """Connect to the coordinator of the cluster in ``data_dir`` as ``identity``."""
        config = ClusterConfig.load(data_dir)
        directory = identity_dir(config, identity)
        try:
            cert, key = (
                (directory / "client.pem").read_bytes(),
                (directory / "client.key").read_bytes(),
            )
        except OSError as exc:
            raise ConfigError(
                f"no client certificate for {identity!r} in {directory} ({exc.strerror});"
                " clusters made before the auditor identity have none"
            ) from None
        return cls(
            config.coordinator_address,
            config.ca_cert.read_bytes(),
            cert,
            key,
            identity=identity,
        )

    def snapshots(self, page_size: int = 0) -> Iterator[pb.SnapshotSummary]:
        """Every published snapshot, newest first (all pages)."""
        token = ""
        while True:
            page: pb.ListSnapshotsResponse = self.stub.ListSnapshots(
                pb.ListSnapshotsRequest(page_size=page_size, page_token=token),
                timeout=DEFAULT_TIMEOUT,
            )
            yield from page.snapshots
            token = page.next_page_token
            if not token:
                return

    def snapshot(self, snapshot_id: str = "") -> pb.Snapshot:
        """A published snapshot (empty id: the newest)."""
        result: pb.Snapshot = self.stub.GetSnapshot(
            pb.GetSnapshotRequest(snapshot_id=snapshot_id), timeout=DEFAULT_TIMEOUT
        )
        return result

    def proof(self, customer_id: str, snapshot_id: str = "") -> pb.InclusionProof:
        """The inclusion proof of ``customer_id`` (a customer of this tenant)."""
        result: pb.InclusionProof = self.stub.GetInclusionProof(
            pb.GetInclusionProofRequest(snapshot_id=snapshot_id, customer_id=customer_id),
            timeout=DEFAULT_TIMEOUT,
        )
        return result

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ProofClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
