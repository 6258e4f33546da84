"""The command groups the custody CLI will mount, run as separate processes
(each with its own SoftHSM2 configuration under a fresh data dir)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hsm.conftest import softhsm_available

pytestmark = pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 not installed")
ROOT = Path(__file__).resolve().parents[2]
DRIVER = (
    "import typer; from hsm.cli import backup_app, hsm_app; app = typer.Typer(); "
    "app.add_typer(hsm_app, name='hsm'); app.add_typer(backup_app, name='backup'); app()"
)
SEED = (
    "import sys; from pathlib import Path; from hsm.softhsm import SoftHsmHome; "
    "from hsm.sealer import Sealer, RecordKind; from hsm.store import SqliteSealedStore, put_secret; "
    "d = Path(sys.argv[1]); s = Sealer.open(SoftHsmHome(d / 'hsm').config('node-2')); "
    "st = SqliteSealedStore(d / 'node-2' / 'sealed.db', 2); "
    "put_secret(s, st, RecordKind.SHARE, 'k', 0, bytes.fromhex(sys.argv[2])); "
    "put_secret(s, st, RecordKind.NONCE, 'n', 0, b'nonce-bytes')"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SOFTHSM2_CONF", None)
    return subprocess.run(
        [sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


def test_cli_init_backup_verify_restore_rotate(tmp_path: Path) -> None:
    d = str(tmp_path)
    r = run("hsm", "init", "--data-dir", d, "--nodes", "2")
    assert r.returncode == 0, r.stderr
    share = os.urandom(32)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SOFTHSM2_CONF", None)
    subprocess.run([sys.executable, "-c", SEED, d, share.hex()], check=True, env=env)
    out = str(tmp_path / "node-2.backup")
    r = run("backup", "create", out, "--data-dir", d, "--node", "2", "--cluster-id", "c1")
    assert r.returncode == 0 and "'share': 1" in r.stdout and "nonce" not in r.stdout, r.stderr
    r = run("backup", "verify", out, "--data-dir", d, "--node", "2", "--cluster-id", "c1")
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
    r = run("backup", "verify", out, "--data-dir", d, "--node", "1")
    assert r.returncode == 2 and "BACKUP_WRONG_NODE" in r.stderr
    r = run("hsm", "rotate", "--data-dir", d, "--node", "2")
    assert r.returncode == 0 and "active key v2" in r.stdout and "retired [1]" in r.stdout
    # restore into a token that does not exist: clear code, nothing written
    pins = tmp_path / "hsm" / "pins"
    (pins / "node-9.pin").write_text((pins / "node-1.pin").read_text())
    (tmp_path / "node-2" / "sealed.db").rename(tmp_path / "lost.db")
    r = run(
        "backup",
        "restore",
        out,
        "--data-dir",
        d,
        "--node",
        "2",
        "--cluster-id",
        "c1",
        "--token",
        "node-9",
    )
    assert r.returncode == 2 and "HSM_TOKEN_NOT_FOUND" in r.stderr
    assert not (tmp_path / "node-2" / "sealed.db").exists()
    r = run(
        "backup",
        "restore",
        out,
        "--data-dir",
        d,
        "--node",
        "2",
        "--cluster-id",
        "c1",
        "--token",
        "node-1",
    )
    assert r.returncode == 0, r.stderr
    from tests.hsm.scan import assert_absent

    assert_absent([tmp_path], [share])
