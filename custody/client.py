"""A Python client for CustodyService, authenticated with a tenant's certificate.

client = CustodyClient.from_data_dir("./custody-data")
key = client.create_key("eddsa-ed25519")
result = client.sign(key.key_id, message=b"hello")
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from custody._pb.custody.v1 import custody_pb2 as pb
from custody._pb.custody.v1 import custody_pb2_grpc
from custody.config import ClusterConfig

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


class CustodyClient:
    def __init__(self, address: str, ca: bytes, cert: bytes, key: bytes) -> None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        self.channel = grpc.secure_channel(address, creds)
        self.stub = custody_pb2_grpc.CustodyServiceStub(self.channel)

    @classmethod
    def from_data_dir(cls, data_dir: Path | str, tenant: str | None = None) -> CustodyClient:
        config = ClusterConfig.load(data_dir)
        tenant = tenant or config.tenants[0]
        tdir = config.tenant_dir(tenant)
        return cls(
            config.coordinator_address,
            config.ca_cert.read_bytes(),
            (tdir / "client.pem").read_bytes(),
            (tdir / "client.key").read_bytes(),
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
        if (digest is None) == (message is None):
            raise ValueError("pass exactly one of digest or message")
        req = pb.RequestSignatureRequest(
            request_id=request_id or uuid.uuid4().hex, key_id=key_id, path=path
        )
        if digest is not None:
            req.digest = digest
        else:
            assert message is not None
            req.message = message
        result: pb.SignatureRequest = self.stub.RequestSignature(req, timeout=timeout)
        if result.state == pb.REQUEST_STATE_FAILED:
            raise OperationFailed(result.error_code, result.error_message)
        return result
