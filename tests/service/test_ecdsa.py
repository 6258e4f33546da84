"""Threshold ECDSA (DKLs23) through the running service: separate node
processes, presignature pools, single use enforced by each node's database."""

from __future__ import annotations

import hashlib
import uuid

import grpc
import pytest
from coincurve import PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from py_ecc.secp256k1 import secp256k1
from sqlalchemy import select

from custody._pb.custody.node.v1 import node_pb2
from custody._pb.custody.v1 import custody_pb2 as pb
from custody.coordinator.store import CoordinatorStore, PresignatureRow, SignatureRequestRow
from policy.payloads.messages import message_digest
from policy.request import RequestType, sign_request
from signer_nodes.grpc_errors import reason_of
from signer_nodes.node.authorization import request_to_proto
from signer_nodes.node.store import ExcludedPeerRow, NodeStore, NonceRow
from tests.service.lying import authorizations, node_stub, release_leases

N = secp256k1.N


def verify_ecdsa(public_key: bytes, digest: bytes, signature: bytes, recovery_id: int) -> None:
    """coincurve (libsecp256k1, which also refuses high s) and py-ecc recovery."""
    assert len(signature) == 64 and recovery_id in (0, 1)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    assert 0 < s <= N // 2
    der = cdata_to_der(deserialize_compact(signature))
    assert PublicKey(public_key).verify(der, digest, hasher=None)
    x, y = secp256k1.ecdsa_raw_recover(digest, (27 + recovery_id, r, s))
    recovered = PublicKey.from_point(x, y).format(compressed=True)
    assert recovered == public_key


@pytest.fixture(scope="module")
def key(acme) -> pb.Key:
    return acme.create_key("ecdsa-secp256k1")


def test_keygen_gives_a_compressed_secp256k1_key(acme, key) -> None:
    assert key.scheme == pb.SCHEME_ECDSA_SECP256K1
    assert len(key.public_key) == 33 and key.public_key[0] in (2, 3)
    assert key.threshold == 2 and key.participants == 3
    assert acme.get_key(key.key_id).public_key == key.public_key


def test_sign_digest_and_message(acme, key) -> None:
    digest = hashlib.sha256(b"transfer 1 ETH").digest()
    r = acme.sign(key.key_id, digest=digest)
    assert r.state == pb.REQUEST_STATE_SUCCEEDED and len(r.signers) == 2
    assert r.public_key == key.public_key
    verify_ecdsa(key.public_key, digest, r.signature, r.recovery_id)
    # A message is signed as its domain-separated digest (policy/payloads/messages.py).
    m = acme.sign(key.key_id, message=b"hello custody")
    assert m.signed_digest == message_digest(b"hello custody")
    verify_ecdsa(key.public_key, m.signed_digest, m.signature, m.recovery_id)


def test_derived_key_signs_under_derive(acme, key) -> None:
    derived = acme.derive(key.key_id, "m/44/60/0/0/5")
    digest = b"\x5a" * 32
    r = acme.sign(key.key_id, digest=digest, path="m/44/60/0/0/5")
    assert r.public_key == derived.public_key != key.public_key
    verify_ecdsa(derived.public_key, digest, r.signature, r.recovery_id)


def test_idempotent_request_id(acme, key) -> None:
    rid = f"ecdsa-{uuid.uuid4().hex}"
    first = acme.sign(key.key_id, digest=b"\x01" * 32, request_id=rid)
    second = acme.sign(key.key_id, digest=b"\x01" * 32, request_id=rid)
    assert first.signature == second.signature and first.signers == second.signers


def test_presignature_is_single_use_at_the_node(running, acme, key) -> None:
    """A coordinator that replays a used presignature under a new request id gets
    nothing: the node consumed it (and erased its sealed secret) when it signed."""
    acme.sign(key.key_id, digest=b"\x02" * 32)
    store = CoordinatorStore(running.config.coordinator_database_url())
    with store.transaction() as s:
        used = (
            s.execute(
                select(PresignatureRow).where(
                    PresignatureRow.key_id == key.key_id, PresignatureRow.state == "used"
                )
            )
            .scalars()
            .first()
        )
        assert used is not None
        presignature_id, signer = used.presignature_id, int(used.signers.split(",")[0])
        s.expunge(used)
    store.engine.dispose()
    node_store = NodeStore(running.config.node_database_url(signer))
    with node_store.transaction() as s:
        row = s.get(NonceRow, presignature_id)
        assert row is not None and row.state == "consumed" and row.sealed_nonces is None
    node_store.engine.dispose()
    # A fresh, properly signed and authorized request, but the used presignature.
    rid = f"replay-{uuid.uuid4().hex}"
    request = acme.build_request(
        key.key_id,
        request_type=RequestType.RAW_DIGEST,
        chain="none",
        asset="none",
        payload=b"\x03" * 32,
        request_id=rid,
    )
    signature = sign_request(acme._initiator_key, acme.initiator, request).signature
    signers = [int(x) for x in used.signers.split(",")]
    auth = authorizations(running, request, signature, signers)[signer]
    channel, stub = node_stub(running, signer)
    with channel, pytest.raises(grpc.RpcError) as err:
        stub.SignShare(
            node_pb2.SignShareRequest(
                request_id=f"acme/{rid}/1",
                key_id=key.key_id,
                nonce_id=presignature_id,
                message_hash=b"\x03" * 32,
                authorization=auth,
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(err.value) == "NONCE_ALREADY_USED"
    release_leases(running, request, signers)


def test_ecdsa_key_refuses_frost_nonces(running, key) -> None:
    channel, stub = node_stub(running, 1)
    with channel, pytest.raises(grpc.RpcError) as err:
        stub.PrepareNonces(node_pb2.PrepareNoncesRequest(key_id=key.key_id, count=1))
    assert reason_of(err.value) == "WRONG_SCHEME"


def test_signs_with_a_node_down(running, acme, key) -> None:
    running.cluster.kill("node-2")
    try:
        digest = b"\x44" * 32
        r = acme.sign(key.key_id, digest=digest, request_id=f"down-{uuid.uuid4().hex}")
        assert 2 not in r.signers
        verify_ecdsa(key.public_key, digest, r.signature, r.recovery_id)
    finally:
        running.cluster.restart("node-2")


def test_excluded_peer_is_refused_for_new_sessions(running, key) -> None:
    """After an OT consistency failure a node never runs another DKLs23 session with
    that peer for the key (each could leak a bit of its Delta); presign refuses."""
    store = NodeStore(running.config.node_database_url(1))
    store.exclude_peers(key.key_id, frozenset({3}), "OT_CONSISTENCY")
    store.engine.dispose()
    channel, stub = node_stub(running, 1)
    try:
        with channel, pytest.raises(grpc.RpcError) as err:
            stub.StartSession(
                node_pb2.StartSessionRequest(
                    session_id=bytes(range(32)),
                    kind=node_pb2.SESSION_KIND_PRESIGN,
                    key_id=key.key_id,
                    scheme="ecdsa-dkls23",
                    parties=[1, 3],
                )
            )
        assert reason_of(err.value) == "PEER_EXCLUDED"
    finally:
        store = NodeStore(running.config.node_database_url(1))
        with store.transaction() as s:
            s.query(ExcludedPeerRow).delete()
        store.engine.dispose()


def _raw_request(acme, key_id: str, digest: bytes, label: str):
    """A new raw-digest request of acme and its initiator signature."""
    request = acme.build_request(
        key_id,
        request_type=RequestType.RAW_DIGEST,
        chain="none",
        asset="none",
        payload=digest,
        request_id=f"{label}-{uuid.uuid4().hex}",
    )
    return request, sign_request(acme._initiator_key, acme.initiator, request).signature


def _refused_incomplete(stub, key_id: str, request, digest: bytes, auth) -> grpc.RpcError:
    """SignShare with ``auth``: refused with FAILED_PRECONDITION HISTORY_REPORT_INCOMPLETE."""
    with pytest.raises(grpc.RpcError) as err:
        stub.SignShare(
            node_pb2.SignShareRequest(
                request_id=f"acme/{request.request_id}/1",
                key_id=key_id,
                nonce_id="ps_" + "0" * 32,
                message_hash=digest,
                authorization=auth,
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(err.value) == "HISTORY_REPORT_INCOMPLETE"
    return err.value


def _attempts(running, request_id: str) -> int:
    """How many attempts the coordinator recorded for acme's ``request_id``."""
    store = CoordinatorStore(running.config.coordinator_database_url())
    try:
        with store.transaction() as s:
            row = s.get(SignatureRequestRow, ("acme", request_id))
            assert row is not None
            return row.attempts
    finally:
        store.engine.dispose()


def test_a_report_trimmed_past_what_a_node_holds_is_refused_keeping_the_lease(
    running, acme, key
) -> None:
    """Reports leave out what the receiver holds (policy/exchange.py, "Reports carry what
    is new"). A node restarted since holds nothing of its peers' logs: a report trimmed
    anyway is refused with HISTORY_REPORT_INCOMPLETE before anything is consumed, the
    node keeps the tenant's lease (the coordinator retries with whole reports), and the
    coordinator, told what the node holds, signs through it again at the first attempt."""
    r = acme.sign(key.key_id, digest=b"\x05" * 32)
    a, b = sorted(r.signers)  # both have an entry in the velocity window
    running.cluster.kill(f"node-{a}")
    running.cluster.restart(f"node-{a}")
    digest = b"\x06" * 32
    request, signature = _raw_request(acme, key.key_id, digest, "trim")
    auth = authorizations(running, request, signature, [a, b])[a]
    peer_report = auth.reports[0]
    assert peer_report.head.node_id == b and len(peer_report.entries) >= 1
    peer_report.start = peer_report.head.anchor_count + 1
    del peer_report.entries[0]
    channel, stub = node_stub(running, a)
    with channel:
        _refused_incomplete(stub, key.key_id, request, digest, auth)
        # The lease is still this request's: another request of the tenant waits.
        other = acme.build_request(
            key.key_id,
            request_type=RequestType.RAW_DIGEST,
            chain="none",
            asset="none",
            payload=b"\x07" * 32,
            request_id=f"other-{uuid.uuid4().hex}",
        )
        with pytest.raises(grpc.RpcError) as busy:
            stub.GetHistoryReport(
                node_pb2.GetHistoryReportRequest(
                    request=request_to_proto(other),
                    initiator_signature=sign_request(
                        acme._initiator_key, acme.initiator, other
                    ).signature,
                )
            )
        assert reason_of(busy.value) == "HISTORY_LEASE_BUSY"
    release_leases(running, request, [a, b])
    for _ in range(6):
        r = acme.sign(key.key_id, digest=b"\x08" * 32, request_id=f"after-{uuid.uuid4().hex}")
        if a in r.signers:
            break
    assert a in r.signers
    assert _attempts(running, r.request_id) == 1


def test_an_account_part_a_node_does_not_hold_is_refused_keeping_the_lease(
    running, acme, key
) -> None:
    """The coordinator's account goes to each signer as the part after what it holds
    (policy/seen.py). A part that claims to follow a holding the node does not have
    (another coordinator epoch) is HISTORY_REPORT_INCOMPLETE before anything is consumed,
    the lease is kept, and the real coordinator then signs at the first attempt."""
    r = acme.sign(key.key_id, digest=b"\x15" * 32)
    a, b = sorted(r.signers)
    digest = b"\x16" * 32
    request, signature = _raw_request(acme, key.key_id, digest, "acct")
    auth = authorizations(running, request, signature, [a, b])[a]
    auth.account.CopyFrom(node_pb2.AccountPart(epoch=b"\x01" * 16, start=1, end=1))
    del auth.coordinator_view[:]
    channel, stub = node_stub(running, a)
    with channel:
        err = _refused_incomplete(stub, key.key_id, request, digest, auth)
        assert "account" in (err.details() or "")
    release_leases(running, request, [a, b])
    after = acme.sign(key.key_id, digest=b"\x17" * 32, request_id=f"after-{uuid.uuid4().hex}")
    assert _attempts(running, after.request_id) == 1
