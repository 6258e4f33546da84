"""One call that opens the coordinator's governance from its directory and database:
what ``custody/server.py`` needs to serve GovernanceService next to CustodyService.

The coordinator directory must hold the genesis files (``GenesisFiles.install``) and gets
``audit.key`` (0600) with ``audit.pub`` on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc

from custody.governance.approvals import RequestApprovals, RequestStatus
from custody.governance.chain import PolicyGovernance
from custody.governance.keys import ensure_audit_key
from custody.governance.store import GovernanceStore
from signer_nodes.node.policy_state import GenesisPin

AUDIT_KEY_FILE = "audit.key"


@dataclass(frozen=True, slots=True)
class Governance:
    store: GovernanceStore
    chain: PolicyGovernance
    approvals: RequestApprovals

    def add_to_server(self, server: grpc.Server, tenants: Iterable[str]) -> str:
        """Register GovernanceService on ``server``; returns its full service name."""
        from custody._pb.custody.governance.v1 import governance_pb2_grpc
        from custody.governance.service import SERVICE_NAME, GovernanceServicer

        governance_pb2_grpc.add_GovernanceServiceServicer_to_server(
            GovernanceServicer(self.chain, self.approvals, self.store, tenants), server
        )
        return SERVICE_NAME


def open_governance(
    database_url: str,
    coordinator_dir: Path,
    *,
    on_activated: Callable[[bytes], None] | None = None,
    on_request_changed: Callable[[RequestStatus], None] | None = None,
    checkpoint_every: int = 32,
    checkpoint_seconds: int = 300,
) -> Governance:
    store = GovernanceStore(
        database_url,
        ensure_audit_key(coordinator_dir / AUDIT_KEY_FILE),
        checkpoint_every=checkpoint_every,
        checkpoint_seconds=checkpoint_seconds,
    )
    chain = PolicyGovernance(store, GenesisPin.load(coordinator_dir), on_activated=on_activated)
    approvals = RequestApprovals(store, chain, on_request_changed=on_request_changed)
    return Governance(store, chain, approvals)
