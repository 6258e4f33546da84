"""ProofService (``custody.por.v1``): snapshots for auditors, inclusion proofs for customers.

Thin: requests are checked and turned into store calls; the documents returned
are the published files byte for byte, ready for ``custody-por``. Who may see
what (``docs/por-format.md`` section 11):

* snapshots are public documents: a tenant, the auditor (``auditor``, a client
  certificate ``custody init`` makes for auditors, which holds no tenant's keys and
  cannot call CustodyService) and the coordinator may list and fetch them; any other
  certificate of the cluster CA (a signer node's) is refused;
* an inclusion proof reveals the customer's balances and salt, so only the
  customer's tenant may fetch it: the caller's certificate common name must be a
  tenant ``T`` of the cluster and the customer id must begin with ``T/``
  (:mod:`custody.por.customers`). The check is on the id alone, before any lookup.

Errors are google.rpc.Status with a stable ErrorInfo reason
(:mod:`signer_nodes.grpc_errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

import grpc
import structlog
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from custody._pb.custody.por.v1 import por_pb2 as pb
from custody._pb.custody.por.v1 import por_pb2_grpc
from custody.config import ClusterConfig
from custody.pki import AUDITOR_CLIENT, COORDINATOR_CLIENT
from custody.por.customers import tenant_of
from custody.por.store import PublishedSnapshot, SnapshotStore, StoreCorruptError
from proofs import encoding as enc
from proofs import fields as f
from proofs.snapshot import canonical_json
from signer_nodes.grpc_errors import ServiceError, abort

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ProofService"].full_name
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
T = TypeVar("T")
INVALID = grpc.StatusCode.INVALID_ARGUMENT
log = structlog.get_logger("por")


def peer_common_names(context: grpc.ServicerContext) -> list[bytes]:
    """Subject common names of the verified client certificate (mTLS is required)."""
    names: bytes | Iterable[bytes] = context.auth_context().get("x509_common_name") or []
    return [names] if isinstance(names, bytes) else list(names)


def summary_message(snap: PublishedSnapshot) -> pb.SnapshotSummary:
    return pb.SnapshotSummary(
        snapshot_id=snap.snapshot_id,
        cutoff=snap.cutoff,
        created_at=snap.created_at,
        root_hash=snap.root_hash.hex(),
        leaf_count=snap.leaf_count,
        assets=list(snap.assets),
        service_public_key=snap.service_public_key.hex(),
        publish_time=snap.published_at.isoformat(),
    )


def _snapshot_id(value: str) -> str | None:
    """Empty means the newest; otherwise the format's id syntax."""
    if not value:
        return None
    if not f.ID_RE.fullmatch(value):
        raise ServiceError(
            INVALID, "INVALID_SNAPSHOT_ID", "snapshot ids are 1-128 characters [A-Za-z0-9._:-]"
        )
    return value


def _not_found(snapshot_id: str | None) -> ServiceError:
    what = f"snapshot {snapshot_id}" if snapshot_id else "any snapshot"
    return ServiceError(grpc.StatusCode.NOT_FOUND, "SNAPSHOT_NOT_FOUND", f"no {what} published")


class ProofServicer(por_pb2_grpc.ProofServiceServicer):
    def __init__(self, store: SnapshotStore, tenants: Collection[str]) -> None:
        self.store = store
        self.tenants = frozenset(tenants)
        self.readers = self.tenants | {AUDITOR_CLIENT, COORDINATOR_CLIENT}

    def _reader(self, caller: str) -> None:
        if caller not in self.readers:
            raise ServiceError(
                grpc.StatusCode.PERMISSION_DENIED,
                "NOT_A_READER",
                "snapshots are read by tenants, the auditor and the coordinator",
            )

    def _run(self, context: grpc.ServicerContext, fn: Callable[[str], T], request: Message) -> T:
        names = peer_common_names(context)
        if len(names) != 1:
            abort(
                context,
                ServiceError(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "NO_CLIENT_CERTIFICATE",
                    "a client certificate of the cluster CA is required",
                ),
            )
        try:
            if len(UnknownFieldSet(request)):
                # A field this server does not know could carry intent it would ignore.
                raise ServiceError(
                    INVALID,
                    "UNKNOWN_FIELD",
                    "the request has fields this server does not understand",
                )
            return fn(names[0].decode("utf-8", "replace"))
        except ServiceError as err:
            abort(context, err)
        except StoreCorruptError as exc:
            log.error("por_store_corrupt", detail=str(exc))
            abort(
                context,
                ServiceError(
                    grpc.StatusCode.DATA_LOSS,
                    "PROOF_INCONSISTENT",
                    "the stored proof does not match the published snapshot",
                ),
            )

    def ListSnapshots(
        self, request: pb.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> pb.ListSnapshotsResponse:
        def go(caller: str) -> pb.ListSnapshotsResponse:
            self._reader(caller)
            size = request.page_size or DEFAULT_PAGE_SIZE
            if not 0 < size <= MAX_PAGE_SIZE:
                raise ServiceError(
                    INVALID, "INVALID_PAGE_SIZE", f"page_size must be 0 to {MAX_PAGE_SIZE}"
                )
            after = request.page_token or None
            if after is not None and not f.ID_RE.fullmatch(after):
                raise ServiceError(INVALID, "INVALID_PAGE_TOKEN", "page_token is not one we issued")
            rows = self.store.list_snapshots(size + 1, after)
            if rows is None:
                raise ServiceError(INVALID, "INVALID_PAGE_TOKEN", "page_token is not one we issued")
            more = len(rows) > size
            rows = rows[:size]
            return pb.ListSnapshotsResponse(
                snapshots=[summary_message(r) for r in rows],
                next_page_token=rows[-1].snapshot_id if more else "",
            )

        return self._run(context, go, request)

    def GetSnapshot(
        self, request: pb.GetSnapshotRequest, context: grpc.ServicerContext
    ) -> pb.Snapshot:
        def go(caller: str) -> pb.Snapshot:
            self._reader(caller)
            snapshot_id = _snapshot_id(request.snapshot_id)
            found = self.store.get_snapshot(snapshot_id)
            if found is None:
                raise _not_found(snapshot_id)
            published, document = found
            return pb.Snapshot(
                summary=summary_message(published), snapshot_json=document.decode("ascii")
            )

        return self._run(context, go, request)

    def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> pb.InclusionProof:
        def go(caller: str) -> pb.InclusionProof:
            if caller not in self.tenants:
                raise ServiceError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "NOT_A_TENANT",
                    "inclusion proofs are given to the customer's tenant only",
                )
            snapshot_id = _snapshot_id(request.snapshot_id)
            customer_id = request.customer_id
            size = len(customer_id.encode("utf-8"))
            if not 1 <= size <= enc.MAX_ID_BYTES or tenant_of(customer_id) is None:
                raise ServiceError(
                    INVALID,
                    "INVALID_CUSTOMER_ID",
                    "customer ids are <tenant>/<account>, at most 1024 bytes",
                )
            if tenant_of(customer_id) != caller:
                raise ServiceError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "CUSTOMER_NOT_OF_TENANT",
                    f"a tenant may fetch proofs of ids beginning with {caller}/ only",
                )
            found = self.store.proof(snapshot_id, customer_id)
            if found is None:
                raise _not_found(snapshot_id)
            published, proof = found
            if proof is None:
                raise ServiceError(
                    grpc.StatusCode.NOT_FOUND,
                    "PROOF_NOT_FOUND",
                    f"{customer_id} has no leaf in snapshot {published.snapshot_id}",
                )
            return pb.InclusionProof(
                snapshot_id=published.snapshot_id,
                customer_id=customer_id,
                proof_json=(canonical_json(proof.to_json()) + b"\n").decode("ascii"),
            )

        return self._run(context, go, request)


def add_proof_service(server: grpc.Server, config: ClusterConfig) -> ProofServicer:
    """Register ProofService on the coordinator's gRPC server (before ``server.start()``).

    The snapshots live in the coordinator database (``config.coordinator_database_url()``),
    in tables of their own; ``custody por snapshot`` publishes into the same database.
    """
    servicer = ProofServicer(SnapshotStore(config.coordinator_database_url()), config.tenants)
    por_pb2_grpc.add_ProofServiceServicer_to_server(servicer, server)
    return servicer
