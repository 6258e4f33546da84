"""The gRPC NodeService: protocol sessions, nonce pool and signature shares.

Thin by design: protobuf in, domain types to the cores and the store,
protobuf out. Every protocol message arrives and leaves as a sealed envelope
(:mod:`signer_nodes.wire.secure`); the coordinator only relays.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from custody._pb.custody.node.v1 import node_pb2, node_pb2_grpc
from policy.exchange import VerifiedSuffix, to_hold
from policy.request import valid_identifier
from policy.seen import Seen
from signer_nodes.grpc_errors import ServiceError, abort
from signer_nodes.mpc.bip32 import InvalidPathError
from signer_nodes.mpc.dkg import DkgOutput, DkgParty
from signer_nodes.mpc.dkls23 import (
    KeygenParty,
    KeyShare,
    Presignature,
    PresignParty,
    RefreshParty,
    derivation_tweak,
    signature_share,
)
from signer_nodes.mpc.dkls23.faults import peers_to_exclude
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
from signer_nodes.mpc.groups import SECP256K1
from signer_nodes.mpc.hd import derived_packages
from signer_nodes.mpc.session import SESSION_ID_LEN, RoundBasedParty
from signer_nodes.node.authorization import (
    Authorized,
    authorize_signing,
    lease_error,
    report_for,
    report_to_proto,
    request_from_proto,
)
from signer_nodes.node.policy_state import PolicyState, PolicyStateError
from signer_nodes.node.sealing import SealContext, Sealer, SealingError
from signer_nodes.node.store import NodeStore, StoreError
from signer_nodes.wire.identity import NodeDirectory, NodeIdentity
from signer_nodes.wire.secure import SealedEnvelope, open_sealed, seal

log = structlog.get_logger("signer_node")
MAX_NONCES_PER_CALL = 256
# Unused presignatures a node keeps per key: bounds what a coordinator can make it store.
MAX_PRESIGNATURES_PER_KEY = 2048
KEY_CACHE_SIZE = 256
MAX_REPORTED = 65_536
# Refusals after which the coordinator honestly retries the same request (lease kept).
LEASE_KEEPING = frozenset({"POLICY_VERSION_MISMATCH"})
DERIVED_CACHE_SIZE = 4096
INVALID = grpc.StatusCode.INVALID_ARGUMENT
ECDSA = "ecdsa-dkls23"
PRESIGNATURE_PREFIX = "ps_"


@dataclass
class _Session:
    kind: int
    key_id: str
    scheme: str
    core: RoundBasedParty
    epoch: int
    # Persists the output (sealed) and returns the extra fields of the final update.
    on_finish: Callable[[_Session, object], node_pb2.SessionUpdate]
    tenant: str = ""  # DKG: the owner of the new key
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _LoadedKey:
    scheme: str
    tenant: str  # the key's owner, bound at DKG (policy checks it)
    epoch: int
    version: bytes  # hash of the sealed blob it was unsealed from
    key_package: KeyPackage | None  # FROST keys
    public: PublicKeyPackage
    key_share: KeyShare | None  # DKLs23 keys
    suite: Ciphersuite | None = None

    def __repr__(self) -> str:
        return f"_LoadedKey(scheme={self.scheme}, epoch={self.epoch}, <redacted>)"


def _suite(scheme: str) -> Ciphersuite:
    suite = SUITES.get(scheme)
    if suite is None:
        raise ServiceError(INVALID, "UNKNOWN_SCHEME", f"unknown scheme {scheme!r}")
    return suite


def _check_scheme(scheme: str) -> None:
    if scheme != ECDSA:
        _suite(scheme)


def presignature_id(session_id: bytes) -> str:
    """The pool id of the presignature a presign session produces (same on every signer)."""
    return PRESIGNATURE_PREFIX + session_id.hex()


def _check_key_id(key_id: str) -> None:
    if not 1 <= len(key_id) <= 64 or not all(c.isalnum() or c in "-_" for c in key_id):
        raise ServiceError(INVALID, "INVALID_KEY_ID", "key ids are 1-64 characters [A-Za-z0-9_-]")


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(
        self,
        identity: NodeIdentity,
        directory: NodeDirectory,
        store: NodeStore,
        sealer: Sealer,
        policy: PolicyState,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.policy = policy
        self.clock = clock
        self.node_keys = {
            i: Ed25519PublicKey.from_public_bytes(directory[i].signing_key) for i in directory.ids()
        }
        self.node_id = identity.node_id
        self.directory = directory
        self.store = store
        self.sealer = sealer
        self._sessions: dict[bytes, _Session] = {}
        self._lock = threading.Lock()
        # Held from reading the history for a decision until the decision is recorded
        # (or refused), and while taking a lease for a report: velocity decisions of this
        # node are serial, so two concurrent requests cannot both spend the same budget,
        # and a lease is taken against the log as it is when the report is made.
        self._decide_lock = threading.Lock()
        self._keys: OrderedDict[str, _LoadedKey] = OrderedDict()
        self._tenants: OrderedDict[str, str] = OrderedDict()  # key id -> tenant (immutable)
        # request digest -> length of this node's log when it reported for that request
        self._reported: dict[bytes, int] = {}
        # What this node verified of each peer's log (policy/exchange.py, "Reports carry
        # what is new"); in memory only, read and replaced under _decide_lock.
        self._held_logs: dict[int, VerifiedSuffix] = {}
        # The memory of the last exchange (policy/seen.py): what this node verified, the
        # coordinator's accounts it holds; in memory only, under _decide_lock.
        self._seen: Seen | None = None
        self._derived_keys: dict[tuple[str, int, str], KeyPackage] = {}

    # -- helpers ----------------------------------------------------------------

    def _ctx(self, key_id: str, epoch: int, kind: str) -> SealContext:
        return SealContext(self.node_id, key_id, epoch, kind)

    def _loaded(self, key_id: str) -> _LoadedKey:
        """The key's share, unsealed and parsed once per stored version.

        Each call reads the row (so a refresh is seen at once); the unseal and
        parse are cached per (key, epoch, sealed blob), in memory only, for a
        bounded number of keys."""
        try:
            row = self.store.load_key(key_id)
        except StoreError as exc:
            raise ServiceError(grpc.StatusCode.NOT_FOUND, exc.reason, str(exc)) from None
        version = hashlib.sha256(row.sealed_key_package).digest()
        with self._lock:
            cached = self._keys.get(key_id)
            if cached is not None and cached.epoch == row.epoch and cached.version == version:
                self._keys.move_to_end(key_id)
                return cached
        share = self.sealer.unseal(row.sealed_key_package, self._ctx(key_id, row.epoch, "share"))
        if row.scheme == ECDSA:
            key_share = KeyShare.from_bytes(share)
            loaded = _LoadedKey(
                row.scheme, row.tenant, row.epoch, version, None, key_share.public, key_share
            )
        else:
            suite = _suite(row.scheme)
            loaded = _LoadedKey(
                row.scheme,
                row.tenant,
                row.epoch,
                version,
                KeyPackage.from_bytes(share),
                PublicKeyPackage.from_bytes(row.public_key_package),
                None,
                suite,
            )
        with self._lock:
            self._keys[key_id] = loaded
            while len(self._keys) > KEY_CACHE_SIZE:
                self._keys.popitem(last=False)
        return loaded

    def _load(self, key_id: str) -> tuple[Ciphersuite, KeyPackage, PublicKeyPackage, int]:
        return self._frost_parts(self._loaded(key_id))

    @staticmethod
    def _frost_parts(k: _LoadedKey) -> tuple[Ciphersuite, KeyPackage, PublicKeyPackage, int]:
        if k.key_package is None or k.suite is None:
            raise ServiceError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "WRONG_SCHEME",
                "an ECDSA key signs with presignatures, not FROST nonces",
            )
        return k.suite, k.key_package, k.public, k.epoch

    def _load_ecdsa(self, key_id: str) -> tuple[KeyShare, int]:
        return self._ecdsa_parts(self._loaded(key_id))

    @staticmethod
    def _ecdsa_parts(k: _LoadedKey) -> tuple[KeyShare, int]:
        if k.key_share is None:
            raise ServiceError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "WRONG_SCHEME",
                "not an ECDSA key",
            )
        return k.key_share, k.epoch

    def _derived(
        self, key_id: str, epoch: int, key: KeyPackage, public: PublicKeyPackage, path: str
    ) -> KeyPackage:
        cache_key = (key_id, epoch, path)
        with self._lock:
            hit = self._derived_keys.get(cache_key)
        if hit is not None:
            return hit
        try:
            derived, _ = derived_packages(key, public, path)
        except InvalidPathError as exc:
            raise ServiceError(INVALID, exc.code, str(exc)) from None
        assert derived is not None
        with self._lock:
            if len(self._derived_keys) >= DERIVED_CACHE_SIZE:
                self._derived_keys.clear()
            self._derived_keys[cache_key] = derived
        return derived

    # -- what a finished session stores ------------------------------------------

    def _store_key_output(self, session: _Session, output: object) -> node_pb2.SessionUpdate:
        if isinstance(output, KeyShare):
            share_bytes, public = output.to_bytes(), output.public.to_bytes()
        else:
            assert isinstance(output, DkgOutput)
            share_bytes = output.key_package.to_bytes()
            public = output.public_key_package.to_bytes()
        sealed = self.sealer.seal(share_bytes, self._ctx(session.key_id, session.epoch, "share"))
        self.store.save_key(
            session.key_id,
            session.scheme,
            sealed,
            public,
            epoch=session.epoch,
            tenant=session.tenant,
        )
        log.info(
            "key_share_stored", key_id=session.key_id, epoch=session.epoch, node_id=self.node_id
        )
        return node_pb2.SessionUpdate(public_key_package=public)

    def _store_presignature(self, session: _Session, output: object) -> node_pb2.SessionUpdate:
        assert isinstance(output, Presignature)
        if self.store.load_key(session.key_id).epoch != session.epoch:
            # The key was refreshed while this session ran: the presignature is useless.
            raise ServiceError(
                grpc.StatusCode.ABORTED, "STALE_EPOCH", "the key was refreshed during presigning"
            )
        entry_id = presignature_id(output.session_id)
        public = output.public.to_bytes()
        sealed = self.sealer.seal(
            output.to_bytes(),
            self._ctx(f"{session.key_id}/{entry_id}", session.epoch, "presignature"),
        )
        self.store.add_nonces(session.key_id, [(entry_id, public, sealed)])
        return node_pb2.SessionUpdate(presignature_public=public)

    def _update(self, session: _Session, outgoing: list[bytes]) -> node_pb2.SessionUpdate:
        core = session.core
        if core.aborted is not None:
            excluded = peers_to_exclude(core.aborted)
            if excluded and session.scheme == ECDSA:
                self.store.exclude_peers(session.key_id, excluded, core.aborted.code)
                log.warning(
                    "peers_excluded",
                    key_id=session.key_id,
                    peers=sorted(excluded),
                    code=core.aborted.code,
                    node_id=self.node_id,
                )
            return node_pb2.SessionUpdate(
                state=node_pb2.SESSION_STATE_ABORTED,
                error_code=core.aborted.code,
                culprits=sorted(core.aborted.culprits),
                error_message=str(core.aborted),
            )
        if core.finished:
            update = session.on_finish(session, core.output)
            update.state = node_pb2.SESSION_STATE_FINISHED
            update.envelopes.extend(outgoing)
            return update
        return node_pb2.SessionUpdate(state=node_pb2.SESSION_STATE_RUNNING, envelopes=outgoing)

    def _new_session(self, request: node_pb2.StartSessionRequest, parties: list[int]) -> _Session:
        kind, key_id, scheme, sid = (
            request.kind,
            request.key_id,
            request.scheme,
            request.session_id,
        )
        if kind == node_pb2.SESSION_KIND_DKG:
            try:
                self.store.load_key(key_id)
            except StoreError:
                pass
            else:
                raise ServiceError(
                    grpc.StatusCode.ALREADY_EXISTS, "KEY_EXISTS", "this node already holds that key"
                )
            core: RoundBasedParty
            if not valid_identifier(request.tenant):
                raise ServiceError(INVALID, "INVALID_TENANT", "a new key names its tenant")
            if scheme == ECDSA:
                core = KeygenParty(sid, self.node_id, parties, request.threshold)
            else:
                core = DkgParty(_suite(scheme), sid, self.node_id, parties, request.threshold)
            return _Session(kind, key_id, scheme, core, 0, self._store_key_output, request.tenant)
        if kind == node_pb2.SESSION_KIND_REFRESH:
            if self._loaded(key_id).scheme != scheme:
                raise ServiceError(INVALID, "SCHEME_MISMATCH", "refresh with another scheme")
            if scheme == ECDSA:
                key_share, old_epoch = self._load_ecdsa(key_id)
                if sorted(parties) != list(key_share.parties):
                    raise ServiceError(
                        INVALID, "INVALID_PARTIES", "a refresh involves every holder of the key"
                    )
                return _Session(
                    kind,
                    key_id,
                    scheme,
                    RefreshParty(sid, key_share),
                    old_epoch + 1,
                    self._store_key_output,
                )
            suite, key, public, old_epoch = self._load(key_id)
            dkg = DkgParty(
                suite, sid, self.node_id, parties, request.threshold, refresh_of=(key, public)
            )
            return _Session(kind, key_id, scheme, dkg, old_epoch + 1, self._store_key_output)
        if scheme == ECDSA and kind in (
            node_pb2.SESSION_KIND_PRESIGN,
            node_pb2.SESSION_KIND_REFRESH,
        ):
            barred = self.store.excluded_peers(key_id) & set(parties)
            if barred:
                raise ServiceError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "PEER_EXCLUDED",
                    f"this node no longer runs sessions with {sorted(barred)} for {key_id} "
                    "(OT consistency failure; reshare without them)",
                )
        if kind == node_pb2.SESSION_KIND_PRESIGN:
            key_share, epoch = self._load_ecdsa(key_id)
            if self.store.unused_nonce_count(key_id) >= MAX_PRESIGNATURES_PER_KEY:
                raise ServiceError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "POOL_FULL",
                    f"this node already holds {MAX_PRESIGNATURES_PER_KEY} unused presignatures",
                )
            return _Session(
                kind,
                key_id,
                scheme,
                PresignParty(sid, key_share, parties),
                epoch,
                self._store_presignature,
            )
        raise ServiceError(INVALID, "INVALID_SESSION_KIND", "unknown session kind")

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
            _check_scheme(request.scheme)
            parties = list(request.parties)
            if self.node_id not in parties or any(p not in self.directory for p in parties):
                raise ServiceError(
                    INVALID, "INVALID_PARTIES", "parties must be known nodes including this one"
                )
            try:
                session = self._new_session(request, parties)
            except LocalMisuseError as exc:
                raise ServiceError(INVALID, exc.code, str(exc)) from None
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
                out = [
                    seal(e, self.identity, self.directory).to_bytes() for e in session.core.start()
                ]
                return self._update(session, out)
        except SealingError as exc:
            abort(context, ServiceError(grpc.StatusCode.DATA_LOSS, exc.code, str(exc)))
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
        except SealingError as exc:
            abort(context, ServiceError(grpc.StatusCode.DATA_LOSS, exc.code, str(exc)))
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
        except SealingError as exc:
            abort(context, ServiceError(grpc.StatusCode.DATA_LOSS, exc.code, str(exc)))
        except ServiceError as err:
            abort(context, err)

    def SignShare(
        self, request: node_pb2.SignShareRequest, context: grpc.ServicerContext
    ) -> node_pb2.SignShareResponse:
        try:
            key = self._loaded(request.key_id)  # one read of the key per share
            with self._decide_lock:  # decide and record before the next decision reads
                try:
                    if key.scheme == ECDSA:
                        share = self._ecdsa_share(request, key)
                    else:
                        share = self._frost_share(request, key)
                except ServiceError as err:
                    self._forfeit_lease(request, err)
                    raise
            log.info(
                "signature_share_released",
                request_id=request.request_id,
                key_id=request.key_id,
                node_id=self.node_id,
            )
            return node_pb2.SignShareResponse(signature_share=share)
        except SealingError as exc:
            abort(context, ServiceError(grpc.StatusCode.DATA_LOSS, exc.code, str(exc)))
        except ServiceError as err:
            abort(context, err)

    def _authorize(
        self,
        request: node_pb2.SignShareRequest,
        key: _LoadedKey,
        signer_key: bytes,
        signing_set: list[int],
    ) -> Authorized:
        if self.node_id not in signing_set:
            raise ServiceError(INVALID, "INVALID_PARTIES", "this node is not in the signing set")
        authorized = authorize_signing(
            policy=self.policy,
            node_id=self.node_id,
            node_keys=self.node_keys,
            message=request.authorization,
            key_id=request.key_id,
            key_scheme=key.scheme,
            key_tenant=key.tenant,
            derivation_path=request.derivation_path,
            signer_key=signer_key,
            signing_set=signing_set,
            now=int(self.clock()),
            own_reported_count=self._reported_count(request),
            held_logs=self._held_logs,
            seen=self._seen,
        )
        for peer, suffix in (authorized.authorization.peer_logs or {}).items():
            self._held_logs[peer] = to_hold(self._held_logs.get(peer), suffix)
        if authorized.authorization.seen is not None:
            self._seen = authorized.authorization.seen
        return authorized

    def _reported_count(self, request: node_pb2.SignShareRequest) -> int | None:
        if not request.authorization.HasField("request"):
            return None
        digest = request_from_proto(request.authorization.request).digest()
        with self._lock:
            return self._reported.get(digest)

    def _forfeit_lease(self, request: node_pb2.SignShareRequest, err: ServiceError) -> None:
        """A refused request loses this node's lease (policy/exchange.py, "Leases"): its
        tenant is free again at once, and the node never contributes to it later. A
        version mismatch is exempt: the coordinator pushes the version and retries."""
        if err.code != grpc.StatusCode.PERMISSION_DENIED or err.reason in LEASE_KEEPING:
            return
        if not request.authorization.HasField("request"):
            return
        try:
            signed = request_from_proto(request.authorization.request)
        except ServiceError:
            return
        self.policy.forfeit(signed.request_id, signed.digest())

    def _key_tenant(self, key_id: str) -> str | None:
        """The key's tenant: set at DKG, kept by every refresh and refused a change by
        restores, so it is read once per key. (A share the HSM tools delete while the
        node runs still gets reports until a restart; ``SignShare`` reads the key itself
        and refuses.)"""
        with self._lock:
            tenant = self._tenants.get(key_id)
        if tenant is not None:
            return tenant
        try:
            tenant = self.store.load_key(key_id).tenant
        except StoreError:
            return None
        with self._lock:
            self._tenants[key_id] = tenant
            while len(self._tenants) > KEY_CACHE_SIZE:
                self._tenants.popitem(last=False)
        return tenant

    def GetHistoryReport(
        self, request: node_pb2.GetHistoryReportRequest, context: grpc.ServicerContext
    ) -> node_pb2.GetHistoryReportResponse:
        try:
            with self._decide_lock:  # taking a lease is atomic w.r.t. every decision
                report = report_for(
                    policy=self.policy,
                    identity_key=self.identity.private_signing_key,
                    node_id=self.node_id,
                    message=request,
                    key_tenant=self._key_tenant,
                    now=int(self.clock()),
                )
                held = [
                    node_pb2.HeldLog(node_id=peer, start=suffix.start, end=suffix.end)
                    for peer, suffix in sorted(self._held_logs.items())
                ]
                account = self._held_account(request.request.tenant)
            with self._lock:  # what the coordinator could know of this node's log
                self._reported[report.head.request_digest] = report.head.count
                while len(self._reported) > MAX_REPORTED:
                    self._reported.pop(next(iter(self._reported)))
            return node_pb2.GetHistoryReportResponse(
                report=report_to_proto(report), held=held, account=account
            )
        except PolicyStateError as exc:
            abort(context, ServiceError(grpc.StatusCode.FAILED_PRECONDITION, exc.code, str(exc)))
        except ServiceError as err:
            abort(context, err)

    def _held_account(self, tenant: str) -> node_pb2.HeldAccount | None:
        """What this node holds of ``tenant``'s coordinator account (called under
        _decide_lock), so the coordinator sends only what was appended since."""
        held = None if self._seen is None else self._seen.held_account(tenant)
        if held is None:
            return None
        return node_pb2.HeldAccount(epoch=held.epoch, end=held.end)

    def ReleaseLease(
        self, request: node_pb2.ReleaseLeaseRequest, context: grpc.ServicerContext
    ) -> node_pb2.ReleaseLeaseResponse:
        if len(request.request_digest) != 32 or not request.request_id:
            abort(context, ServiceError(INVALID, "INVALID_DIGEST", "a request id and digest"))
        with self._decide_lock:
            self.policy.forfeit(request.request_id, bytes(request.request_digest))
        return node_pb2.ReleaseLeaseResponse()

    def ActivatePolicy(
        self, request: node_pb2.ActivatePolicyRequest, context: grpc.ServicerContext
    ) -> node_pb2.ActivatePolicyResponse:
        try:
            state = self.policy.activate_chain(list(request.bundles))
        except PolicyStateError as exc:
            log.warning("policy_refused", code=exc.code, node_id=self.node_id)
            abort(context, ServiceError(grpc.StatusCode.FAILED_PRECONDITION, exc.code, str(exc)))
        log.info("policy_active", number=state.number, node_id=self.node_id)
        return node_pb2.ActivatePolicyResponse(
            active_number=state.number, active_version_id=state.version_id
        )

    def _replayed(self, request_id: str, digest: bytes) -> bytes | None:
        """The share already released for this exact request (an idempotent retry)."""
        previous = self.store.sign_record(request_id)
        if previous is None:
            return None
        if previous.package_digest == digest and previous.signature_share is not None:
            return previous.signature_share
        raise ServiceError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "REQUEST_ALREADY_SIGNED",
            "this request was already signed with other inputs",
        )

    def _consume(
        self,
        request: node_pb2.SignShareRequest,
        digest: bytes,
        expected: bytes | None,
        compute_share: Callable[[bytes], bytes],
        authorized: Authorized,
    ) -> bytes:
        now = int(self.clock())

        def record(session: Session) -> None:
            self.policy.record_authorization(session, authorized.authorization, now)

        try:
            return self.store.sign_with_nonce(
                request_id=request.request_id,
                key_id=request.key_id,
                nonce_id=request.nonce_id,
                package_digest=digest,
                expected_commitments=expected,
                compute_share=compute_share,
                record=record,
            )
        except StoreError as exc:
            if exc.reason == "REQUEST_ALREADY_SIGNED":
                replayed = self._replayed(request.request_id, digest)
                if replayed is not None:
                    return replayed
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION, exc.reason, str(exc)) from None
        except LocalMisuseError as exc:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION, exc.code, str(exc)) from None
        except EncodingError as exc:
            raise ServiceError(grpc.StatusCode.DATA_LOSS, "CORRUPT_POOL_ENTRY", str(exc)) from None
        except PolicyStateError as exc:  # no lease, or a reused request id: nothing released
            raise lease_error(exc) from None

    @staticmethod
    def _request_digest(request: node_pb2.SignShareRequest, body: bytes) -> bytes:
        """Binds a stored share to everything that determined it (idempotent replays)."""
        h = hashlib.sha256(b"custody/node/sign-share/v1")
        for part in (
            request.key_id.encode(),
            request.derivation_path.encode(),
            request.nonce_id.encode(),
            body,
        ):
            h.update(len(part).to_bytes(4, "big") + part)
        return h.digest()

    def _frost_share(self, request: node_pb2.SignShareRequest, loaded: _LoadedKey) -> bytes:
        suite, key, public, epoch = self._frost_parts(loaded)
        try:
            package = SigningPackage.decode(suite, request.signing_package)
            own = package.commitment_of(self.node_id)
        except (EncodingError, LocalMisuseError) as exc:
            raise ServiceError(INVALID, "INVALID_SIGNING_PACKAGE", str(exc)) from None
        digest = self._request_digest(request, request.signing_package)
        derived_key = self._derived(request.key_id, epoch, key, public, request.derivation_path)
        scheme = loaded.scheme
        authorized = self._authorize(
            request,
            loaded,
            suite.serialize_public_key(derived_key.group_public_key),
            [c.identifier for c in package.commitments],
        )
        wanted = authorized.interpretation
        if package.message != wanted.digest or (
            scheme == "frost-bip340" and package.tweak != wanted.taproot_merkle_root
        ):
            raise ServiceError(
                grpc.StatusCode.PERMISSION_DENIED,
                "SIGNING_INPUT_MISMATCH",
                "the signing package is not what the request's payload says to sign",
            )
        nonce_ctx = self._ctx(f"{request.key_id}/{request.nonce_id}", epoch, "nonce")

        def compute_share(sealed_nonces: bytes) -> bytes:
            nonces = SigningNonces.from_bytes(suite, self.sealer.unseal(sealed_nonces, nonce_ctx))
            return sign(suite, package, nonces, derived_key).encode(suite)

        return self._consume(request, digest, own.encode(suite), compute_share, authorized)

    def _ecdsa_share(self, request: node_pb2.SignShareRequest, loaded: _LoadedKey) -> bytes:
        """DKLs23 final step (Protocol 3.6, round 3 values) with a pool presignature.

        The presignature is consumed, its sealed secret erased and the share
        recorded in one transaction (:meth:`NodeStore.sign_with_nonce`)."""
        key_share, epoch = self._ecdsa_parts(loaded)
        if len(request.message_hash) != 32:
            raise ServiceError(INVALID, "INVALID_DIGEST", "ECDSA signs a 32-byte message hash")
        if not request.nonce_id.startswith(PRESIGNATURE_PREFIX):
            raise ServiceError(INVALID, "INVALID_PRESIGNATURE_ID", "not a presignature id")
        digest = self._request_digest(request, request.message_hash)
        tweak = 0
        if request.derivation_path not in ("", "m"):
            try:
                tweak, _ = derivation_tweak(
                    key_share.group_public_key, key_share.chain_code, request.derivation_path
                )
            except InvalidPathError as exc:
                raise ServiceError(INVALID, exc.code, str(exc)) from None
        derived_pk = key_share.group_public_key + SECP256K1.base_mult(tweak)
        signers = [int(x) for x in request.authorization.signing_set]
        authorized = self._authorize(
            request, loaded, SECP256K1.serialize_element(derived_pk), signers
        )
        if request.message_hash != authorized.interpretation.digest:
            raise ServiceError(
                grpc.StatusCode.PERMISSION_DENIED,
                "SIGNING_INPUT_MISMATCH",
                "the hash to sign is not what the request's payload says to sign",
            )
        ctx = self._ctx(f"{request.key_id}/{request.nonce_id}", epoch, "presignature")
        message_hash = bytes(request.message_hash)

        def compute_share(sealed: bytes) -> bytes:
            presignature = Presignature.from_bytes(self.sealer.unseal(sealed, ctx))
            if set(presignature.public.signers) != set(signers):
                raise LocalMisuseError("the presignature was made for another signing set")
            return signature_share(presignature, key_share, message_hash, tweak=tweak).to_bytes()

        return self._consume(request, digest, None, compute_share, authorized)
