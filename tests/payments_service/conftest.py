"""A real cluster for the module (``tests/service/conftest.py``: 3 node processes and the
coordinator over mTLS, SQLite files or fresh PostgreSQL databases when
``CUSTODY_TEST_POSTGRES`` is set), with the payments tables in the coordinator's
database, as ``custody payment`` uses them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.payments_service.helpers import World, open_world
from tests.service.conftest import RunningCluster, acme, running  # noqa: F401

__all__ = ["RunningCluster"]


@pytest.fixture(scope="module")
def world(running: RunningCluster) -> Iterator[World]:  # noqa: F811
    yield from open_world(running)
