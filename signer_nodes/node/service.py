"""The gRPC NodeService: protocol sessions, nonce pool and signature shares.

Thin by design: protobuf in, domain types to the cores and the store,
protobuf out. Every protocol message arrives and leaves as a sealed envelope
(:mod:`signer_nodes.wire.secure`); the coordinator only relays.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field

import grpc
import structlog

from custody._pb.custody.node.v1 import node_pb2, node_pb2_grpc
from signer_nodes.grpc_errors import ServiceError, abort
from signer_nodes.mpc.bip32 import InvalidPathError
from signer_nodes.mpc.dkg import DkgOutput, DkgParty
from signer_nodes.mpc.errors import EncodingError, LocalMisuseError, MpcError, RemoteProtocolError
from signer_nodes.mpc.frost import (
    SUITES,
    KeyPackage,
    PublicKeyPackage,
    SigningNonces,
    SigningPackage,
    commit,
    sign,
)
from signer_nodes.mpc.frost.ciphersuite import Ciphersuite
from signer_nodes.mpc.hd import derived_packages
from signer_nodes.mpc.session import SESSION_ID_LEN
from signer_nodes.node.sealing import SealContext, Sealer, SealingError
from signer_nodes.node.store import NodeStore, StoreError
from signer_nodes.wire.identity import NodeDirectory, NodeIdentity
from signer_nodes.wire.secure import SealedEnvelope, open_sealed, seal

log = structlog.get_logger("signer_node")
MAX_NONCES_PER_CALL = 256
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class _Session:
    kind: int
    key_id: str
    scheme: str
    core: DkgParty
    epoch: int
    lock: threading.Lock = field(default_factory=threading.Lock)


def _suite(scheme: str) -> Ciphersuite:
    suite = SUITES.get(scheme)
    if suite is None:
        raise ServiceError(INVALID, "UNKNOWN_SCHEME", f"unknown scheme {scheme!r}")
    return suite


def _check_key_id(key_id: str) -> None:
    if not 1 <= len(key_id) <= 64 or not all(c.isalnum() or c in "-_" for c in key_id):
        raise ServiceError(INVALID, "INVALID_KEY_ID", "key ids are 1-64 characters [A-Za-z0-9_-]")


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(
        self, identity: NodeIdentity, directory: NodeDirectory, store: NodeStore, sealer: Sealer
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.directory = directory
        self.store = store
        self.sealer = sealer
        self._sessions: dict[bytes, _Session] = {}
        self._lock = threading.Lock()

    # -- helpers ----------------------------------------------------------------

    def _ctx(self, key_id: str, epoch: int, kind: str) -> SealContext:
        return SealContext(self.node_id, key_id, epoch, kind)

    def _load(self, key_id: str) -> tuple[Ciphersuite, KeyPackage, PublicKeyPackage, int]:
        try:
            row = self.store.load_key(key_id)
        except StoreError as exc:
            raise ServiceError(grpc.StatusCode.NOT_FOUND, exc.reason, str(exc)) from None
        suite = _suite(row.scheme)
        key = KeyPackage.from_bytes(
            self.sealer.unseal(row.sealed_key_package, self._ctx(key_id, row.epoch, "share"))
        )
        return suite, key, PublicKeyPackage.from_bytes(row.public_key_package), row.epoch

    def _update(self, session: _Session, outgoing: list[bytes]) -> node_pb2.SessionUpdate:
        core = session.core
        if core.aborted is not None:
            return node_pb2.SessionUpdate(
                state=node_pb2.SESSION_STATE_ABORTED,
                error_code=core.aborted.code,
                culprits=sorted(core.aborted.culprits),
                error_message=str(core.aborted),
            )
        if core.finished:
            out: DkgOutput = core.output
            sealed = self.sealer.seal(
                out.key_package.to_bytes(), self._ctx(session.key_id, session.epoch, "share")
            )
            public = out.public_key_package.to_bytes()
            self.store.save_key(session.key_id, session.scheme, sealed, public, epoch=session.epoch)
            log.info(
                "key_share_stored", key_id=session.key_id, epoch=session.epoch, node_id=self.node_id
            )
            return node_pb2.SessionUpdate(
                state=node_pb2.SESSION_STATE_FINISHED, envelopes=outgoing, public_key_package=public
            )
        return node_pb2.SessionUpdate(state=node_pb2.SESSION_STATE_RUNNING, envelopes=outgoing)

    # -- RPCs -------------------------------------------------------------------

    def GetInfo(
        self, request: node_pb2.GetInfoRequest, context: grpc.ServicerContext
    ) -> node_pb2.NodeInfo:
        pub = self.identity.public
        return node_pb2.NodeInfo(
            node_id=self.node_id,
            signing_key=pub.signing_key,
            encryption_key=pub.encryption_key,
            version="1",
        )

    def StartSession(
        self, request: node_pb2.StartSessionRequest, context: grpc.ServicerContext
    ) -> node_pb2.SessionUpdate:
        try:
            if len(request.session_id) != SESSION_ID_LEN:
                raise ServiceError(INVALID, "INVALID_SESSION_ID", "session ids are 32 bytes")
            _check_key_id(request.key_id)
            suite = _suite(request.scheme)
            parties = list(request.parties)
            if self.node_id not in parties or any(p not in self.directory for p in parties):
                raise ServiceError(
                    INVALID, "INVALID_PARTIES", "parties must be known nodes including this one"
                )
            refresh_of = None
            epoch = 0
            if request.kind == node_pb2.SESSION_KIND_REFRESH:
                key_suite, key, public, old_epoch = self._load(request.key_id)
                if key_suite is not suite:
                    raise ServiceError(INVALID, "SCHEME_MISMATCH", "refresh with another scheme")
                refresh_of, epoch = (key, public), old_epoch + 1
            elif request.kind == node_pb2.SESSION_KIND_DKG:
                try:
                    self.store.load_key(request.key_id)
                except StoreError:
                    pass
                else:
                    raise ServiceError(
                        grpc.StatusCode.ALREADY_EXISTS,
                        "KEY_EXISTS",
                        "this node already holds that key",
                    )
            else:
                raise ServiceError(INVALID, "INVALID_SESSION_KIND", "unknown session kind")
            try:
                core = DkgParty(
                    suite,
                    request.session_id,
                    self.node_id,
                    parties,
                    request.threshold,
                    refresh_of=refresh_of,
                )
            except LocalMisuseError as exc:
                raise ServiceError(INVALID, exc.code, str(exc)) from None
            session = _Session(request.kind, request.key_id, request.scheme, core, epoch)
            with self._lock:
                if request.session_id in self._sessions:
                    raise ServiceError(
                        grpc.StatusCode.ALREADY_EXISTS,
                        "SESSION_EXISTS",
                        "session id already in use",
                    )
                self._sessions[request.session_id] = session
            log.info(
                "session_started",
                session_id=request.session_id.hex(),
                key_id=request.key_id,
                node_id=self.node_id,
            )
            with session.lock:
                out = [seal(e, self.identity, self.directory).to_bytes() for e in core.start()]
                return self._update(session, out)
        except ServiceError as err:
            abort(context, err)

    def Deliver(
        self, request: node_pb2.DeliverRequest, context: grpc.ServicerContext
    ) -> node_pb2.SessionUpdate:
        try:
            with self._lock:
                session = self._sessions.get(request.session_id)
            if session is None:
                raise ServiceError(
                    grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND", "no such session on this node"
                )
            with session.lock:
                out: list[bytes] = []
                for raw in request.envelopes:
                    if session.core.aborted is not None or session.core.finished:
                        break
                    try:
                        sealed = SealedEnvelope.from_bytes(raw)
                        env = open_sealed(sealed, self.identity, self.directory)
                        produced = session.core.receive(env)
                    except EncodingError as exc:
                        raise ServiceError(INVALID, "INVALID_ENVELOPE", str(exc)) from None
                    except RemoteProtocolError as exc:
                        log.warning(
                            "protocol_message_refused",
                            session_id=request.session_id.hex(),
                            code=exc.code,
                            culprits=sorted(exc.culprits),
                        )
                        continue
                    except MpcError as exc:
                        raise ServiceError(
                            grpc.StatusCode.FAILED_PRECONDITION, exc.code, str(exc)
                        ) from None
                    out.extend(seal(e, self.identity, self.directory).to_bytes() for e in produced)
                update = self._update(session, out)
            if update.state != node_pb2.SESSION_STATE_RUNNING:
                with self._lock:
                    self._sessions.pop(request.session_id, None)
            return update
        except ServiceError as err:
            abort(context, err)

    def PrepareNonces(
        self, request: node_pb2.PrepareNoncesRequest, context: grpc.ServicerContext
    ) -> node_pb2.PrepareNoncesResponse:
        try:
            if not 1 <= request.count <= MAX_NONCES_PER_CALL:
                raise ServiceError(
                    INVALID, "INVALID_COUNT", f"count must be 1..{MAX_NONCES_PER_CALL}"
                )
            suite, key, _public, epoch = self._load(request.key_id)
            entries, response = [], node_pb2.PrepareNoncesResponse()
            for _ in range(request.count):
                nonces, commitments = commit(suite, key.identifier, key.signing_share)
                nonce_id = secrets.token_hex(16)
                encoded = commitments.encode(suite)
                sealed = self.sealer.seal(
                    nonces.to_bytes(suite),
                    self._ctx(f"{request.key_id}/{nonce_id}", epoch, "nonce"),
                )
                entries.append((nonce_id, encoded, sealed))
                response.nonces.add(nonce_id=nonce_id, commitments=encoded)
            self.store.add_nonces(request.key_id, entries)
            return response
        except ServiceError as err:
            abort(context, err)

    def SignShare(
        self, request: node_pb2.SignShareRequest, context: grpc.ServicerContext
    ) -> node_pb2.SignShareResponse:
        try:
            suite, key, public, epoch = self._load(request.key_id)
            try:
                package = SigningPackage.decode(suite, request.signing_package)
                own = package.commitment_of(self.node_id)
            except (EncodingError, LocalMisuseError) as exc:
                raise ServiceError(INVALID, "INVALID_SIGNING_PACKAGE", str(exc)) from None
            digest = hashlib.sha256(
                request.key_id.encode()
                + b"\x00"
                + request.derivation_path.encode()
                + b"\x00"
                + request.signing_package
            ).digest()
            previous = self.store.sign_record(request.request_id)
            if previous is not None:
                if previous.package_digest == digest and previous.signature_share is not None:
                    return node_pb2.SignShareResponse(signature_share=previous.signature_share)
                raise ServiceError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "REQUEST_ALREADY_SIGNED",
                    "this request was already signed with other inputs",
                )
            try:
                derived_key, _ = derived_packages(key, public, request.derivation_path)
            except InvalidPathError as exc:
                raise ServiceError(INVALID, exc.code, str(exc)) from None
            assert derived_key is not None
            nonce_ctx = self._ctx(f"{request.key_id}/{request.nonce_id}", epoch, "nonce")

            def compute_share(sealed_nonces: bytes) -> bytes:
                nonces = SigningNonces.from_bytes(
                    suite, self.sealer.unseal(sealed_nonces, nonce_ctx)
                )
                return sign(suite, package, nonces, derived_key).encode(suite)

            try:
                encoded = self.store.sign_with_nonce(
                    request_id=request.request_id,
                    key_id=request.key_id,
                    nonce_id=request.nonce_id,
                    package_digest=digest,
                    expected_commitments=own.encode(suite),
                    compute_share=compute_share,
                )
            except StoreError as exc:
                raise ServiceError(
                    grpc.StatusCode.FAILED_PRECONDITION, exc.reason, str(exc)
                ) from None
            except LocalMisuseError as exc:
                raise ServiceError(INVALID, exc.code, str(exc)) from None
            log.info(
                "signature_share_released",
                request_id=request.request_id,
                key_id=request.key_id,
                node_id=self.node_id,
            )
            return node_pb2.SignShareResponse(signature_share=encoded)
        except SealingError as exc:
            abort(context, ServiceError(grpc.StatusCode.DATA_LOSS, exc.code, str(exc)))
        except ServiceError as err:
            abort(context, err)
