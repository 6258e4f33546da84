"""bench/policy.py runs and reports the figures the issue asks for."""

from __future__ import annotations

import json

from bench.policy import main, run


def test_bench_reports_median_and_p99(capsys) -> None:
    result = run(n_rules=100, history_size=500, iterations=300, seed=3)
    for name in ("mixed", "adversarial", "authorize_us"):
        assert result[name]["median_us"] > 0 and result[name]["p99_us"] >= result[name]["median_us"]
    assert main(["--rules", "20", "--history", "100", "--iterations", "100", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rules"] == 20 and "median_us" in printed["mixed"]
