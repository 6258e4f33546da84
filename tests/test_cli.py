from typer.testing import CliRunner

from custody.cli import app


def test_demo_runs_and_every_signature_verifies() -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "all signatures verified by independent libraries" in result.output
    assert "FAILED" not in result.output


def test_demo_rejects_bad_threshold_with_stable_code() -> None:
    result = CliRunner().invoke(app, ["demo", "-t", "4", "-n", "3"])
    assert result.exit_code == 2
    assert "INVALID_ARGUMENT" in result.output
