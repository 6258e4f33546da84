"""Command groups for officers, approvers and auditors, mounted by ``custody/cli.py``::

    app.add_typer(policy_app, name="policy")
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(audit_app, name="audit")

Every command talks to GovernanceService over mTLS with the coordinator's client
certificate from ``--data-dir`` (``--tenant`` uses a tenant's) and signs locally with the
key file of ``--officer`` / ``--approver`` (default ``<data-dir>/governance/...``; see
``docs/governance.md``). Errors print ``error CODE: message`` and exit non-zero.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
import typer
from rich.console import Console
from rich.table import Table

from custody._pb.custody.governance.v1 import governance_pb2 as pb
from custody.config import ConfigError
from custody.governance.client import ClientCheckFailed, GovernanceClient
from custody.governance.genesis import (
    approver_key_path,
    governance_root,
    initiator_id,
    initiator_key_path,
    officer_key_path,
)
from custody.governance.keys import KeyFileError, load_private_key, load_public_key
from custody.governance.service import PROPOSAL_STATE_NAMES, PROPOSAL_STATES, REQUEST_STATES
from custody.governance.wiring import AUDIT_KEY_FILE
from policy.audit import AuditTamperError, import_jsonl, verify_chain
from policy.errors import AuditFormatError
from policy.request import ApprovalDecision

T = TypeVar("T")
policy_app = typer.Typer(no_args_is_help=True, help="Propose, approve and inspect signing policy.")
approvals_app = typer.Typer(no_args_is_help=True, help="Approve or reject pending requests.")
audit_app = typer.Typer(no_args_is_help=True, help="Verify and export the audit log.")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DATA_DIR = typer.Option(Path("./custody-data"), "--data-dir", "-d", help="cluster data directory")
JSON = typer.Option(False, "--json", help="print JSON")
OFFICER = typer.Option(..., "--officer", help="officer id, e.g. officer-1")
APPROVER = typer.Option(..., "--approver", help="approver id, e.g. acme-approver-1")
KEY_FILE = typer.Option(None, "--key-file", help="Ed25519 key file (default: from the data dir)")
TENANT_CERT = typer.Option(None, "--tenant", help="connect with this tenant's certificate")
POLICY_FILE = typer.Argument(..., exists=True, dir_okay=False, help="policy document (JSON)")
OUTPUT = typer.Option(None, "--output", "-o", help="file (default: stdout)")
EXPORT_FILE = typer.Option(None, "--file", help="verify an export instead of the live log")
PUBLIC_KEY = typer.Option(
    None, "--public-key", help="audit public key (default: <data-dir>/coordinator/audit.pub)"
)
_STATE_NAMES = {v: k for k, v in REQUEST_STATES.items()}


def fail(code: str, message: str, exit_code: int = 1) -> NoReturn:
    err_console.print(f"[red]error[/red] {code}: {message}", highlight=False)
    raise typer.Exit(exit_code)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as exc:
        from signer_nodes.grpc_errors import reason_of

        code = reason_of(exc) or exc.code().name
        fail(code, exc.details() or "request failed")
    except (ClientCheckFailed, AuditFormatError) as exc:
        fail(str(exc.code), str(exc).split(": ", 1)[-1])
    except (ConfigError, KeyFileError) as exc:
        fail(exc.code, str(exc), 2)


def _call(data_dir: Path, fn: Callable[[GovernanceClient], T], tenant: str | None = None) -> T:
    with _errors(), GovernanceClient.from_data_dir(data_dir, tenant) as client:
        return fn(client)
    raise AssertionError("unreachable")


def _key(
    data_dir: Path, key_file: Path | None, default: Callable[[Path, str], Path], who: str
) -> Any:
    with _errors():
        return load_private_key(key_file or default(governance_root(data_dir.resolve()), who))


def _print_proposal(p: pb.Proposal, as_json: bool) -> None:
    out = {
        "proposal": p.version_id.hex(),
        "number": p.number,
        "state": PROPOSAL_STATE_NAMES.get(p.state, "UNKNOWN"),
        "approvals": [s.officer for s in p.approvals],
        "rejections": [s.officer for s in p.rejections],
        "quorum": p.quorum,
        "proposer": p.proposer,
        "document_hash": p.document_hash.hex(),
    }
    if p.rollback_of:
        out["rollback_of"] = p.rollback_of
    if p.push_error:
        out["push_error"] = p.push_error
    console.print_json(json.dumps(out)) if as_json else console.print(out, highlight=False)


# --------------------------------------------------------------------------- policy


@policy_app.command("propose")
def propose(
    file: Path = POLICY_FILE,
    data_dir: Path = DATA_DIR,
    officer: str = OFFICER,
    key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Propose FILE as the next policy version (your signature is the first approval)."""
    key = _key(data_dir, key_file, officer_key_path, officer)
    document = file.read_bytes()
    _print_proposal(_call(data_dir, lambda c: c.propose(document, officer, key)), as_json)


@policy_app.command("approve")
def approve(
    proposal: str = typer.Argument(..., help="proposal id (hex, at least 8 characters)"),
    data_dir: Path = DATA_DIR,
    officer: str = OFFICER,
    key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Sign a proposal; at quorum it becomes the active version on every node."""
    key = _key(data_dir, key_file, officer_key_path, officer)
    _print_proposal(_call(data_dir, lambda c: c.approve_policy(proposal, officer, key)), as_json)


@policy_app.command("reject")
def reject(
    proposal: str = typer.Argument(..., help="proposal id (hex, at least 8 characters)"),
    data_dir: Path = DATA_DIR,
    officer: str = OFFICER,
    key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Reject a proposal (it closes once the quorum is out of reach)."""
    key = _key(data_dir, key_file, officer_key_path, officer)
    _print_proposal(_call(data_dir, lambda c: c.reject_policy(proposal, officer, key)), as_json)


@policy_app.command("rollback")
def rollback(
    to: int = typer.Option(..., "--to", help="the old version whose document to restore"),
    data_dir: Path = DATA_DIR,
    officer: str = OFFICER,
    key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Propose a new version equal to version --to (it needs the usual quorum)."""
    key = _key(data_dir, key_file, officer_key_path, officer)
    _print_proposal(_call(data_dir, lambda c: c.rollback(to, officer, key)), as_json)


@policy_app.command("proposals")
def proposals(
    data_dir: Path = DATA_DIR,
    state: str = typer.Option(
        "all", "--state", help="open | activated | rejected | superseded | all"
    ),
    as_json: bool = JSON,
) -> None:
    """List proposals."""
    wanted = pb.PROPOSAL_STATE_UNSPECIFIED
    if state != "all":
        if state.upper() not in PROPOSAL_STATES:
            fail("INVALID_ARGUMENT", f"unknown state {state!r}", 2)
        wanted = PROPOSAL_STATES[state.upper()]
    for p in _call(data_dir, lambda c: c.proposals(wanted)):
        _print_proposal(p, as_json)


def _document(client: GovernanceClient, ref: str) -> tuple[str, bytes]:
    """A document by reference: ``active``, a version number, a file, or a proposal id."""
    if ref == "active":
        v = client.version()
        return f"version {v.number}", v.document
    if ref.isdigit():
        return f"version {ref}", client.version(int(ref)).document
    path = Path(ref)
    if path.is_file():
        return str(path), path.read_bytes()
    p = client.proposal(ref)
    return f"proposal {p.version_id.hex()[:16]}", p.document


def _normalised(document: bytes) -> list[str]:
    try:
        text = json.dumps(json.loads(document), indent=2, sort_keys=True, ensure_ascii=False)
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = document.decode("utf-8", "replace")
    return [line + "\n" for line in text.splitlines()]


@policy_app.command("show")
def show(
    ref: str = typer.Argument("active", help="active | VERSION | PROPOSAL-ID"),
    data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Print a version's (or a proposal's) document, exactly as signed."""

    def go(c: GovernanceClient) -> tuple[str, bytes, pb.PolicyVersion | None]:
        if ref == "active" or ref.isdigit():
            v = c.version(0 if ref == "active" else int(ref))
            return f"version {v.number}", v.document, v
        name, doc = _document(c, ref)
        return name, doc, None

    name, document, version = _call(data_dir, go)
    if as_json:
        out: dict[str, Any] = {"ref": name, "document": json.loads(document)}
        if version is not None:
            out |= {
                "number": version.number,
                "version_id": version.version_id.hex(),
                "document_hash": version.document_hash.hex(),
                "signers": [s.officer for s in version.signatures],
            }
        console.print_json(json.dumps(out))
        return
    err_console.print(f"# {name}", highlight=False)
    console.out(document.decode("utf-8", "replace"), end="", highlight=False)


@policy_app.command("diff")
def diff(
    old: str = typer.Argument(..., help="active | VERSION | FILE | PROPOSAL-ID"),
    new: str = typer.Argument(..., help="active | VERSION | FILE | PROPOSAL-ID"),
    data_dir: Path = DATA_DIR,
) -> None:
    """Unified diff of two documents (JSON normalised: key order does not matter)."""
    (a_name, a), (b_name, b) = _call(data_dir, lambda c: (_document(c, old), _document(c, new)))
    lines = difflib.unified_diff(_normalised(a), _normalised(b), a_name, b_name)
    console.out("".join(lines), end="", highlight=False)


@policy_app.command("history")
def history(data_dir: Path = DATA_DIR, as_json: bool = JSON) -> None:
    """The activated versions, oldest first."""
    resp = _call(data_dir, lambda c: c.versions())
    rows = [
        {
            "number": v.number,
            "version_id": v.version_id.hex(),
            "document_hash": v.document_hash.hex(),
            "signers": [s.officer for s in v.signatures],
            "proposer": v.proposer,
            "rollback_of": v.rollback_of or None,
            "activated": v.activate_time,
            "active": v.number == resp.active,
        }
        for v in resp.versions
    ]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("number", "version id", "signers", "rollback of", "activated")
    for r in rows:
        mark = " (active)" if r["active"] else ""
        table.add_row(
            f"{r['number']}{mark}",
            str(r["version_id"])[:16],
            ", ".join(r["signers"]),  # type: ignore[arg-type]
            str(r["rollback_of"] or ""),
            str(r["activated"]),
        )
    console.print(table)


# --------------------------------------------------------------------------- approvals


def _print_decision(d: pb.RequestDecision, as_json: bool) -> None:
    r = d.request
    out = {
        "tenant": r.tenant,
        "request_id": r.request_id,
        "state": _STATE_NAMES.get(d.state, "UNKNOWN"),
        "initiator": r.initiator,
        "key_id": r.key_id,
        "request_type": r.request_type,
        "chain": r.chain,
        "asset": r.asset,
        "destination": r.destination,
        "amount": r.amount,
        "request_digest": d.request_digest.hex(),
        "rule_id": d.rule_id,
        "requirement": d.requirement,
        "code": d.code,
        "approvers": list(d.approvers),
        "policy_version": d.policy_version,
    }
    console.print_json(json.dumps(out)) if as_json else console.print(out, highlight=False)


@approvals_app.command("list")
def approvals_list(
    data_dir: Path = DATA_DIR,
    tenant: str | None = TENANT_CERT,
    as_json: bool = JSON,
) -> None:
    """Requests waiting for approvals."""
    for d in _call(data_dir, lambda c: c.pending(), tenant):
        _print_decision(d, as_json)


@approvals_app.command("show")
def approvals_show(
    tenant: str = typer.Argument(...),
    request_id: str = typer.Argument(...),
    data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """What a request needs and what it has."""
    _print_decision(_call(data_dir, lambda c: c.decision(tenant, request_id)), as_json)


def _decide(
    decision: ApprovalDecision,
    tenant: str,
    request_id: str,
    data_dir: Path,
    approver: str,
    key_file: Path | None,
    expires_in: int,
    as_json: bool,
) -> None:
    if not 60 <= expires_in <= 7 * 86_400:
        fail("INVALID_ARGUMENT", "--expires-in is 60 seconds to 7 days", 2)
    key = _key(data_dir, key_file, approver_key_path, approver)
    d = _call(
        data_dir,
        lambda c: c.decide(
            tenant, request_id, approver, key, decision=decision, expires_in=expires_in
        ),
    )
    _print_decision(d, as_json)


EXPIRES = typer.Option(3600, "--expires-in", help="seconds the approval stays valid")


@approvals_app.command("approve")
def approvals_approve(
    tenant: str = typer.Argument(...),
    request_id: str = typer.Argument(...),
    data_dir: Path = DATA_DIR,
    approver: str = APPROVER,
    key_file: Path | None = KEY_FILE,
    expires_in: int = EXPIRES,
    as_json: bool = JSON,
) -> None:
    """Sign an approval of the request's digest under the active policy version."""
    _decide(
        ApprovalDecision.APPROVE,
        tenant,
        request_id,
        data_dir,
        approver,
        key_file,
        expires_in,
        as_json,
    )


@approvals_app.command("reject")
def approvals_reject(
    tenant: str = typer.Argument(...),
    request_id: str = typer.Argument(...),
    data_dir: Path = DATA_DIR,
    approver: str = APPROVER,
    key_file: Path | None = KEY_FILE,
    expires_in: int = EXPIRES,
    as_json: bool = JSON,
) -> None:
    """Sign a rejection: no node will sign the request."""
    _decide(
        ApprovalDecision.REJECT,
        tenant,
        request_id,
        data_dir,
        approver,
        key_file,
        expires_in,
        as_json,
    )


@approvals_app.command("cancel")
def approvals_cancel(
    tenant: str = typer.Argument(...),
    request_id: str = typer.Argument(...),
    data_dir: Path = DATA_DIR,
    initiator: str | None = typer.Option(
        None, "--initiator", help="the request's initiator (default: <tenant>-initiator)"
    ),
    key_file: Path | None = KEY_FILE,
    as_json: bool = JSON,
) -> None:
    """Withdraw a request waiting for approvals, signed by its initiator: final, no
    approval counts for it any more and it is never signed. Money reserved for it is
    released by whoever reserved it (``custody payment cancel`` does both)."""
    who = initiator or initiator_id(tenant)
    key = _key(data_dir, key_file, initiator_key_path, who)
    _print_decision(_call(data_dir, lambda c: c.cancel(tenant, request_id, who, key)), as_json)


# --------------------------------------------------------------------------- audit


@audit_app.command("export")
def audit_export(
    data_dir: Path = DATA_DIR,
    output: Path | None = OUTPUT,
) -> None:
    """Write the audit log as JSON lines (records, then checkpoints)."""
    text = _call(data_dir, lambda c: c.export_audit())
    if output is None:
        console.out(text, end="", highlight=False)
    else:
        output.write_text(text)
        err_console.print(f"wrote {text.count(chr(10))} lines to {output}", highlight=False)


@audit_app.command("verify")
def audit_verify(
    data_dir: Path = DATA_DIR,
    file: Path | None = EXPORT_FILE,
    public_key: Path | None = PUBLIC_KEY,
    as_json: bool = JSON,
) -> None:
    """Check every record's hash and link and every signed checkpoint; name the first
    tampered record and the kind of tampering."""
    with _errors():
        key = load_public_key(
            public_key
            or data_dir.resolve() / "coordinator" / Path(AUDIT_KEY_FILE).with_suffix(".pub")
        )
    text = file.read_text() if file is not None else _call(data_dir, lambda c: c.export_audit())
    with _errors():
        records, checkpoints = import_jsonl(text)
    try:
        verify_chain(records, checkpoints, key)
    except AuditTamperError as e:
        if as_json:
            out = {"ok": False, "code": str(e.code), "kind": str(e.kind), "index": e.index}
            console.print_json(json.dumps(out))
            raise typer.Exit(1) from None
        fail(str(e.code), str(e).split(": ", 1)[-1])
    last = max((c.sequence for c in checkpoints), default=-1)
    summary = {
        "ok": True,
        "records": len(records),
        "checkpoints": len(checkpoints),
        "last_checkpoint": last,
        "unprotected_tail": len(records) - 1 - last,
    }
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        console.print(
            f"audit log verified: {len(records)} records, {len(checkpoints)} checkpoints "
            f"(last at record {last}; {summary['unprotected_tail']} later records are "
            "protected by the hash chain until the next checkpoint)",
            highlight=False,
        )
