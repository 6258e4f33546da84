"""A Python client for CustodyService, authenticated with a tenant's certificate.

client = CustodyClient.from_data_dir("./custody-data")
key = client.create_key("eddsa-ed25519")
result = client.sign(key.key_id, message=b"hello")
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody._pb.custody.v1 import custody_pb2 as pb
from custody._pb.custody.v1 import custody_pb2_grpc
from custody.config import ClusterConfig
from custody.governance.genesis import governance_root, initiator_id, initiator_key_path
from custody.governance.keys import load_private_key
from policy.request import RequestType, SigningRequest, sign_request
from signer_nodes.mpc.bip32 import parse_path
from signer_nodes.node.authorization import request_to_proto

SCHEMES = {
    "ecdsa-secp256k1": pb.SCHEME_ECDSA_SECP256K1,
    "eddsa-ed25519": pb.SCHEME_EDDSA_ED25519,
    "schnorr-bip340": pb.SCHEME_SCHNORR_BIP340,
}
SCHEME_NAMES = {v: k for k, v in SCHEMES.items()}


class OperationFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


# Chain and asset names of requests that are not transfers (messages, raw digests).
OFFCHAIN = "none"


class CustodyClient:
    """The institution's client. Every signature request is a structured
    :class:`policy.request.SigningRequest` signed by the tenant's initiator key
    (``initiator``, ``initiator_key``); the signer nodes verify it against their
    policy before they contribute."""

    def __init__(
        self,
        address: str,
        ca: bytes,
        cert: bytes,
        key: bytes,
        *,
        tenant: str = "",
        initiator: str = "",
        initiator_key: Ed25519PrivateKey | None = None,
    ) -> None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        self.channel = grpc.secure_channel(address, creds)
        self.stub = custody_pb2_grpc.CustodyServiceStub(self.channel)
        self.tenant = tenant
        self.initiator = initiator
        self._initiator_key = initiator_key
        self._sent: dict[str, tuple[SigningRequest, bytes]] = {}

    def __repr__(self) -> str:
        return f"CustodyClient(tenant={self.tenant!r}, initiator={self.initiator!r})"

    @classmethod
    def from_data_dir(
        cls, data_dir: Path | str, tenant: str | None = None, initiator: str | None = None
    ) -> CustodyClient:
        """Connect as ``tenant`` (default: the first) and sign requests as ``initiator``
        (default ``<tenant>-initiator``) with its key from ``<data-dir>/governance``."""
        config = ClusterConfig.load(data_dir)
        tenant = tenant or config.tenants[0]
        tdir = config.tenant_dir(tenant)
        initiator = initiator or initiator_id(tenant)
        key_file = initiator_key_path(governance_root(config.data_dir), initiator)
        return cls(
            config.coordinator_address,
            config.ca_cert.read_bytes(),
            (tdir / "client.pem").read_bytes(),
            (tdir / "client.key").read_bytes(),
            tenant=tenant,
            initiator=initiator,
            initiator_key=load_private_key(key_file) if key_file.exists() else None,
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CustodyClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def create_key(
        self,
        scheme: str,
        *,
        timeout: float = 60.0,
        request_id: str = "",
        progress: Callable[[pb.Operation], None] | None = None,
    ) -> pb.Key:
        """Create a key and wait for it. ``progress`` (if given) sees the running
        operation (stage, progress_done/progress_total) every 100 ms."""
        op = self.stub.CreateKey(pb.CreateKeyRequest(scheme=SCHEMES[scheme], request_id=request_id))
        deadline = time.monotonic() + timeout
        while not op.done:
            if progress is not None:
                progress(op)
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
                op = self.stub.GetOperation(pb.GetOperationRequest(name=op.name))
                continue
            op = self.stub.WaitOperation(
                pb.WaitOperationRequest(name=op.name, timeout_seconds=timeout), timeout=timeout + 5
            )
        if not op.done:
            raise OperationFailed("TIMEOUT", f"key generation did not finish in {timeout} s")
        if op.error_code:
            raise OperationFailed(op.error_code, op.error_message)
        key: pb.Key = op.key
        return key

    def get_key(self, key_id: str) -> pb.Key:
        key: pb.Key = self.stub.GetKey(pb.GetKeyRequest(key_id=key_id))
        return key

    def list_keys(self) -> list[pb.Key]:
        return list(self.stub.ListKeys(pb.ListKeysRequest()).keys)

    def derive(self, key_id: str, path: str) -> pb.DerivedKey:
        derived: pb.DerivedKey = self.stub.DeriveKey(pb.DeriveKeyRequest(key_id=key_id, path=path))
        return derived

    def sign(
        self,
        key_id: str,
        *,
        digest: bytes | None = None,
        message: bytes | None = None,
        path: str = "",
        request_id: str | None = None,
        timeout: float = 60.0,
    ) -> pb.SignatureRequest:
        """Sign a raw 32-byte digest or a message (which every key signs as the tagged
        digest of policy/payloads/messages.py; the result's ``signed_digest``)."""
        if (digest is None) == (message is None):
            raise ValueError("pass exactly one of digest or message")
        kind = RequestType.RAW_DIGEST if digest is not None else RequestType.MESSAGE
        payload = digest if digest is not None else message
        assert payload is not None
        return self.submit(
            key_id,
            request_type=kind,
            chain=OFFCHAIN,
            asset=OFFCHAIN,
            payload=payload,
            path=path,
            request_id=request_id,
            timeout=timeout,
        )

    def build_request(
        self,
        key_id: str,
        *,
        request_type: RequestType,
        chain: str,
        asset: str,
        payload: bytes,
        destination: str = "",
        amount: int = 0,
        path: str = "",
        request_id: str,
    ) -> SigningRequest:
        return SigningRequest(
            request_id=f"{self.tenant}:{request_id}",
            tenant=self.tenant,
            initiator=self.initiator,
            key_id=key_id,
            derivation_path=parse_path(path) if path not in ("", "m") else (),
            request_type=request_type,
            chain=chain,
            asset=asset,
            destination=destination,
            amount=amount,
            payload=payload,
            created_at=int(time.time()),
        )

    def submit(
        self,
        key_id: str,
        *,
        request_type: RequestType,
        chain: str,
        asset: str,
        payload: bytes,
        destination: str = "",
        amount: int = 0,
        path: str = "",
        request_id: str | None = None,
        timeout: float = 60.0,
        wait: bool = True,
    ) -> pb.SignatureRequest:
        """Build, sign (as the initiator) and submit a request; with ``wait``, block
        until it is signed or failed (approvals may be needed first)."""
        if self._initiator_key is None:
            raise OperationFailed(
                "INITIATOR_KEY_MISSING", f"no key for initiator {self.initiator!r} is configured"
            )
        request_id = request_id or uuid.uuid4().hex
        signing = self.build_request(
            key_id,
            request_type=request_type,
            chain=chain,
            asset=asset,
            payload=payload,
            destination=destination,
            amount=amount,
            path=path,
            request_id=request_id,
        )
        # A retry with the same request_id must send the very request first signed (its
        # created_at included); otherwise the service sees another request (AIP-155).
        previous = self._sent.get(request_id)
        if previous is not None and replace(previous[0], created_at=0) == replace(
            signing, created_at=0
        ):
            signing, signature = previous
        else:
            signature = sign_request(self._initiator_key, self.initiator, signing).signature
            if len(self._sent) >= 1024:
                self._sent.pop(next(iter(self._sent)))
            self._sent[request_id] = (signing, signature)
        return self.submit_signed(request_id, signing, signature, timeout=timeout, wait=wait)

    def submit_signed(
        self,
        request_id: str,
        signing: SigningRequest,
        initiator_signature: bytes,
        *,
        timeout: float = 60.0,
        wait: bool = True,
    ) -> pb.SignatureRequest:
        req = pb.RequestSignatureRequest(
            request_id=request_id,
            request=request_to_proto(signing),
            initiator_signature=initiator_signature,
        )
        result: pb.SignatureRequest = self.stub.RequestSignature(req, timeout=timeout)
        if wait and result.state in (pb.REQUEST_STATE_PENDING_APPROVAL, pb.REQUEST_STATE_PENDING):
            result = self.wait(request_id, timeout=timeout)
        if result.state == pb.REQUEST_STATE_FAILED:
            raise OperationFailed(result.error_code, result.error_message)
        return result

    def wait(self, request_id: str, *, timeout: float = 60.0) -> pb.SignatureRequest:
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.1, deadline - time.monotonic())
            result: pb.SignatureRequest = self.stub.WaitSignatureRequest(
                pb.WaitSignatureRequestRequest(
                    request_id=request_id, timeout_seconds=min(left, 30)
                ),
                timeout=min(left, 30) + 5,
            )
            final = (pb.REQUEST_STATE_SUCCEEDED, pb.REQUEST_STATE_FAILED)
            if result.state in final or time.monotonic() >= deadline:
                return result
