"""gRPC errors as google.rpc.Status with an ErrorInfo reason (AIP-193).

Every service aborts through :func:`abort`, so clients always find a stable,
machine-readable ``reason`` next to the human message; :func:`reason_of`
reads it back on the client side.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "custody.mpc"


class ServiceError(Exception):
    """A domain error with a gRPC status code and a stable reason."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata


def to_status(err: ServiceError) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=err.metadata))
    code = getattr(code_pb2, err.code.name)
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code, message=err.message, details=[info])
    )
    return status


def abort(context: grpc.ServicerContext, err: ServiceError) -> NoReturn:
    context.abort_with_status(to_status(err))
    raise AssertionError("unreachable")  # abort_with_status raises


def reason_of(exc: grpc.RpcError) -> str | None:
    """The ErrorInfo reason of a failed call, if the server sent one."""
    status = rpc_status.from_call(exc)
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return None
