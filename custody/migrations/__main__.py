"""``python -m custody.migrations``: run, inspect and write migrations.

    upgrade  --data-dir D                 the coordinator's and every node's database
    upgrade  --url URL --role ROLE [--revision REV]
    downgrade --url URL --role ROLE --revision REV
    current  --data-dir D | --url URL --role ROLE
    check    [--role ROLE]                head matches the models (exit 1 if not)
    revision --role ROLE -m MESSAGE       autogenerate the next revision
    sql      --role ROLE --dialect {postgresql,sqlite}   the DDL, for review

Database URLs come from the data dir's config and the environment, as the
processes themselves read them (``CUSTODY_DATABASE_URL``,
``CUSTODY_NODE_<i>_DATABASE_URL``). Refusals print ``error CODE: message`` and
exit with status 3.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alembic import command

from custody.config import ClusterConfig, ConfigError
from custody.migrations import authoring, runner
from signer_nodes.db import Role, SchemaError

EXIT_REFUSED = 3


def _targets(args: argparse.Namespace) -> list[tuple[str, Role, str]]:
    """``(label, role, url)`` of each database the command names."""
    if args.data_dir is not None:
        config = ClusterConfig.load(args.data_dir)
        out = [("coordinator", Role.COORDINATOR, config.coordinator_database_url())]
        out += [(n.name, Role.NODE, config.node_database_url(n.node_id)) for n in config.nodes]
        return out
    if args.url is None or args.role is None:
        raise SystemExit("error: give --data-dir, or --url with --role")
    return [(str(args.role), Role(args.role), args.url)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m custody.migrations")
    sub = parser.add_subparsers(dest="command", required=True)
    roles = [r.value for r in Role]
    for name in ("upgrade", "downgrade", "current"):
        p = sub.add_parser(name)
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--data-dir")
        where.add_argument("--url")
        p.add_argument("--role", choices=roles)
        if name != "current":
            p.add_argument("--revision", default="head", required=name == "downgrade")
    p = sub.add_parser("check")
    p.add_argument("--role", choices=roles, action="append")
    p = sub.add_parser("revision")
    p.add_argument("--role", choices=roles, required=True)
    p.add_argument("-m", "--message", required=True)
    p = sub.add_parser("sql")
    p.add_argument("--role", choices=roles, required=True)
    p.add_argument("--dialect", choices=["postgresql", "sqlite"], required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except SchemaError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    except ConfigError as exc:
        print(f"error {exc.code}: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def _run(args: argparse.Namespace) -> int:
    if args.command in ("upgrade", "downgrade", "current"):
        if args.command == "downgrade" and args.data_dir is not None:
            raise SystemExit("error: downgrade takes --url and --role (one database at a time)")
        for label, role, url in _targets(args):
            if args.command == "upgrade":
                reached = runner.upgrade(url, role, args.revision)
            elif args.command == "downgrade":
                reached = runner.downgrade(url, role, args.revision)
            else:
                reached = runner.revisions(url)
            at = ", ".join(reached) or "empty"
            print(f"{label}: {at} (head {runner.head(role)}) {runner.display(url)}")
        return 0
    if args.command == "check":
        failed = False
        for role in [Role(r) for r in args.role or [r.value for r in Role]]:
            changes = authoring.check(role)
            failed |= bool(changes)
            print(f"{role}: " + ("matches the models" if not changes else "differs:"))
            for change in changes:
                print(f"  {runner.describe(change)}")
        return 1 if failed else 0
    if args.command == "revision":
        path = authoring.new_revision(Role(args.role), args.message)
        print(path if path is not None else "no changes: nothing written")
        return 0
    cfg = runner.config(Role(args.role))
    cfg.attributes["dialect"] = args.dialect
    command.upgrade(cfg, "head", sql=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
