"""The hot statements stay index seeks as the databases grow (revisions c0003, n0003).

Used pool entries and old leases are kept, so a statement that filters on a column
without a matching index reads more rows every day: the nonce pick once read every
entry its node ever had. SQLite's ``EXPLAIN QUERY PLAN`` names the index and the
columns it seeks on; each statement here must seek on all of its equality columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, func, select
from sqlalchemy.sql import Executable

from custody.coordinator.store import _PICK_NONCE, PresignatureRow
from custody.migrations import runner
from signer_nodes.db import Role
from signer_nodes.node.policy_state import _TENANT_BUSY


def plan(conn: Connection, statement: Executable, **values: Any) -> str:
    compiled = statement.compile(dialect=conn.dialect)
    params = compiled.construct_params(values)
    args = tuple(params[name] for name in compiled.positiontup or ())
    rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args).fetchall()
    return " | ".join(str(r[3]) for r in rows)


@pytest.fixture
def at_head(tmp_path: Path) -> Any:
    def connect(role: Role) -> Connection:
        url = f"sqlite:///{tmp_path / f'{role.value}.db'}"
        runner.upgrade(url, role)
        return create_engine(url).connect()

    return connect


def test_the_coordinator_picks_pool_entries_by_index(at_head: Any) -> None:
    with at_head(Role.COORDINATOR) as conn:
        nonce = plan(conn, _PICK_NONCE, key_id="k", node_id=1)
        assert "ix_pool_nonces_pick (key_id=? AND node_id=? AND state=?)" in nonce
        levels = select(PresignatureRow.signers, func.count()).where(
            PresignatureRow.key_id == "k", PresignatureRow.state == "unused"
        )
        assert "ix_pool_presignatures_pick (key_id=? AND state=?)" in plan(
            conn, levels.group_by(PresignatureRow.signers)
        )


def test_a_node_finds_a_held_lease_by_index(at_head: Any) -> None:
    with at_head(Role.NODE) as conn:
        busy = plan(conn, _TENANT_BUSY, b_tenant="acme", b_now=0)
        assert "ix_policy_leases_held (tenant=? AND state=? AND expires_at>?)" in busy
