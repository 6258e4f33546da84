"""Coordinator-side governance over a fresh database per test (SQLite, or PostgreSQL with
``CUSTODY_TEST_POSTGRES``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from custody.governance.approvals import RequestApprovals
from custody.governance.chain import PolicyGovernance
from custody.governance.store import GovernanceStore
from tests.policy.helpers import T0, key
from tests.policy.service.db import database_url
from tests.policy.service.fixtures import FakeClock, genesis_pin

AUDIT_KEY = key("coordinator-audit")


class Gov:
    """One coordinator's governance objects; ``activated`` collects pushed bundles."""

    def __init__(self, url: str, clock: FakeClock, *, checkpoint_every: int = 4) -> None:
        self.url = url
        self.clock = clock
        self.activated: list[bytes] = []
        self.store = GovernanceStore(url, AUDIT_KEY, checkpoint_every=checkpoint_every, clock=clock)
        self.chain = PolicyGovernance(self.store, genesis_pin(), on_activated=self.activated.append)
        self.approvals = RequestApprovals(self.store, self.chain)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def gov(tmp_path: Path, clock: FakeClock) -> Gov:
    return Gov(database_url(tmp_path, "coordinator"), clock)
