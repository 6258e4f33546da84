"""Play the coordinator by hand: call signer nodes directly with the coordinator's
certificate and build what it would send, so tests can make it lie."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from custody._pb.custody.node.v1 import node_pb2, node_pb2_grpc
from policy.request import Approval, SigningRequest
from signer_nodes.node.authorization import approval_to_proto, request_to_proto


def node_stub(running, node_id: int) -> tuple[grpc.Channel, node_pb2_grpc.NodeServiceStub]:
    cdir = running.config.coordinator_dir
    creds = grpc.ssl_channel_credentials(
        running.config.ca_cert.read_bytes(),
        (cdir / "client.key").read_bytes(),
        (cdir / "client.pem").read_bytes(),
    )
    channel = grpc.secure_channel(running.config.node(node_id).address, creds)
    return channel, node_pb2_grpc.NodeServiceStub(channel)


def active_version_id(running, node_id: int = 1) -> bytes:
    channel, stub = node_stub(running, node_id)
    with channel:
        return bytes(stub.ActivatePolicy(node_pb2.ActivatePolicyRequest()).active_version_id)


def authorizations(
    running,
    request: SigningRequest,
    initiator_signature: bytes,
    signers: Iterable[int],
    *,
    approvals: Iterable[Approval] = (),
    policy_version_id: bytes | None = None,
    hide_history: bool = False,
    reports_for: tuple[SigningRequest, bytes] | None = None,
) -> dict[int, node_pb2.Authorization]:
    """What an honest coordinator sends each signer (engine._authorizations); with
    ``hide_history`` the coordinator's view omits every past signature; with
    ``reports_for`` the history reports are those given for another signed request (a
    node gives none for a request its initiator did not sign)."""
    signers = sorted(signers)
    reported, reported_sig = reports_for or (request, initiator_signature)
    digest = reported.digest()
    reports = {}
    for i in signers:
        channel, stub = node_stub(running, i)
        with channel:
            reports[i] = stub.GetHistoryReport(
                node_pb2.GetHistoryReportRequest(
                    request_digest=digest,
                    request=request_to_proto(reported),
                    initiator_signature=reported_sig,
                )
            ).report
    view: dict[str, node_pb2.HistoryEntry] = {}
    if not hide_history:
        for r in reports.values():
            for e in r.entries:
                view[e.request_id] = e
    version = policy_version_id or active_version_id(running)
    return {
        i: node_pb2.Authorization(
            request=request_to_proto(request),
            initiator_signature=initiator_signature,
            approvals=[approval_to_proto(a) for a in approvals],
            policy_version_id=version,
            reports=[reports[j] for j in signers if j != i],
            coordinator_view=list(view.values()),
            signing_set=signers,
        )
        for i in signers
    }


def release_leases(running, request: SigningRequest, signers: Iterable[int]) -> None:
    """What a coordinator does when it gives up on a request it asked reports for: hand
    back the tenant's lease at each node (policy/exchange.py, "Leases")."""
    for i in signers:
        channel, stub = node_stub(running, i)
        with channel:
            stub.ReleaseLease(
                node_pb2.ReleaseLeaseRequest(
                    request_id=request.request_id, request_digest=request.digest()
                )
            )
