"""Failure drills on a real cluster: a node killed with SIGKILL, a coordinator
restarted with accepted requests in flight, fewer than t nodes alive."""

from __future__ import annotations

import uuid

import pytest
from coincurve import PublicKeyXOnly
from sqlalchemy import select

from custody._pb.custody.v1 import custody_pb2 as pb
from custody.client import OperationFailed
from custody.coordinator.store import CoordinatorStore, PoolNonceRow, SignatureRequestRow
from policy.request import RequestType, sign_request
from signer_nodes.node.authorization import request_to_proto


@pytest.fixture(scope="module")
def key(acme):
    return acme.create_key("schnorr-bip340")


def test_node_killed_then_restarted(running, acme, key) -> None:
    running.cluster.kill("node-1")
    try:
        for i in range(3):
            msg = f"while node-1 is down {i}".encode()
            r = acme.sign(key.key_id, message=msg)
            assert 1 not in r.signers
            assert PublicKeyXOnly(key.public_key).verify(r.signature, r.signed_digest)
    finally:
        running.cluster.restart("node-1")
    # The restarted node kept its share and signs again.
    for _ in range(4):
        r = acme.sign(key.key_id, message=b"after restart")
        if 1 in r.signers:
            break
    assert PublicKeyXOnly(key.public_key).verify(r.signature, r.signed_digest)


def test_fewer_than_t_nodes_fail_with_unavailable(running, acme, key) -> None:
    running.cluster.kill("node-1")
    running.cluster.kill("node-2")
    try:
        with pytest.raises(OperationFailed) as err:
            acme.sign(key.key_id, message=b"cannot", request_id=f"u-{uuid.uuid4().hex}")
        assert err.value.code == "UNAVAILABLE"
    finally:
        running.cluster.restart("node-1")
        running.cluster.restart("node-2")


def test_coordinator_restart_resumes_accepted_requests(running, acme, key) -> None:
    """Requests the coordinator accepted (PENDING) or was signing (SIGNING, with
    pool nonces reserved) when it died are finished after restart, with fresh
    nonces: the reserved ones are retired, never offered again."""
    running.cluster.kill("coordinator")
    store = CoordinatorStore(running.config.coordinator_database_url())
    pending_id, signing_id = f"p-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex}"
    with store.transaction() as s:
        for rid, state in ((pending_id, "PENDING"), (signing_id, "SIGNING")):
            signed = acme.build_request(
                key.key_id,
                request_type=RequestType.RAW_DIGEST,
                chain="none",
                asset="none",
                payload=b"\x07" * 32,
                request_id=rid,
            )
            s.add(
                SignatureRequestRow(
                    tenant="acme",
                    request_id=rid,
                    key_id=key.key_id,
                    path="",
                    payload_kind="raw_digest",
                    payload=b"\x07" * 32,
                    signing_request=request_to_proto(signed).SerializeToString(),
                    initiator_signature=sign_request(
                        acme._initiator_key, acme.initiator, signed
                    ).signature,
                    request_digest=signed.digest(),
                    signed_digest=b"\x07" * 32,
                    state=state,
                )
            )
        reserved = (
            s.execute(
                select(PoolNonceRow)
                .where(PoolNonceRow.key_id == key.key_id, PoolNonceRow.state == "unused")
                .limit(2)
            )
            .scalars()
            .all()
        )
        for row in reserved:
            row.state, row.request_id = "reserved", f"acme/{signing_id}"
        reserved_ids = {r.nonce_id for r in reserved}
    store.engine.dispose()
    running.cluster.restart("coordinator")
    for rid in (pending_id, signing_id):
        done = acme.stub.WaitSignatureRequest(
            pb.WaitSignatureRequestRequest(request_id=rid, timeout_seconds=20)
        )
        assert done.state == pb.REQUEST_STATE_SUCCEEDED, done.error_message
        assert PublicKeyXOnly(key.public_key).verify(done.signature, b"\x07" * 32)
    store = CoordinatorStore(running.config.coordinator_database_url())
    with store.transaction() as s:
        states = {
            r.nonce_id: r.state
            for r in s.execute(
                select(PoolNonceRow).where(PoolNonceRow.nonce_id.in_(reserved_ids))
            ).scalars()
        }
    store.engine.dispose()
    assert set(states.values()) == {"used"}
