"""Audit log: every kind of tampering is detected, with the first bad index and its kind."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.audit import (
    AuditKind,
    AuditLog,
    AuditRecord,
    AuditTamperError,
    Checkpoint,
    TamperKind,
    canonical_json,
    export_jsonl,
    import_jsonl,
    record_hash,
    verify_chain,
)
from policy.errors import AuditFormatError, ReasonCode
from tests.policy.helpers import T0, key

COORD = key("coordinator")
PUB = COORD.public_key()


def make_log(n: int = 10, every: int = 4) -> AuditLog:
    log = AuditLog()
    kinds = list(AuditKind)
    for i in range(n):
        log.append(
            kinds[i % len(kinds)], {"i": i, "request_id": f"r-{i}", "amount": str(i * 10)}, T0 + i
        )
        if (i + 1) % every == 0:
            log.checkpoint(COORD, T0 + i)
    return log


def tampered(records, checkpoints=None, log: AuditLog | None = None):
    with pytest.raises(AuditTamperError) as err:
        verify_chain(
            records,
            checkpoints if checkpoints is not None else (log or make_log()).checkpoints,
            PUB,
        )
    assert err.value.code is ReasonCode.AUDIT_TAMPERED
    return err.value.kind, err.value.index


def rehash(r: AuditRecord, **kw) -> AuditRecord:
    r = dataclasses.replace(r, **kw)
    return dataclasses.replace(
        r, hash=record_hash(r.sequence, r.timestamp, r.kind, r.body, r.prev_hash)
    )


def rechain(records: list[AuditRecord]) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    for i, r in enumerate(records):
        out.append(rehash(r, sequence=i, prev_hash=out[-1].hash if out else bytes(32)))
    return out


def test_intact_log_verifies() -> None:
    log = make_log()
    verify_chain(log.records, log.checkpoints, PUB)
    verify_chain([], [], PUB)


def test_edit() -> None:
    recs = list(make_log().records)
    recs[5] = dataclasses.replace(recs[5], body=recs[5].body.replace('"50"', '"5000"'))
    assert tampered(recs) == (TamperKind.EDIT, 5)
    recs = list(make_log().records)
    recs[3] = dataclasses.replace(recs[3], timestamp=recs[3].timestamp + 1)
    assert tampered(recs) == (TamperKind.EDIT, 3)


def test_edit_with_recomputed_hash_breaks_the_next_link() -> None:
    recs = list(make_log().records)
    recs[5] = rehash(recs[5], body='{"i":5,"amount":"0"}')
    assert tampered(recs) == (TamperKind.EDIT, 5)


def test_rewrite_of_everything_after_is_caught_by_the_checkpoint() -> None:
    log = make_log()
    recs = list(log.records)
    recs[5] = dataclasses.replace(recs[5], body='{"i":5}')
    recs = rechain(recs)
    # checkpoints at 3 and 7: 0..3 still trusted, the fault lies in 4..7
    assert tampered(recs, log=log) == (TamperKind.CHECKPOINT_MISMATCH, 4)


def test_deletion() -> None:
    recs = list(make_log().records)
    del recs[4]
    assert tampered(recs) == (TamperKind.DELETION, 4)
    recs = list(make_log().records)
    del recs[0]
    assert tampered(recs) == (TamperKind.DELETION, 0)
    # the tail cut off: the last checkpoint (at 7) points beyond the end
    recs = list(make_log().records)[:6]
    assert tampered(recs) == (TamperKind.DELETION, 6)


def test_insertion() -> None:
    log = make_log()
    recs = list(log.records)
    fake = rehash(recs[4], body='{"fake":true}', sequence=4, prev_hash=recs[3].hash)
    assert tampered([*recs[:4], fake, *recs[4:]]) == (TamperKind.INSERTION, 4)
    unlinked = rehash(recs[4], body='{"fake":true}', prev_hash=bytes(32))
    assert tampered([*recs[:4], unlinked, *recs[4:]]) == (TamperKind.INSERTION, 4)
    fresh_number = rehash(recs[4], body='{"fake":true}', sequence=99)
    assert tampered([*recs[:4], fresh_number, *recs[4:]]) == (TamperKind.INSERTION, 4)
    dup_at_end = rehash(recs[-1], body='{"fake":true}')
    assert tampered([*recs, dup_at_end]) == (TamperKind.INSERTION, len(recs))


def test_reordering() -> None:
    recs = list(make_log().records)
    recs[2], recs[3] = recs[3], recs[2]
    assert tampered(recs) == (TamperKind.REORDERING, 2)
    recs = list(make_log().records)
    recs.append(recs.pop(1))
    assert tampered(recs) == (TamperKind.REORDERING, 1)


def test_bad_checkpoint() -> None:
    log = make_log()
    cps = list(log.checkpoints)
    cps[0] = dataclasses.replace(cps[0], timestamp=cps[0].timestamp + 1)
    assert tampered(log.records, cps) == (TamperKind.BAD_CHECKPOINT, cps[0].sequence)
    forged = Checkpoint(9, log.records[9].hash, T0, key("mallory").sign(b"x"))
    assert tampered(log.records, [*log.checkpoints, forged]) == (TamperKind.BAD_CHECKPOINT, 9)


def test_jsonl_round_trip_and_strictness() -> None:
    log = make_log()
    text = export_jsonl(log.records, log.checkpoints)
    assert all(json.loads(line)["type"] in ("record", "checkpoint") for line in text.splitlines())
    recs, cps = import_jsonl(text)
    assert recs == log.records and cps == log.checkpoints
    verify_chain(recs, cps, PUB)
    # an edit in the exported file is detected after import
    lines = text.splitlines()
    lines[2] = lines[2].replace('"amount":"20"', '"amount":"21"')
    recs2, cps2 = import_jsonl("\n".join(lines))
    with pytest.raises(AuditTamperError) as err:
        verify_chain(recs2, cps2, PUB)
    assert (err.value.kind, err.value.index) == (TamperKind.EDIT, 2)
    for bad in ('{"type":"record"}', "[1]", "{", '{"type":"other"}'):
        with pytest.raises(AuditFormatError):
            import_jsonl(bad)
    with pytest.raises(AuditFormatError):
        import_jsonl(lines[0].replace('"sequence":0', '"sequence":-1'))
    with pytest.raises(AuditFormatError):
        import_jsonl(lines[0].replace('"body":{', '"body":{"x":1.5,'))


def test_canonical_json_rejects_floats_and_sorts() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": 0.1})


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(2, 12),
    op=st.sampled_from(["edit", "delete", "insert", "swap", "rechain-edit"]),
    data=st.data(),
)
def test_any_tampering_is_detected(n: int, op: str, data) -> None:
    log = make_log(n, every=1)  # a checkpoint after every record
    recs = list(log.records)
    i = data.draw(st.integers(0, n - 1))
    if op == "edit":
        recs[i] = dataclasses.replace(recs[i], body='{"x":1}')
    elif op == "delete":
        del recs[i]
    elif op == "insert":
        recs.insert(i, rehash(recs[i], body='{"fake":1}'))
    elif op == "swap":
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
        recs[i], recs[j] = recs[j], recs[i]
    else:
        recs[i] = dataclasses.replace(recs[i], body='{"x":1}')
        recs = rechain(recs)
    with pytest.raises(AuditTamperError) as err:
        verify_chain(recs, log.checkpoints, PUB)
    assert err.value.index <= i + 1
