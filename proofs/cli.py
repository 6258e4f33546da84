"""``custody-por``: verify a customer's proof, audit a snapshot, or build a dry-run snapshot.

``verify`` and ``audit`` use only :mod:`proofs.verifier` (hashlib, json, coincurve,
PyNaCl); ``build`` and ``keygen`` import the prover side lazily so that the
verifier's dependencies stay minimal.

Exit codes: 0 success; 1 verification failed (the files do not prove the claim);
2 malformed input, I/O or usage error. On failure one line
``FAIL <REASON_CODE>: <detail>`` goes to stderr (or a JSON object to stdout with
``--json``); reason codes are listed in ``docs/por-format.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from proofs import verifier
from proofs.errors import PorError, PorVerificationError, ReasonCode


def _hex_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected 64 hex characters") from exc
    if len(key) != 32:
        raise argparse.ArgumentTypeError("expected a 32-byte Ed25519 public key")
    return key


def _expectation(text: str) -> tuple[str, int]:
    asset, sep, amount = text.partition("=")
    if not sep or not amount.isascii() or not amount.isdigit() or len(amount) > 80:
        raise argparse.ArgumentTypeError("expected ASSET=AMOUNT (decimal digits)")
    return asset, int(amount)


def _unit(text: str) -> tuple[str, int]:
    asset, sep, exponent = text.partition("=")
    if not sep or not exponent.isascii() or not exponent.isdigit() or int(exponent) > 77:
        raise argparse.ArgumentTypeError("expected ASSET=EXPONENT with EXPONENT in 0..77")
    return asset, int(exponent)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="custody-por", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verify", help="check one customer's inclusion proof")
    v.add_argument("--snapshot", required=True)
    v.add_argument("--proof", required=True)
    v.add_argument("--service-key", type=_hex_key, help="pinned service public key (hex)")
    v.add_argument("--customer-id", help="fail unless the proof is for this customer")
    v.add_argument(
        "--expect",
        type=_expectation,
        action="append",
        default=[],
        metavar="ASSET=AMOUNT",
        help="fail unless the proof shows this balance (in the proof's PoR units)",
    )
    v.add_argument(
        "--expect-minor",
        type=_expectation,
        action="append",
        default=[],
        metavar="ASSET=AMOUNT",
        help="fail unless the proof shows this balance of your statement, given in the"
        " asset's minor unit (satoshi, wei), rounded up to the snapshot's unit",
    )
    v.add_argument("--json", action="store_true")

    a = sub.add_parser("audit", help="check signatures, proof of control and solvency")
    a.add_argument("--snapshot", required=True)
    a.add_argument(
        "--assets",
        action="append",
        default=None,
        help="assets to check solvency for (comma-separated or repeated)",
    )
    a.add_argument("--service-key", type=_hex_key, help="pinned service public key (hex)")
    a.add_argument("--json", action="store_true")

    b = sub.add_parser("build", help="dry run: build a signed snapshot and proofs from a CSV")
    b.add_argument(
        "--liabilities", required=True, help="CSV customer_id,asset,amount (minor units)"
    )
    b.add_argument(
        "--unit",
        type=_unit,
        action="append",
        default=[],
        metavar="ASSET=EXPONENT",
        help="PoR unit of ASSET: 10^EXPONENT minor units (default 0); repeatable",
    )
    b.add_argument("--out", required=True, help="output directory (must not exist)")
    b.add_argument("--service-key", required=True, help="file with the Ed25519 seed in hex")
    b.add_argument("--custody-keys", help="JSON list of dry-run custody keys")
    b.add_argument("--snapshot-id", required=True)
    b.add_argument("--cutoff", required=True, help="YYYY-MM-DDTHH:MM:SSZ")
    b.add_argument("--layout", choices=("files", "jsonl", "bin"), default="files")
    b.add_argument("--json", action="store_true")

    k = sub.add_parser("keygen", help="write a new Ed25519 service key seed (hex) to a file")
    k.add_argument("--out", required=True)
    k.add_argument("--json", action="store_true")
    return p


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "verify":
        report = verifier.verify_customer(
            verifier.load_json(args.snapshot),
            verifier.load_json(args.proof),
            trusted_service_key=args.service_key,
            customer_id=args.customer_id,
            expected_balances=dict(args.expect),
            expected_minor_balances=dict(args.expect_minor),
        )
        return report.to_json()
    if args.command == "audit":
        assets = None
        if args.assets is not None:
            assets = [x for item in args.assets for x in item.split(",") if x]
        return verifier.audit(
            verifier.load_json(args.snapshot), assets=assets, trusted_service_key=args.service_key
        ).to_json()
    if args.command == "build":
        return _build(args)
    return _keygen(args.out)


def _build(args: argparse.Namespace) -> dict[str, Any]:
    import datetime

    from proofs import build

    built = build.build_snapshot(
        build.Liabilities.from_csv(args.liabilities, dict(args.unit)),
        snapshot_id=args.snapshot_id,
        cutoff=args.cutoff,
        created_at=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        service=build.ServiceSigner.from_file(args.service_key),
        custody=build.load_custody_file(args.custody_keys) if args.custody_keys else (),
    )
    out = build.write_outputs(built, args.out, layout=args.layout)
    return {
        "ok": True,
        "check": "build",
        "out": str(out),
        "snapshot_id": built.snapshot.snapshot_id,
        "root_hash": built.snapshot.root_hash.hex(),
        "leaf_count": built.snapshot.leaf_count,
        "service_public_key": built.snapshot.service_public_key.hex(),
    }


def _keygen(path: str) -> dict[str, Any]:
    import os

    import nacl.signing

    key = nacl.signing.SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise PorError(ReasonCode.IO, f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as fh:
        fh.write(bytes(key).hex() + "\n")
    return {"ok": True, "check": "keygen", "public_key": bytes(key.verify_key).hex()}


def _human(result: dict[str, Any]) -> str:
    if result["check"] == "verify":
        exps = result["unit_exponents"]
        bal = ", ".join(f"{a}={v}{_unit_note(exps[a])}" for a, v in result["balances"].items())
        return f"OK customer {result['customer_id']} included in {result['snapshot_id']}: {bal}"
    if result["check"] == "audit":
        lines = [f"OK snapshot {result['snapshot_id']} ({result['custody_keys']} custody keys)"]
        for asset, row in result["assets"].items():
            lines.append(
                f"  {asset}: reserves {row['reserves']} >= liabilities {row['liabilities']}"
                f"{_unit_note(row['unit_exponent'])}"
            )
        return "\n".join(lines)
    return "OK " + " ".join(f"{k}={v}" for k, v in result.items() if k not in ("ok", "check"))


def _unit_note(exponent: int) -> str:
    return f" (x 10^{exponent} minor units)" if exponent else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = _run(args)
    except PorError as exc:
        if args.json:
            print(json.dumps({"ok": False, "code": exc.code.value, "detail": exc.detail}))
        else:
            print(f"FAIL {exc.code.value}: {exc.detail}", file=sys.stderr)
        return 1 if isinstance(exc, PorVerificationError) else 2
    if not result.get("service_key_pinned", True) and not args.json:
        print("warning: service key not pinned (--service-key); integrity only", file=sys.stderr)
    print(json.dumps(result) if args.json else _human(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
