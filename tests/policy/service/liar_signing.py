"""Signing attempts a (lying) coordinator makes at real signer nodes, and the requests,
approvals and policy bundles it works with.

An attempt owns one pool entry per signer (a DKLs23 presignature shared by the signing
set, or one FROST nonce per signer). :meth:`_Attempt.refused` sends one authorization to
one node, expects a refusal with a given gRPC status and reason, and then checks the
promise behind every refusal: on EVERY signer of the attempt the pool entry is still
unused with its sealed secret in place, the policy history has no entry for the request,
and no share was recorded for the node-level request id. :meth:`EcdsaAttempt.sign` /
:meth:`FrostAttempt.sign` are the honest controls: the same pool entries, given what an
honest coordinator sends, produce a signature that verifies with an independent library.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable, Mapping

import grpc
from coincurve import PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from custody._pb.custody.node.v1 import node_pb2
from custody.governance.bundle import encode_bundle
from policy.governance import PolicyVersion, SignedPolicyVersion, sign_version
from policy.payloads.ethereum import build_eip1559
from policy.request import (
    Approval,
    ApprovalDecision,
    RequestType,
    SigningRequest,
    sign_approval,
    sign_request,
)
from signer_nodes.mpc.dkls23 import PresignaturePublic, combine
from signer_nodes.mpc.dkls23 import SignatureShare as EcdsaShare
from signer_nodes.mpc.frost import (
    FROST_ED25519,
    PublicKeyPackage,
    SignatureShare,
    SigningPackage,
    aggregate,
)
from tests.policy.service.liar_cluster import LiarCluster, PoolEntry, refusal

ETH = 10**18
ADDRESS_A = "0x52908400098527886e0f7030069857d2e4169ee7"
ADDRESS_B = "0xde709f2102306220921060314715629080e2fb77"
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNUSED = PoolEntry("unused", True, None)


# -- requests, approvals, bundles --------------------------------------------------------


def eth_payload(to: str, amount: int, nonce: int = 7) -> bytes:
    return build_eip1559(
        chain_id=1,
        nonce=nonce,
        to=to,
        value=amount,
        max_fee_per_gas=30 * 10**9,
        max_priority_fee_per_gas=10**9,
    )


def eth_transfer(
    key_id: str,
    *,
    to: str,
    amount: int,
    tenant: str = "acme",
    initiator: str | None = None,
    payload: bytes | None = None,
    request_id: str | None = None,
) -> SigningRequest:
    """An EIP-1559 ETH transfer request (the payload pays ``to`` ``amount`` wei unless
    ``payload`` is given)."""
    return SigningRequest(
        request_id=request_id or f"{tenant}:{uuid.uuid4().hex}",
        tenant=tenant,
        initiator=initiator or f"{tenant}-initiator",
        key_id=key_id,
        request_type=RequestType.TRANSFER,
        chain="ethereum",
        asset="ETH",
        destination=to,
        amount=amount,
        payload=payload if payload is not None else eth_payload(to, amount),
        created_at=int(time.time()),
    )


def offchain(
    key_id: str,
    payload: bytes,
    *,
    request_type: RequestType = RequestType.MESSAGE,
    tenant: str = "acme",
    initiator: str | None = None,
    request_id: str | None = None,
) -> SigningRequest:
    """A message (or raw digest) request; what is signed is derived from ``payload``."""
    return SigningRequest(
        request_id=request_id or f"{tenant}:{uuid.uuid4().hex}",
        tenant=tenant,
        initiator=initiator or f"{tenant}-initiator",
        key_id=key_id,
        request_type=request_type,
        chain="none",
        asset="none",
        payload=payload,
        created_at=int(time.time()),
    )


def initiator_signature(key: Ed25519PrivateKey, request: SigningRequest) -> bytes:
    return sign_request(key, request.initiator, request).signature


def approval(
    key: Ed25519PrivateKey,
    approver: str,
    request: SigningRequest,
    version_id: bytes,
    *,
    decision: ApprovalDecision = ApprovalDecision.APPROVE,
    expires_at: int | None = None,
) -> Approval:
    return sign_approval(
        key,
        approver=approver,
        request=request,
        decision=decision,
        expires_at=expires_at if expires_at is not None else int(time.time()) + 3600,
        policy_version_id=version_id,
    )


def bundle(
    number: int,
    parent: bytes,
    document: bytes,
    signers: Iterable[tuple[str, Ed25519PrivateKey]],
) -> bytes:
    """A policy version signed by ``(officer id, key)`` pairs (ids need not be officers)."""
    version = PolicyVersion(number, parent, document)
    signatures = sorted(
        (sign_version(key, officer, version) for officer, key in signers),
        key=lambda s: s.officer.encode(),
    )
    return encode_bundle(SignedPolicyVersion(version, tuple(signatures)))


# -- attempts ----------------------------------------------------------------------------


class _Attempt:
    def __init__(
        self, cluster: LiarCluster, key_id: str, pool_ids: Mapping[int, str], tenant: str
    ) -> None:
        self.cluster = cluster
        self.key_id = key_id
        self.pool_ids = dict(pool_ids)
        self.signers = tuple(sorted(pool_ids))
        self.node_request_id = f"{tenant}/{secrets.token_hex(8)}/1"

    def _call(self, node_id: int, auth: node_pb2.Authorization, **fields: object) -> bytes:
        raise NotImplementedError

    def refused(
        self,
        node_id: int,
        auth: node_pb2.Authorization,
        code: str,
        *,
        status: grpc.StatusCode = DENIED,
        **fields: object,
    ) -> None:
        """Send ``auth`` to ``node_id``; expect (status, code) and nothing spent anywhere."""
        try:
            self._call(node_id, auth, **fields)
        except grpc.RpcError as err:
            assert refusal(err) == (status, code), err.details()
        else:
            raise AssertionError(f"node {node_id} released a share; expected {code}")
        self.assert_unspent(auth.request.request_id)

    def abandon(self, auths: Mapping[int, node_pb2.Authorization], **fields: object) -> None:
        """Give up on a request, as a coordinator can: make each signer refuse it (a bad
        initiator signature), which ends the node's lease for it (policy/exchange.py,
        "Leases") so the tenant's next request can be reported for."""
        for i in self.signers:
            lie = node_pb2.Authorization()
            lie.CopyFrom(auths[i])
            lie.initiator_signature = bytes(64)
            self.refused(i, lie, "INITIATOR_SIGNATURE_INVALID", **fields)

    def assert_unspent(self, request_id: str) -> None:
        for i in self.signers:
            assert self.cluster.pool_entry(i, self.pool_ids[i]) == UNUSED, f"node {i}"
            assert request_id not in self.cluster.history_ids(i), f"node {i}"
            assert self.node_request_id not in self.cluster.sign_record_ids(i), f"node {i}"

    def assert_spent(self, request_id: str) -> None:
        for i in self.signers:
            entry = self.cluster.pool_entry(i, self.pool_ids[i])
            assert entry == PoolEntry("consumed", False, self.node_request_id), f"node {i}"
            assert request_id in self.cluster.history_ids(i), f"node {i}"


class EcdsaAttempt(_Attempt):
    """A fresh DKLs23 presignature among ``signers`` for ``key_id``."""

    def __init__(
        self, cluster: LiarCluster, key_id: str, signers: Iterable[int], tenant: str = "acme"
    ) -> None:
        signers = sorted(signers)
        presignature_id, public = cluster.presign(key_id, signers)
        super().__init__(cluster, key_id, {i: presignature_id for i in signers}, tenant)
        self.presignature_id = presignature_id
        self.public = PresignaturePublic.from_bytes(public)

    def _call(self, node_id: int, auth: node_pb2.Authorization, **fields: object) -> bytes:
        message_hash = fields.get("message_hash")
        assert isinstance(message_hash, bytes)
        response = self.cluster.stub(node_id).SignShare(
            node_pb2.SignShareRequest(
                request_id=self.node_request_id,
                key_id=self.key_id,
                nonce_id=self.presignature_id,
                message_hash=message_hash,
                authorization=auth,
            )
        )
        return bytes(response.signature_share)

    def share(self, node_id: int, auth: node_pb2.Authorization, message_hash: bytes) -> bytes:
        """One node's signature share (raises the node's refusal as grpc.RpcError)."""
        return self._call(node_id, auth, message_hash=message_hash)

    def combine(self, shares: Mapping[int, bytes], message_hash: bytes, public_key: bytes) -> bytes:
        """DKLs23 step 10 over the signers' shares; the signature verified by coincurve."""
        parsed = {i: EcdsaShare.from_bytes(share) for i, share in shares.items()}
        signature = combine(self.public, parsed, message_hash)
        assert PublicKey(public_key).verify(signature.to_der(), message_hash, hasher=None)
        return signature.to_bytes()

    def sign(
        self, auths: Mapping[int, node_pb2.Authorization], message_hash: bytes, public_key: bytes
    ) -> bytes:
        """The honest path: every signer's share, combined and verified; pool entries spent."""
        shares = {i: self.share(i, auths[i], message_hash) for i in self.signers}
        signature = self.combine(shares, message_hash, public_key)
        self.assert_spent(auths[self.signers[0]].request.request_id)
        return signature


class FrostAttempt(_Attempt):
    """One fresh FROST(Ed25519) pool nonce per signer for ``key_id``."""

    suite = FROST_ED25519

    def __init__(
        self, cluster: LiarCluster, key_id: str, signers: Iterable[int], tenant: str = "acme"
    ) -> None:
        nonces = cluster.frost_nonces(self.suite, key_id, signers)
        super().__init__(cluster, key_id, {i: n for i, (n, _) in nonces.items()}, tenant)
        self.commitments = {i: c for i, (_, c) in nonces.items()}

    def package(self, message: bytes, members: Iterable[int] | None = None) -> SigningPackage:
        ids = sorted(members) if members is not None else self.signers
        return SigningPackage(tuple(self.commitments[i] for i in ids), message)

    def _call(self, node_id: int, auth: node_pb2.Authorization, **fields: object) -> bytes:
        package = fields.get("package")
        assert isinstance(package, SigningPackage)
        response = self.cluster.stub(node_id).SignShare(
            node_pb2.SignShareRequest(
                request_id=self.node_request_id,
                key_id=self.key_id,
                nonce_id=self.pool_ids[node_id],
                signing_package=package.encode(self.suite),
                authorization=auth,
            )
        )
        return bytes(response.signature_share)

    def sign(
        self, auths: Mapping[int, node_pb2.Authorization], message: bytes, public_key: bytes
    ) -> bytes:
        """The honest path: shares aggregated (RFC 9591 section 5.3) and the signature
        verified by ``cryptography``'s Ed25519 over ``message``."""
        package = self.package(message)
        shares = [
            SignatureShare.decode(self.suite, self._call(i, auths[i], package=package))
            for i in self.signers
        ]
        public = PublicKeyPackage.from_bytes(
            self.cluster.public_key_package(self.signers[0], self.key_id)
        )
        signature = aggregate(self.suite, package, shares, public)
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        self.assert_spent(auths[self.signers[0]].request.request_id)
        return signature
