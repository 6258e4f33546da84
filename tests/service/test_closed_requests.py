"""A request waiting for approvals that governance closes (an approver rejects it) fails
at once on the coordinator with governance's reason (engine.on_request_changed), instead
of staying PENDING_APPROVAL until a client gives up; no node is asked to sign it."""

from __future__ import annotations

from custody._pb.custody.governance.v1 import governance_pb2 as gpb
from custody._pb.custody.v1 import custody_pb2 as pb
from policy.request import ApprovalDecision
from tests.payments_service.conftest import world  # noqa: F401
from tests.payments_service.helpers import (
    ETHER,
    Background,
    World,
    api_request,
    await_pending,
    decide,
    eth_spec,
    fund_eth,
)
from tests.service.conftest import RunningCluster, acme, running  # noqa: F401

__all__ = ["RunningCluster"]


def test_a_rejected_request_fails_with_the_rejection(world: World) -> None:  # noqa: F811
    path = "m/41"
    fund_eth(world, "dora", path, 3 * ETHER)
    job = Background(
        lambda: world.service().create(eth_spec(world, "closed-1", "dora", path, 2 * ETHER))
    )
    await_pending(world, "acme:payment:closed-1:0")
    waiting = api_request(world, "payment:closed-1:0")
    assert waiting.state == pb.REQUEST_STATE_PENDING_APPROVAL
    rejected = decide(world, "acme:payment:closed-1:0", "acme-approver-2", ApprovalDecision.REJECT)
    assert rejected.state == gpb.REQUEST_STATE_REJECTED
    done = api_request(world, "payment:closed-1:0")
    assert done.state == pb.REQUEST_STATE_FAILED
    assert done.error_code == "APPROVAL_REJECTED"
    assert not done.signature
    assert job.outcome().state == "RELEASED"
