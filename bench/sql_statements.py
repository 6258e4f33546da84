"""What one short statement costs through each execution path (signer_nodes/prepared.py).

``python -m bench.sql_statements [--statements N]``: a primary-key SELECT and a
conditional UPDATE on a SQLite file (WAL) inside one open transaction, run through
an ORM session, a Core connection, and :func:`signer_nodes.prepared.run`; prints
microseconds per statement. The driver's own time is the floor all three share.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, select, update
from sqlalchemy.orm import Session

from signer_nodes.db import make_engine
from signer_nodes.prepared import run

md = MetaData()
rows = Table("rows", md, Column("row_id", String(16), primary_key=True), Column("n", Integer))
READ = select(rows.c.n).where(rows.c.row_id == bindparam("b_id"))
BUMP = update(rows).where(rows.c.row_id == bindparam("b_id")).values(n=rows.c.n + 1)


def _time(n: int, step: Callable[[str], Any]) -> float:
    start = time.perf_counter()
    for i in range(n):
        step(f"r{i % 1000}")
    return (time.perf_counter() - start) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sql_statements")
    parser.add_argument("--statements", type=int, default=20_000)
    n = parser.parse_args(argv).statements
    engine = make_engine(f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}")
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(rows.insert(), [{"row_id": f"r{i}", "n": 0} for i in range(1000)])
    with Session(engine) as s, s.begin():
        conn = s.connection()
        dbapi: Any = conn.connection.dbapi_connection
        sql = str(READ.compile(dialect=engine.dialect))
        paths: dict[str, tuple[Callable[[str], Any], Callable[[str], Any]]] = {
            "ORM session": (
                lambda k: s.execute(READ, {"b_id": k}).first(),
                lambda k: s.execute(BUMP, {"b_id": k}),
            ),
            "Core connection": (
                lambda k: conn.execute(READ, {"b_id": k}).first(),
                lambda k: conn.execute(BUMP, {"b_id": k}),
            ),
            "prepared.run": (
                lambda k: run(conn, READ, {"b_id": k}).first(),
                lambda k: run(conn, BUMP, {"b_id": k}),
            ),
        }
        driver = _time(n, lambda k: dbapi.execute(sql, (k,)).fetchone())
        print(f"{'path':<16} {'SELECT':>9} {'UPDATE':>9}  (µs per statement, {n} each)")
        for name, (read, bump) in paths.items():
            print(f"{name:<16} {_time(n, read):9.1f} {_time(n, bump):9.1f}")
        print(f"{'driver alone':<16} {driver:9.1f}")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
