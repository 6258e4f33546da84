"""custody/coordinator/engine.py::in_parallel, the coordinator's fan-out: every call but
the last on the pool, the last in the calling thread, every outcome as a future in the
order of the calls."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from custody.coordinator.engine import in_parallel


class Refused(Exception):
    pass


@pytest.fixture
def pool() -> ThreadPoolExecutor:
    with ThreadPoolExecutor(4) as p:
        yield p


def test_outcomes_in_the_order_of_the_calls_the_last_in_this_thread(
    pool: ThreadPoolExecutor,
) -> None:
    threads: dict[int, int] = {}

    def call(i: int) -> int:
        threads[i] = threading.get_ident()
        return i * 10

    futures = in_parallel(pool, {3: lambda: call(3), 1: lambda: call(1), 2: lambda: call(2)})
    assert list(futures) == [3, 1, 2]
    assert [f.result() for f in futures.values()] == [30, 10, 20]
    assert threads[2] == threading.get_ident()  # the last one ran here
    assert threads[3] != threading.get_ident() and threads[1] != threading.get_ident()


def test_no_calls(pool: ThreadPoolExecutor) -> None:
    assert in_parallel(pool, {}) == {}


def test_a_failing_last_call_is_delivered_by_its_future_after_the_others_started(
    pool: ThreadPoolExecutor,
) -> None:
    started = threading.Event()

    def first() -> str:
        started.set()
        return "share"

    def last() -> str:
        assert started.wait(5)  # the pool call was already submitted
        raise Refused("node 2 refused")

    futures = in_parallel(pool, {1: first, 2: last})
    assert futures[1].result() == "share"
    with pytest.raises(Refused, match="node 2 refused"):
        futures[2].result()


def test_a_failed_pool_call_is_delivered_too(pool: ThreadPoolExecutor) -> None:
    def first() -> None:
        raise Refused("node 1 is down")

    futures = in_parallel(pool, {1: first, 2: lambda: "share"})
    assert isinstance(futures[1], Future)
    with pytest.raises(Refused):
        futures[1].result()
    assert futures[2].result() == "share"
