"""The running system: separate processes, mTLS gRPC, sealed envelopes, persistence."""

from __future__ import annotations

import json
import time
import uuid

import grpc
import pytest
from coincurve import PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.signing import VerifyKey

from custody._pb.custody.v1 import custody_pb2 as pb
from custody.client import CustodyClient, OperationFailed
from custody.cluster import CLUSTER_FILE
from custody.pki import CertificateAuthority
from policy.payloads.messages import message_digest
from policy.request import RequestType, sign_request
from signer_nodes.grpc_errors import reason_of
from signer_nodes.node.authorization import request_to_proto


def verify(scheme: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    if scheme == "eddsa-ed25519":
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        VerifyKey(public_key).verify(message, signature)
        return True
    return bool(PublicKeyXOnly(public_key).verify(signature, message))


@pytest.fixture(scope="module")
def keys(acme: CustodyClient) -> dict[str, pb.Key]:
    return {scheme: acme.create_key(scheme) for scheme in ("eddsa-ed25519", "schnorr-bip340")}


def test_cluster_file_lists_every_process(running) -> None:
    state = json.loads((running.config.data_dir / CLUSTER_FILE).read_text())
    names = [p["name"] for p in state["processes"]]
    assert names == ["node-1", "node-2", "node-3", "coordinator"]
    assert all(p["pid"] > 0 and p["address"].startswith("127.0.0.1:") for p in state["processes"])


@pytest.mark.parametrize("scheme", ["eddsa-ed25519", "schnorr-bip340"])
def test_keygen_and_signing_verify_independently(acme, keys, scheme) -> None:
    key = keys[scheme]
    assert acme.get_key(key.key_id).public_key == key.public_key
    for payload in (b"hello custody", bytes(range(32))):
        result = acme.sign(key.key_id, message=payload)
        assert result.state == pb.REQUEST_STATE_SUCCEEDED and len(result.signers) == 2
        assert result.public_key == key.public_key
        # A message is signed as its domain-separated digest (policy/payloads/messages.py).
        assert result.signed_digest == message_digest(payload)
        assert verify(scheme, key.public_key, result.signed_digest, result.signature)
    raw = acme.sign(key.key_id, digest=b"\x11" * 32)
    assert raw.signed_digest == b"\x11" * 32
    assert verify(scheme, key.public_key, b"\x11" * 32, raw.signature)


def test_derived_key_signature_matches_derive(acme, keys) -> None:
    key = keys["schnorr-bip340"]
    derived = acme.derive(key.key_id, "m/44/0/7")
    result = acme.sign(key.key_id, digest=b"\x42" * 32, path="m/44/0/7")
    assert result.public_key == derived.public_key != key.public_key
    assert verify("schnorr-bip340", derived.public_key, b"\x42" * 32, result.signature)


def test_same_request_id_yields_one_signature(acme, keys) -> None:
    key = keys["eddsa-ed25519"]
    rid = f"pay-{uuid.uuid4().hex}"
    first = acme.sign(key.key_id, message=b"once", request_id=rid)
    time.sleep(1.1)  # a retry in a later second resends the request first signed
    second = acme.sign(key.key_id, message=b"once", request_id=rid)
    assert first.signature == second.signature and first.signers == second.signers
    with pytest.raises(grpc.RpcError) as err:
        acme.sign(key.key_id, message=b"something else", request_id=rid)
    assert (
        err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        and reason_of(err.value) == "REQUEST_ID_REUSED"
    )


def test_tenant_isolation(running, keys) -> None:
    key = keys["eddsa-ed25519"]
    with running.client("globex") as globex:
        assert globex.list_keys() == []
        for call in (
            lambda: globex.get_key(key.key_id),
            lambda: globex.sign(key.key_id, message=b"steal"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert (
                err.value.code() == grpc.StatusCode.NOT_FOUND
                and reason_of(err.value) == "KEY_NOT_FOUND"
            )


def test_client_certificate_from_another_ca_is_refused(running, tmp_path) -> None:
    rogue = CertificateAuthority.create("rogue CA")
    paths = rogue.issue("acme", "tenant", tmp_path, "client", server=False, client=True)
    client = CustodyClient(
        running.config.coordinator_address,
        running.config.ca_cert.read_bytes(),
        paths.cert.read_bytes(),
        paths.key.read_bytes(),
    )
    with pytest.raises(grpc.RpcError) as err:
        client.list_keys()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
    client.close()


def test_tenant_certificate_cannot_call_nodes(running) -> None:
    from custody._pb.custody.node.v1 import node_pb2, node_pb2_grpc

    tdir = running.config.tenant_dir("acme")
    creds = grpc.ssl_channel_credentials(
        running.config.ca_cert.read_bytes(),
        (tdir / "client.key").read_bytes(),
        (tdir / "client.pem").read_bytes(),
    )
    with (
        grpc.secure_channel(running.config.node(1).address, creds) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        node_pb2_grpc.NodeServiceStub(channel).GetInfo(node_pb2.GetInfoRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _signed(acme, key_id: str, rid: str, **changes):
    """A signature request as the client builds it, with fields changed after signing."""
    request = acme.build_request(
        key_id,
        request_type=RequestType.RAW_DIGEST,
        chain="none",
        asset="none",
        payload=bytes(32),
        request_id=rid,
    )
    signature = sign_request(acme._initiator_key, acme.initiator, request).signature
    message = request_to_proto(request)
    api_id = changes.pop("api_id", rid)
    for name, value in changes.items():
        if name == "signature":
            signature = value
        elif name == "derivation_path":
            message.derivation_path[:] = value
        else:
            setattr(message, name, value)
    return pb.RequestSignatureRequest(
        request_id=api_id, request=message, initiator_signature=signature
    )


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda a, k, r: _signed(a, k, r, payload=b"short"), "PAYLOAD_INVALID"),
        (lambda a, k, r: _signed(a, k, r, api_id="bad id with spaces"), "INVALID_REQUEST_ID"),
        (lambda a, k, r: pb.RequestSignatureRequest(request_id=r), "REQUEST_MISSING"),
        (lambda a, k, r: _signed(a, k, r, request_id="other:x"), "REQUEST_MISMATCH"),
        (lambda a, k, r: _signed(a, k, r, amount="lots"), "REQUEST_INVALID"),
        (lambda a, k, r: _signed(a, k, r, derivation_path=[1 << 31]), "REQUEST_INVALID"),
        (lambda a, k, r: _signed(a, k, r, signature=b"x"), "INITIATOR_SIGNATURE_INVALID"),
    ],
    ids=[
        "short-digest",
        "bad-request-id",
        "no-request",
        "foreign-request-id",
        "bad-amount",
        "hardened-path",
        "short-signature",
    ],
)
def test_bad_requests_get_invalid_argument_and_write_nothing(acme, keys, build, reason) -> None:
    key = keys["schnorr-bip340"]
    request = build(acme, key.key_id, "r-" + uuid.uuid4().hex)
    with pytest.raises(grpc.RpcError) as err:
        acme.stub.RequestSignature(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(err.value) == reason
    with pytest.raises(grpc.RpcError) as missing:
        acme.stub.GetSignatureRequest(pb.GetSignatureRequestRequest(request_id=request.request_id))
    assert missing.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def test_a_forged_initiator_signature_fails_the_request_and_stays_failed(acme, keys) -> None:
    """A well-formed request whose initiator signature does not verify is stored FAILED
    with the governance code (nothing else of it is written: its registration rolled
    back), and the same request_id keeps that outcome."""
    key = keys["eddsa-ed25519"]
    rid = "forged-" + uuid.uuid4().hex
    request = _signed(acme, key.key_id, rid, signature=bytes(64))
    first = acme.stub.RequestSignature(request)
    assert first.state == pb.REQUEST_STATE_FAILED
    assert first.error_code == "INITIATOR_SIGNATURE_INVALID"
    again = acme.stub.RequestSignature(request)
    assert (again.state, again.error_code) == (first.state, first.error_code)
    stored = acme.stub.GetSignatureRequest(pb.GetSignatureRequestRequest(request_id=rid))
    assert (stored.state, stored.error_code, stored.signature) == (
        pb.REQUEST_STATE_FAILED,
        "INITIATOR_SIGNATURE_INVALID",
        b"",
    )


def test_unknown_fields_are_refused(acme) -> None:
    raw = pb.ListKeysRequest().SerializeToString() + b"\x78\x01"  # field 15, varint 1
    call = acme.channel.unary_unary(
        "/custody.v1.CustodyService/ListKeys",
        request_serializer=lambda b: b,
        response_deserializer=pb.ListKeysResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as err:
        call(raw)
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and reason_of(err.value) == "UNKNOWN_FIELD"
    )


def test_operation_errors_are_reported(acme) -> None:
    with pytest.raises(grpc.RpcError) as err:
        acme.stub.GetOperation(pb.GetOperationRequest(name="nonsense"))
    assert reason_of(err.value) == "INVALID_OPERATION_NAME"
    assert isinstance(OperationFailed("X", "y"), Exception)


@pytest.mark.parametrize(
    "service",
    [
        "custody.v1.CustodyService",
        "custody.governance.v1.GovernanceService",
        "custody.por.v1.ProofService",
    ],
)
def test_coordinator_serves_every_service(acme, service) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    status = health_pb2_grpc.HealthStub(acme.channel).Check(
        health_pb2.HealthCheckRequest(service=service)
    )
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_concurrent_requests_all_sign(acme, keys) -> None:
    """Requests in flight together: each signer's history moves between its report and
    its share, which must not read as the coordinator hiding history."""
    from concurrent.futures import ThreadPoolExecutor

    key = keys["eddsa-ed25519"]
    payloads = [f"concurrent {i}".encode() for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda m: acme.sign(key.key_id, message=m), payloads))
    for payload, r in zip(payloads, results, strict=True):
        assert r.state == pb.REQUEST_STATE_SUCCEEDED
        assert r.signed_digest == message_digest(payload)
        assert verify("eddsa-ed25519", key.public_key, r.signed_digest, r.signature)
