"""Edits a lying coordinator makes to what an honest one would send a signer node
(``tests.service.lying.authorizations``): other approvals, a report left out, another
account of the tenant's past signatures, another signing set. Each returns a copy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from custody._pb.custody.node.v1 import node_pb2
from policy.request import Approval, SigningRequest
from signer_nodes.node.authorization import approval_to_proto, request_to_proto
from tests.policy.service.liar_cluster import LiarCluster


def _copy(auth: node_pb2.Authorization) -> node_pb2.Authorization:
    out = node_pb2.Authorization()
    out.CopyFrom(auth)
    return out


def with_approvals(
    auths: Mapping[int, node_pb2.Authorization], approvals: Iterable[Approval]
) -> dict[int, node_pb2.Authorization]:
    """Every signer's authorization with ``approvals`` instead of the honest ones."""
    approvals = list(approvals)
    out = {}
    for i, auth in auths.items():
        lie = _copy(auth)
        del lie.approvals[:]
        lie.approvals.extend(approval_to_proto(a) for a in approvals)
        out[i] = lie
    return out


def without_report(auth: node_pb2.Authorization, node_id: int) -> node_pb2.Authorization:
    """``auth`` without ``node_id``'s history report."""
    lie = _copy(auth)
    kept = [r for r in lie.reports if r.head.node_id != node_id]
    del lie.reports[:]
    lie.reports.extend(kept)
    return lie


def told(
    auth: node_pb2.Authorization, view: Iterable[node_pb2.HistoryEntry]
) -> node_pb2.Authorization:
    """``auth`` with ``view`` as the coordinator's account of the tenant's signatures."""
    lie = _copy(auth)
    del lie.coordinator_view[:]
    lie.coordinator_view.extend(view)
    return lie


def signing_set(auth: node_pb2.Authorization, members: Iterable[int]) -> node_pb2.Authorization:
    """``auth`` claiming another signing set."""
    lie = _copy(auth)
    del lie.signing_set[:]
    lie.signing_set.extend(sorted(members))
    return lie


def known_to(
    cluster: LiarCluster,
    node_id: int,
    tenant: str,
    request: SigningRequest,
    initiator_signature: bytes,
) -> list[node_pb2.HistoryEntry]:
    """``tenant``'s entries in ``node_id``'s own log, from its signed report for
    ``request``: the account a coordinator gives a node when it hides only what that node
    cannot know by itself."""
    report = (
        cluster.stub(node_id)
        .GetHistoryReport(
            node_pb2.GetHistoryReportRequest(
                request=request_to_proto(request), initiator_signature=initiator_signature
            )
        )
        .report
    )
    return [e for e in report.entries if e.tenant == tenant]
