"""Append-only, hash-chained audit log with signed checkpoints.

Every request, decision, approval, refusal, policy change and key event becomes an
:class:`AuditRecord`:

``hash_k = SHA-256(tag("audit-record") || u64(k) || i64(timestamp) || lp(kind) ||
lp(canonical JSON body) || hash_{k-1})`` with ``hash_{-1}`` = 32 zero bytes.

Periodically the coordinator signs a :class:`Checkpoint` ``(sequence, hash_sequence,
timestamp)`` with its Ed25519 key. :func:`verify_chain` recomputes everything and names
the first bad index and the kind of tampering. What it can and cannot see: an edit that
leaves a record's stored hash stale is an ``edit`` at that record; a removed, added or
moved record breaks the sequence numbers and links (``deletion``/``insertion``/
``reordering``); a rewriter who recomputes every later hash is caught by the next
checkpoint (``checkpoint_mismatch``); a checkpoint beyond the end means records were cut
off (``deletion``). Records after the last checkpoint are protected only by the hash
chain until the next checkpoint, so checkpoints should be frequent and also published.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policy._codec import ZERO_HASH, ed25519_ok, hash_tagged, i64, lps, tag, u64
from policy.errors import AuditFormatError, PolicyError, ReasonCode


class AuditKind(StrEnum):
    REQUEST = "request"
    DECISION = "decision"
    APPROVAL = "approval"
    REFUSAL = "refusal"
    SIGNATURE = "signature"
    POLICY_CHANGE = "policy_change"
    KEY_EVENT = "key_event"


_KINDS = frozenset(k.value for k in AuditKind)
_I63 = 1 << 63


class TamperKind(StrEnum):
    EDIT = "edit"
    DELETION = "deletion"
    INSERTION = "insertion"
    REORDERING = "reordering"
    BAD_CHECKPOINT = "bad_checkpoint"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"


class AuditTamperError(PolicyError):
    """The log does not verify; ``index`` is the first record that cannot be trusted."""

    def __init__(self, kind: TamperKind, index: int, detail: str) -> None:
        self.kind = kind
        self.index = index
        super().__init__(ReasonCode.AUDIT_TAMPERED, f"{kind} at record {index}: {detail}")


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("nested too deeply")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError("object keys must be strings")
            _check_json(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, depth + 1)
    elif isinstance(value, float):
        raise ValueError("floats are not allowed (use integers or decimal strings)")
    elif not (value is None or isinstance(value, str | int | bool)):
        raise ValueError(f"not a JSON value: {type(value).__name__}")


def canonical_json(body: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, UTF-8 as is; integers only, so every party serializes a
    body to the same bytes."""
    _check_json(dict(body))
    return json.dumps(dict(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(sequence: int, timestamp: int, kind: str, body: str, prev_hash: bytes) -> bytes:
    return hash_tagged(
        "audit-record", u64(sequence), i64(timestamp), lps(kind), lps(body), prev_hash
    )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    sequence: int
    timestamp: int
    kind: str
    body: str  # canonical JSON text
    prev_hash: bytes
    hash: bytes

    def computed_hash(self) -> bytes:
        return record_hash(self.sequence, self.timestamp, self.kind, self.body, self.prev_hash)


def checkpoint_message(sequence: int, head_hash: bytes, timestamp: int) -> bytes:
    return tag("audit-checkpoint") + u64(sequence) + head_hash + i64(timestamp)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The coordinator's signed statement that record ``sequence`` has hash ``head_hash``."""

    sequence: int
    head_hash: bytes
    timestamp: int
    signature: bytes = field(repr=False)

    def verify(self, key: Ed25519PublicKey) -> bool:
        return ed25519_ok(
            key, self.signature, checkpoint_message(self.sequence, self.head_hash, self.timestamp)
        )


class AuditLog:
    """An in-memory append-only log (the persistent store lives in ``custody/``)."""

    __slots__ = ("_checkpoints", "_records")

    def __init__(self) -> None:
        self._records: list[AuditRecord] = []
        self._checkpoints: list[Checkpoint] = []

    @property
    def records(self) -> tuple[AuditRecord, ...]:
        return tuple(self._records)

    @property
    def checkpoints(self) -> tuple[Checkpoint, ...]:
        return tuple(self._checkpoints)

    def append(self, kind: AuditKind, body: Mapping[str, Any], timestamp: int) -> AuditRecord:
        seq = len(self._records)
        prev = self._records[-1].hash if self._records else ZERO_HASH
        text = canonical_json(body)
        rec = AuditRecord(
            seq, timestamp, kind.value, text, prev, record_hash(seq, timestamp, kind, text, prev)
        )
        self._records.append(rec)
        return rec

    def checkpoint(self, key: Ed25519PrivateKey, timestamp: int) -> Checkpoint:
        if not self._records:
            raise ValueError("nothing to checkpoint")
        last = self._records[-1]
        cp = Checkpoint(
            last.sequence,
            last.hash,
            timestamp,
            key.sign(checkpoint_message(last.sequence, last.hash, timestamp)),
        )
        self._checkpoints.append(cp)
        return cp


def _locate_chain_fault(records: Sequence[AuditRecord]) -> tuple[TamperKind, int, str] | None:
    seqs = [r.sequence for r in records]
    position = {r.hash: k for k, r in enumerate(records)}
    n = len(records)
    for i, r in enumerate(records):
        if r.computed_hash() != r.hash:
            return TamperKind.EDIT, i, "content does not match its hash"
        prev = records[i - 1].hash if i else ZERO_HASH
        if r.sequence != i:
            if position.get(r.prev_hash, -1) > i:
                return TamperKind.REORDERING, i, f"record {r.sequence} precedes its predecessor"
            if r.sequence < i:  # a number already used: one of the two copies is extra
                linked = i + 1 < n and records[i + 1].prev_hash == r.hash
                return (
                    TamperKind.INSERTION,
                    (seqs.index(r.sequence) if linked else i),
                    (f"sequence {r.sequence} occurs twice"),
                )
            if i in seqs[i + 1 :]:
                return TamperKind.INSERTION, i, f"record {i} displaced by a foreign record"
            return TamperKind.DELETION, i, f"records {i}..{r.sequence - 1} missing"
        if r.prev_hash != prev:
            if i + 1 < n and records[i + 1].sequence == r.sequence:
                return TamperKind.INSERTION, i, "record does not link to its predecessor"
            return TamperKind.EDIT, max(i - 1, 0), "link to the previous record broken"
    return None


def verify_chain(
    records: Sequence[AuditRecord], checkpoints: Iterable[Checkpoint], key: Ed25519PublicKey
) -> None:
    """Return ``None`` if the log verifies; raise :class:`AuditTamperError` otherwise."""
    fault = _locate_chain_fault(records)
    if fault is not None:
        raise AuditTamperError(*fault)
    trusted_until = -1
    for cp in sorted(checkpoints, key=lambda c: (c.sequence, c.timestamp)):
        if not cp.verify(key):
            raise AuditTamperError(
                TamperKind.BAD_CHECKPOINT, cp.sequence, "checkpoint signature invalid"
            )
        if cp.sequence >= len(records):
            raise AuditTamperError(
                TamperKind.DELETION, len(records), f"checkpoint at {cp.sequence} beyond the end"
            )
        if records[cp.sequence].hash != cp.head_hash:
            raise AuditTamperError(
                TamperKind.CHECKPOINT_MISMATCH,
                trusted_until + 1,
                f"records up to {cp.sequence} differ from the checkpointed log",
            )
        trusted_until = cp.sequence


# --------------------------------------------------------------------------- JSON lines


def export_jsonl(records: Iterable[AuditRecord], checkpoints: Iterable[Checkpoint]) -> str:
    """One JSON object per line: records in order, then checkpoints."""
    lines = [
        json.dumps(
            {
                "type": "record",
                "sequence": r.sequence,
                "timestamp": r.timestamp,
                "kind": r.kind,
                "body": json.loads(r.body),
                "prev_hash": r.prev_hash.hex(),
                "hash": r.hash.hex(),
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        for r in records
    ]
    lines.extend(
        json.dumps(
            {
                "type": "checkpoint",
                "sequence": c.sequence,
                "head_hash": c.head_hash.hex(),
                "timestamp": c.timestamp,
                "signature": c.signature.hex(),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        for c in checkpoints
    )
    return "".join(line + "\n" for line in lines)


def _field(obj: dict[str, Any], name: str, typ: type, line: int) -> Any:
    value = obj.get(name)
    if not isinstance(value, typ) or isinstance(value, bool) != (typ is bool):
        raise AuditFormatError(line, f"{name}: expected {typ.__name__}")
    lowest = 0 if name == "sequence" else -_I63
    if isinstance(value, int) and not lowest <= value < _I63:
        raise AuditFormatError(line, f"{name}: out of range")
    return value


def _hex(obj: dict[str, Any], name: str, size: int, line: int) -> bytes:
    text = _field(obj, name, str, line)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise AuditFormatError(line, f"{name}: not hex") from None
    if len(raw) != size or raw.hex() != text:
        raise AuditFormatError(line, f"{name}: expected {size} bytes in lower-case hex")
    return raw


def import_jsonl(text: str) -> tuple[tuple[AuditRecord, ...], tuple[Checkpoint, ...]]:
    """Parse :func:`export_jsonl` output strictly. Parsing does not verify: run
    :func:`verify_chain` on the result."""
    records: list[AuditRecord] = []
    checkpoints: list[Checkpoint] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise AuditFormatError(n, f"not JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise AuditFormatError(n, "expected an object")
        kind = obj.get("type")
        if kind == "record":
            if set(obj) != {"type", "sequence", "timestamp", "kind", "body", "prev_hash", "hash"}:
                raise AuditFormatError(n, "record fields")
            body = _field(obj, "body", dict, n)
            try:
                body_text = canonical_json(body)
            except ValueError as e:
                raise AuditFormatError(n, f"body: {e}") from None
            rkind = _field(obj, "kind", str, n)
            if rkind not in _KINDS:
                raise AuditFormatError(n, f"kind: unknown {rkind!r}")
            records.append(
                AuditRecord(
                    _field(obj, "sequence", int, n),
                    _field(obj, "timestamp", int, n),
                    rkind,
                    body_text,
                    _hex(obj, "prev_hash", 32, n),
                    _hex(obj, "hash", 32, n),
                )
            )
        elif kind == "checkpoint":
            if set(obj) != {"type", "sequence", "head_hash", "timestamp", "signature"}:
                raise AuditFormatError(n, "checkpoint fields")
            checkpoints.append(
                Checkpoint(
                    _field(obj, "sequence", int, n),
                    _hex(obj, "head_hash", 32, n),
                    _field(obj, "timestamp", int, n),
                    _hex(obj, "signature", 64, n),
                )
            )
        else:
            raise AuditFormatError(n, "type: expected record or checkpoint")
    return tuple(records), tuple(checkpoints)
