"""A real cluster for the module (``tests/service/conftest.py``: 3 node processes and the
coordinator over mTLS, SQLite files or fresh PostgreSQL databases when
``CUSTODY_TEST_POSTGRES`` is set), with the payments tables in the coordinator's
database, as ``custody payment`` uses them."""

from __future__ import annotations

from tests.service.conftest import RunningCluster, acme, running  # noqa: F401

__all__ = ["RunningCluster"]
