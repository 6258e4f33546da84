"""Timing helpers shared by the protocol benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def stats(samples: list[float]) -> dict[str, float]:
    """Median, min and max in milliseconds, rounded to microseconds."""
    return {
        "median": round(statistics.median(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(elapsed milliseconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000, out
