from pathlib import Path

from typer.testing import CliRunner

from custody.cli import app


def test_in_process_demo_runs_and_every_signature_verifies() -> None:
    result = CliRunner().invoke(app, ["demo", "--in-process"])
    assert result.exit_code == 0, result.output
    assert "all signatures verified by independent libraries" in result.output
    assert "FAILED" not in result.output


def test_init_rejects_bad_threshold_with_stable_code_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "d"
    result = CliRunner().invoke(app, ["init", "--data-dir", str(target), "-t", "4", "-n", "3"])
    assert result.exit_code == 2
    assert "CONFIG_INVALID" in result.output
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_init_refuses_an_existing_cluster(tmp_path: Path) -> None:
    target = tmp_path / "d"
    assert CliRunner().invoke(app, ["init", "--data-dir", str(target)]).exit_code == 0
    before = sorted(p.name for p in target.iterdir())
    again = CliRunner().invoke(app, ["init", "--data-dir", str(target)])
    assert again.exit_code == 2 and "already holds a cluster" in again.output
    assert sorted(p.name for p in target.iterdir()) == before


def test_commands_without_a_cluster_say_how_to_start(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["key", "list", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "custody init" in result.output
