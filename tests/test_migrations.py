"""Alembic migrations of both database roles (docs/migrations.md), on SQLite and, when
``CUSTODY_TEST_POSTGRES`` holds an admin URL, on a fresh PostgreSQL database each."""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from custody.migrations import runner
from custody.migrations.__main__ import main as migrations_main
from custody.migrations.models import table_names, target_metadata
from signer_nodes.db import Role, SchemaError, TransactionalStore, make_engine

ROLES = list(Role)
NewUrl = Callable[[], str]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql" and not os.environ.get("CUSTODY_TEST_POSTGRES"):
        pytest.skip("CUSTODY_TEST_POSTGRES is not set")
    return str(request.param)


@pytest.fixture
def new_url(backend: str, tmp_path: Path) -> Iterator[NewUrl]:
    """A factory of URLs of fresh, empty databases on ``backend``."""
    admin = os.environ.get("CUSTODY_TEST_POSTGRES", "")
    created: list[str] = []

    def make() -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'{secrets.token_hex(4)}.db'}"
        name = f"migrations_{secrets.token_hex(6)}"
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        created.append(name)
        return f"{admin.rsplit('/', 1)[0]}/{name}"

    yield make
    if created:
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def differences(url: str, role: Role) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return runner.differences(conn, role)
    finally:
        engine.dispose()


def execute(url: str, sql: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def set_revision(url: str, revision: str) -> None:
    execute(url, f"UPDATE alembic_version SET version_num = '{revision}'")


# -- from empty, and the schema the models describe ------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_upgrade_from_empty_creates_the_models_schema(role: Role, new_url: NewUrl) -> None:
    url = new_url()
    assert runner.upgrade(url, role) == (runner.head(role),)
    assert tables(url) == table_names(role) | {"alembic_version"}
    assert differences(url, role) == []  # autogenerate finds nothing to add or change


@pytest.mark.parametrize("role", ROLES)
def test_one_head_and_head_matches_the_models(role: Role) -> None:
    """A model changed without a revision, or two revisions with the same parent,
    fail here (``python -m custody.migrations check`` says the same)."""
    assert len(runner.script(role).get_heads()) == 1
    assert migrations_main(["check", "--role", role.value]) == 0


def test_every_table_belongs_to_exactly_one_role() -> None:
    coordinator, node = table_names(Role.COORDINATOR), table_names(Role.NODE)
    assert not coordinator & node
    per_role = [len(m.tables) for role in ROLES for m in target_metadata(role)]
    assert sum(per_role) == len(coordinator) + len(node)  # no table in two metadatas


def test_amount_checks_are_the_dialects_own(new_url: NewUrl, backend: str) -> None:
    """``ddl_if`` constraints survive autogenerate: each database gets its own range
    check on ledger amounts, and only that one."""
    url = new_url()
    runner.upgrade(url, Role.COORDINATOR)
    bad = "'12'" if backend == "sqlite" else "-1"  # not 78 digits / negative
    with pytest.raises(IntegrityError):
        execute(
            url,
            "INSERT INTO ledger_accounts (kind, tenant, owner, asset, normal, balance, height)"
            f" VALUES ('wallet', 't', 'o', 'BTC', 'debit', {bad}, 0)",
        )
    good = f"'{7:078d}'" if backend == "sqlite" else "7"
    execute(
        url,
        "INSERT INTO ledger_accounts (kind, tenant, owner, asset, normal, balance, height)"
        f" VALUES ('wallet', 't', 'o', 'BTC', 'debit', {good}, 0)",
    )


def test_offline_sql_per_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    assert migrations_main(["sql", "--role", "coordinator", "--dialect", "postgresql"]) == 0
    pg = capsys.readouterr().out
    assert "ck_ledger_leg_amount_pg" in pg and "GLOB" not in pg and "NUMERIC(78, 0)" in pg
    assert migrations_main(["sql", "--role", "coordinator", "--dialect", "sqlite"]) == 0
    lite = capsys.readouterr().out
    assert "ck_ledger_leg_amount_sqlite" in lite and "ck_ledger_leg_amount_pg" not in lite


# -- up and down ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_downgrade_base_and_upgrade_head_round_trip(role: Role, new_url: NewUrl) -> None:
    url = new_url()
    runner.upgrade(url, role)
    assert runner.downgrade(url, role, "base") == ()
    assert tables(url) == {"alembic_version"}
    assert runner.upgrade(url, role) == (runner.head(role),)
    assert differences(url, role) == []


@pytest.mark.parametrize("role", ROLES)
def test_each_revision_goes_down_and_up_again(role: Role, new_url: NewUrl) -> None:
    """The stairway: every revision's downgrade undoes its upgrade, on top of the
    revisions before it."""
    url = new_url()
    steps = list(reversed(list(runner.script(role).walk_revisions())))
    for step in steps:
        assert runner.upgrade(url, role, step.revision) == (step.revision,)
        down = step.down_revision
        assert isinstance(down, str | None)
        runner.downgrade(url, role, down or "base")
        runner.upgrade(url, role, step.revision)
    assert differences(url, role) == []


@pytest.mark.parametrize("role", ROLES)
def test_a_store_upgrades_an_older_database(role: Role, new_url: NewUrl) -> None:
    url = new_url()
    runner.upgrade(url, role)
    runner.downgrade(url, role, "base")  # the oldest state a database can be in
    store = TransactionalStore(url, role)
    store.engine.dispose()
    assert runner.revisions(url) == (runner.head(role),)
    assert differences(url, role) == []


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TransactionalStore(f"sqlite:///{tmp_path / 'x.db'}", "ledger")  # type: ignore[arg-type]


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_a_newer_revision_is_refused(role: Role, new_url: NewUrl) -> None:
    url = new_url()
    runner.upgrade(url, role)
    set_revision(url, "z9999")  # what a later release would have recorded
    with pytest.raises(SchemaError) as refused:
        runner.upgrade(url, role)
    assert refused.value.code == "SCHEMA_TOO_NEW"
    assert "z9999" in refused.value.message
    with pytest.raises(SchemaError) as by_store:
        TransactionalStore(url, role)
    assert by_store.value.code == "SCHEMA_TOO_NEW"
    assert runner.revisions(url) == ("z9999",)  # nothing was touched
    assert differences(url, role) == []


def test_a_database_of_the_other_role_is_refused(new_url: NewUrl) -> None:
    url = new_url()
    runner.upgrade(url, Role.COORDINATOR)
    with pytest.raises(SchemaError) as refused:
        runner.upgrade(url, Role.NODE)
    assert refused.value.code == "SCHEMA_WRONG_ROLE"
    assert tables(url) == table_names(Role.COORDINATOR) | {"alembic_version"}


# -- databases made by create_all before migrations ----------------------------------------


def test_an_unversioned_database_that_matches_is_adopted(new_url: NewUrl) -> None:
    """Tables made by ``create_all`` (here: without the policy tables, as before they
    existed) are kept with their rows; the missing tables are created."""
    url = new_url()
    node_base, policy_base = target_metadata(Role.NODE)
    engine = make_engine(url)
    node_base.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO key_shares (key_id, scheme, tenant, epoch, sealed_key_package,"
                " public_key_package, created_at) VALUES ('k1', 'frost', 'acme', 0, :b, :b,"
                " CURRENT_TIMESTAMP)"
            ),
            {"b": b"\x01"},
        )
    engine.dispose()
    assert runner.upgrade(url, Role.NODE) == (runner.head(Role.NODE),)
    assert set(policy_base.tables) <= tables(url)
    assert differences(url, Role.NODE) == []
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT key_id FROM key_shares")).scalar_one() == "k1"
    engine.dispose()


def test_an_unversioned_database_that_differs_is_refused(new_url: NewUrl) -> None:
    url = new_url()
    engine = make_engine(url)
    for metadata in target_metadata(Role.NODE):
        metadata.create_all(engine)
    engine.dispose()
    execute(url, "ALTER TABLE key_shares ADD COLUMN legacy INTEGER")
    with pytest.raises(SchemaError) as refused:
        runner.upgrade(url, Role.NODE)
    assert refused.value.code == "SCHEMA_UNVERSIONED"
    assert "legacy" in refused.value.message
    assert "alembic_version" not in tables(url)


def test_sqlite_dangling_references_roll_the_whole_run_back(tmp_path: Path) -> None:
    """Foreign keys are off while migrating and checked before commit: a dangling
    reference refuses the run and leaves the database as it was."""
    path = tmp_path / "legacy.db"
    node_base, policy_base = target_metadata(Role.NODE)
    engine = make_engine(f"sqlite:///{path}")
    node_base.create_all(engine)
    engine.dispose()
    raw = sqlite3.connect(path)  # foreign keys off, as in a hand-edited database
    raw.execute(
        "INSERT INTO nonces (nonce_id, key_id, commitments, state, created_at)"
        " VALUES ('n1', 'no-such-key', x'00', 'unused', '2024-01-01')"
    )
    raw.commit()
    raw.close()
    with pytest.raises(SchemaError) as refused:
        runner.upgrade(f"sqlite:///{path}", Role.NODE)
    assert refused.value.code == "SCHEMA_FOREIGN_KEYS"
    left = tables(f"sqlite:///{path}")
    assert "alembic_version" not in left and not set(policy_base.tables) & left


# -- concurrency ---------------------------------------------------------------------------


def _upgrade_together(url: str, role: str, ready: object, results: object) -> None:
    ready.wait(120)  # type: ignore[attr-defined]  # every process imported, then all at once
    try:
        results.put(("ok", runner.upgrade(url, Role(role))))  # type: ignore[attr-defined]
    except Exception as exc:  # reported to the test, which fails on it
        results.put(("error", repr(exc)))  # type: ignore[attr-defined]


@pytest.mark.parametrize("role", ROLES)
def test_concurrent_upgrades_from_processes(role: Role, new_url: NewUrl) -> None:
    """Processes migrating the same empty database at once: one creates the schema,
    the others wait for its lock and find the head already there."""
    url = new_url()
    ctx = multiprocessing.get_context("spawn")
    n = 3
    ready, results = ctx.Barrier(n + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_upgrade_together, args=(url, role.value, ready, results))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    ready.wait(120)
    outcomes = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert outcomes == [("ok", (runner.head(role),))] * n
    assert differences(url, role) == []


def test_concurrent_stores_in_threads(new_url: NewUrl) -> None:
    url = new_url()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        try:
            start.wait()
            TransactionalStore(url, "node").engine.dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert runner.revisions(url) == (runner.head(Role.NODE),)


# -- the command ---------------------------------------------------------------------------


def _data_dir(root: Path, nodes: int = 3) -> Path:
    """The parts of ``custody init`` the command reads: custody.json and the dirs."""
    (root / "coordinator").mkdir(parents=True)
    for i in range(1, nodes + 1):
        (root / f"node-{i}").mkdir()
    config = {
        "format": 1,
        "threshold": 2,
        "coordinator": {"address": "127.0.0.1:1"},
        "nodes": [
            {"id": i, "address": "127.0.0.1:1", "signing_key": "00", "encryption_key": "00"}
            for i in range(1, nodes + 1)
        ],
        "tenants": ["acme"],
    }
    (root / "custody.json").write_text(json.dumps(config))
    return root


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    return subprocess.run(
        [sys.executable, "-m", "custody.migrations", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=180,
    )


def test_command_upgrades_every_database_of_a_data_dir(tmp_path: Path) -> None:
    root = _data_dir(tmp_path / "data")
    done = _run("upgrade", "--data-dir", str(root))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"{runner.head(Role.NODE)} (head") == 3
    assert f"coordinator: {runner.head(Role.COORDINATOR)}" in done.stdout
    coordinator = f"sqlite:///{root / 'coordinator' / 'coordinator.db'}"
    assert runner.revisions(coordinator) == (runner.head(Role.COORDINATOR),)
    node2 = f"sqlite:///{root / 'node-2' / 'node.db'}"
    assert differences(node2, Role.NODE) == []

    set_revision(node2, "n9999")
    refused = _run("upgrade", "--data-dir", str(root))
    assert refused.returncode == 3
    assert "error SCHEMA_TOO_NEW" in refused.stderr
    shown = _run("current", "--url", node2, "--role", "node")
    assert shown.returncode == 0 and "n9999" in shown.stdout


def test_command_refuses_a_missing_data_dir(tmp_path: Path) -> None:
    done = _run("upgrade", "--data-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 3 and "error CONFIG_INVALID" in done.stderr
