"""The tenant lease behind history reports (policy/exchange.py, "Leases";
signer_nodes/node/policy_state.py): a node reports for one request of a tenant at a
time, records a request only while it holds that request's lease, and never signs a
request whose lease it lost (refused, handed back, or run out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.authorize import Authorization, authorize
from policy.exchange import LEASE_SECONDS
from policy.request import SigningRequest
from signer_nodes.node.policy_state import LeaseRow, PolicyState, PolicyStateError
from tests.policy.helpers import T0, isig, key, req
from tests.policy.service.db import database_url
from tests.policy.service.fixtures import genesis_pin

NOW = T0 + 10


@pytest.fixture
def state(tmp_path: Path) -> PolicyState:
    return PolicyState(database_url(tmp_path, "node"), genesis_pin())


def report(state: PolicyState, request: SigningRequest, now: int = NOW) -> int:
    return state.report(key("node-1"), 1, request, now).head.count


def refused(fn: object, *args: object) -> str:
    with pytest.raises(PolicyStateError) as err:
        fn(*args)  # type: ignore[operator]
    return err.value.code


def record(state: PolicyState, request: SigningRequest, now: int = NOW) -> None:
    decided = authorize(
        state.active(),
        request=request,
        initiator_signature=isig(request),
        approvals=(),
        policy_version_id=state.active().version_id,
        key_tenant=request.tenant,
        history=state.history(),
        now=now,
    )
    assert isinstance(decided, Authorization), decided
    with state.transaction() as s:
        state.record_authorization(s, decided, now)


def test_one_request_of_a_tenant_at_a_time(state: PolicyState) -> None:
    first, second = req(request_id="r-1"), req(request_id="r-2", amount=7)
    report(state, first)
    report(state, first, NOW + 1)  # the holder may ask again (a retry on other signers)
    assert refused(report, state, second) == "HISTORY_LEASE_BUSY"
    report(state, req(request_id="g-1", tenant="globex", initiator="globex-bot"))  # other tenant
    record(state, first)  # recording releases the lease...
    assert report(state, second) == 1  # ... and the next report includes what was signed
    assert report(state, first, NOW + 2) == 1  # a signed request may still be reported for


def test_a_record_needs_the_lease(state: PolicyState) -> None:
    r = req(request_id="r-1")
    assert refused(record, state, r) == "HISTORY_LEASE_MISSING"
    assert state.log().count == 0


def test_a_lease_that_runs_out_is_lost_for_good(state: PolicyState) -> None:
    r, other = req(request_id="r-1"), req(request_id="r-2")
    report(state, r)
    late = NOW + LEASE_SECONDS
    assert refused(record, state, r, late) == "HISTORY_LEASE_LOST"
    assert refused(report, state, r, late) == "HISTORY_LEASE_LOST"
    report(state, other, late)  # the tenant is free again
    record(state, other, late)
    assert [e.request_id for e in state.log().entries] == ["r-2"]


def test_a_refused_or_released_request_is_never_signed(state: PolicyState) -> None:
    r, other = req(request_id="r-1"), req(request_id="r-2")
    report(state, r)
    state.forfeit(r.request_id, req(request_id="r-1", amount=5).digest())  # not r: no effect
    assert refused(report, state, other) == "HISTORY_LEASE_BUSY"
    state.forfeit(r.request_id, r.digest())
    assert refused(record, state, r) == "HISTORY_LEASE_LOST"
    assert refused(report, state, r) == "HISTORY_LEASE_LOST"
    report(state, other)


def test_a_retry_of_a_recorded_request_needs_no_lease(state: PolicyState) -> None:
    r = req(request_id="r-1")
    report(state, r)
    record(state, r)
    record(state, r, NOW + LEASE_SECONDS + 5)  # same request again: not appended twice
    assert state.log().count == 1
    assert refused(report, state, req(request_id="r-1", amount=9)) == "REQUEST_ID_REUSED"


def test_leases_outlive_restarts_and_are_pruned_when_the_request_expires(
    tmp_path: Path,
) -> None:
    url = database_url(tmp_path, "node")
    state = PolicyState(url, genesis_pin())
    r = req(request_id="r-1")
    report(state, r)
    state.forfeit(r.request_id, r.digest())
    reopened = PolicyState(url, genesis_pin())
    assert refused(report, reopened, r) == "HISTORY_LEASE_LOST"  # a restart forgets nothing
    limits = reopened.active().policy.document.limits
    expired = r.created_at + limits.request_max_age_seconds + limits.clock_skew_seconds + 1
    fresh = req(request_id="r-2", created_at=expired - 5)
    report(reopened, fresh, expired)  # prunes r's row: nobody honest signs r any more
    with reopened.transaction() as s:
        assert s.get(LeaseRow, r.request_id) is None
        assert s.get(LeaseRow, fresh.request_id) is not None
