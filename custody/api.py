"""CustodyService: the institution-facing gRPC API, kept thin.

The tenant is the verified client certificate's common name, which must be a
tenant of this cluster; everything else is converted to domain types and
handed to the :class:`~custody.coordinator.engine.Coordinator`. Errors are
google.rpc.Status with an ErrorInfo reason (see docs/errors.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import grpc
import structlog
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from custody import metrics
from custody._pb.custody.v1 import custody_pb2 as pb
from custody._pb.custody.v1 import custody_pb2_grpc
from custody.coordinator.engine import Coordinator, SignInput
from custody.coordinator.store import KeyRow, OperationRow, SignatureRequestRow
from signer_nodes.grpc_errors import ServiceError, abort
from signer_nodes.node.authorization import request_from_proto
from signer_nodes.node.server import peer_common_names

T = TypeVar("T")
SCHEME_TO_API = {
    pb.SCHEME_ECDSA_SECP256K1: "ecdsa-secp256k1",
    pb.SCHEME_EDDSA_ED25519: "eddsa-ed25519",
    pb.SCHEME_SCHNORR_BIP340: "schnorr-bip340",
}
INTERNAL_TO_PROTO = {
    "frost-ed25519": pb.SCHEME_EDDSA_ED25519,
    "frost-bip340": pb.SCHEME_SCHNORR_BIP340,
    "ecdsa-dkls23": pb.SCHEME_ECDSA_SECP256K1,
}
STATE_TO_PROTO = {
    "PENDING": pb.REQUEST_STATE_PENDING,
    "SIGNING": pb.REQUEST_STATE_SIGNING,
    "SUCCEEDED": pb.REQUEST_STATE_SUCCEEDED,
    "FAILED": pb.REQUEST_STATE_FAILED,
    "PENDING_APPROVAL": pb.REQUEST_STATE_PENDING_APPROVAL,
}


def key_message(row: KeyRow) -> pb.Key:
    return pb.Key(
        key_id=row.key_id,
        scheme=INTERNAL_TO_PROTO[row.scheme],
        public_key=row.public_key,
        threshold=row.threshold,
        participants=row.participants,
        chain_code=row.chain_code,
        create_time=row.created_at.isoformat(),
    )


def request_message(row: SignatureRequestRow) -> pb.SignatureRequest:
    return pb.SignatureRequest(
        request_id=row.request_id,
        key_id=row.key_id,
        path=row.path,
        state=STATE_TO_PROTO[row.state],
        signature=row.signature or b"",
        public_key=row.public_key or b"",
        recovery_id=row.recovery_id,
        error_code=row.error_code or "",
        error_message=row.error_message or "",
        signers=[int(x) for x in row.signers.split(",") if x],
        signed_digest=row.signed_digest,
        approval_requirement=row.requirement,
        request_digest=row.request_digest,
    )


class CustodyServicer(custody_pb2_grpc.CustodyServiceServicer):
    def __init__(self, coordinator: Coordinator, tenants: tuple[str, ...]) -> None:
        self.coordinator = coordinator
        self.tenants = set(tenants)

    def _tenant(self, context: grpc.ServicerContext) -> str:
        names = peer_common_names(context)
        tenant = names[0].decode() if len(names) == 1 else ""
        if tenant not in self.tenants:
            abort(
                context,
                ServiceError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "NOT_A_TENANT",
                    "the client certificate is not a tenant of this cluster",
                ),
            )
        return tenant

    def _run(self, context: grpc.ServicerContext, fn: Callable[[str], T], request: Message) -> T:
        method = type(request).__name__.removesuffix("Request")
        started = time.perf_counter()
        outcome = ["OK"]
        try:
            with structlog.contextvars.bound_contextvars(
                method=method, request_id=getattr(request, "request_id", None) or None
            ):
                return self._run_inner(context, fn, request, outcome)
        except Exception:
            if outcome[0] == "OK":
                outcome[0] = "INTERNAL"
            raise
        finally:
            structlog.contextvars.unbind_contextvars("tenant")
            metrics.API_REQUESTS.labels(method, outcome[0]).inc()
            metrics.API_LATENCY.labels(method).observe(time.perf_counter() - started)

    def _run_inner(
        self,
        context: grpc.ServicerContext,
        fn: Callable[[str], T],
        request: Message,
        outcome: list[str],
    ) -> T:
        outcome[0] = "NOT_A_TENANT"
        tenant = self._tenant(context)
        outcome[0] = "OK"
        structlog.contextvars.bind_contextvars(tenant=tenant)
        if len(UnknownFieldSet(request)):
            # A field this server does not know could carry intent it would ignore.
            outcome[0] = "UNKNOWN_FIELD"
            abort(
                context,
                ServiceError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "UNKNOWN_FIELD",
                    "the request has fields this server does not understand",
                ),
            )
        try:
            return fn(tenant)
        except ServiceError as err:
            outcome[0] = err.reason
            abort(context, err)

    def _operation(self, op: OperationRow, tenant: str) -> pb.Operation:
        out = pb.Operation(
            name=f"operations/{op.operation_id}",
            done=op.state != "RUNNING",
            error_code=op.error_code or "",
            error_message=op.error_message or "",
            stage=op.stage,
            progress_done=op.progress_done,
            progress_total=op.progress_total,
        )
        if op.key_id:
            out.key.CopyFrom(key_message(self.coordinator.get_key(tenant, op.key_id)))
        return out

    @staticmethod
    def _operation_id(name: str) -> str:
        if not name.startswith("operations/"):
            raise ServiceError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_OPERATION_NAME",
                "operation names look like operations/{id}",
            )
        return name.removeprefix("operations/")

    def CreateKey(
        self, request: pb.CreateKeyRequest, context: grpc.ServicerContext
    ) -> pb.Operation:
        def go(tenant: str) -> pb.Operation:
            scheme = SCHEME_TO_API.get(request.scheme)
            if scheme is None:
                raise ServiceError(
                    grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_SCHEME", "scheme must be set"
                )
            return self._operation(
                self.coordinator.create_key(tenant, scheme, request.request_id or None), tenant
            )

        return self._run(context, go, request)

    def GetOperation(
        self, request: pb.GetOperationRequest, context: grpc.ServicerContext
    ) -> pb.Operation:
        return self._run(
            context,
            lambda t: self._operation(
                self.coordinator.get_operation(t, self._operation_id(request.name)), t
            ),
            request,
        )

    def WaitOperation(
        self, request: pb.WaitOperationRequest, context: grpc.ServicerContext
    ) -> pb.Operation:
        def go(tenant: str) -> pb.Operation:
            op_id = self._operation_id(request.name)
            return self._operation(
                self.coordinator.wait_operation(tenant, op_id, request.timeout_seconds or 30.0),
                tenant,
            )

        return self._run(context, go, request)

    def GetKey(self, request: pb.GetKeyRequest, context: grpc.ServicerContext) -> pb.Key:
        return self._run(
            context, lambda t: key_message(self.coordinator.get_key(t, request.key_id)), request
        )

    def ListKeys(
        self, request: pb.ListKeysRequest, context: grpc.ServicerContext
    ) -> pb.ListKeysResponse:
        return self._run(
            context,
            lambda t: pb.ListKeysResponse(
                keys=[key_message(k) for k in self.coordinator.list_keys(t)]
            ),
            request,
        )

    def DeriveKey(
        self, request: pb.DeriveKeyRequest, context: grpc.ServicerContext
    ) -> pb.DerivedKey:
        def go(tenant: str) -> pb.DerivedKey:
            public_key, chain_code = self.coordinator.derive(tenant, request.key_id, request.path)
            return pb.DerivedKey(
                key_id=request.key_id,
                path=request.path,
                public_key=public_key,
                chain_code=chain_code,
            )

        return self._run(context, go, request)

    def RequestSignature(
        self, request: pb.RequestSignatureRequest, context: grpc.ServicerContext
    ) -> pb.SignatureRequest:
        def go(tenant: str) -> pb.SignatureRequest:
            if not request.HasField("request"):
                raise ServiceError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "REQUEST_MISSING",
                    "a signature request carries the structured request the initiator signed",
                )
            if len(request.initiator_signature) != 64:
                raise ServiceError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "INITIATOR_SIGNATURE_INVALID",
                    "initiator_signature is a 64-byte Ed25519 signature",
                )
            try:
                signed = request_from_proto(request.request)
            except ServiceError as err:
                raise ServiceError(
                    grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_INVALID", err.message
                ) from None
            inp = SignInput(request.request_id, signed, request.initiator_signature)
            return request_message(self.coordinator.request_signature(tenant, inp))

        return self._run(context, go, request)

    def GetSignatureRequest(
        self, request: pb.GetSignatureRequestRequest, context: grpc.ServicerContext
    ) -> pb.SignatureRequest:
        return self._run(
            context,
            lambda t: request_message(self.coordinator.get_request(t, request.request_id)),
            request,
        )

    def WaitSignatureRequest(
        self, request: pb.WaitSignatureRequestRequest, context: grpc.ServicerContext
    ) -> pb.SignatureRequest:
        return self._run(
            context,
            lambda t: request_message(
                self.coordinator.wait_request(
                    t, request.request_id, request.timeout_seconds or 30.0
                )
            ),
            request,
        )
