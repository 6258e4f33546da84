"""The coordinator's work: key generation, nonce pools, signing with retries.

It holds no secret: it relays sealed envelopes between nodes (reading only
their headers to route them), keeps public key material, and aggregates
signature shares, verifying each result before it is stored.
"""

from __future__ import annotations

import functools
import itertools
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from custody import metrics
from custody._pb.custody.governance.v1 import governance_pb2 as gpb
from custody._pb.custody.node.v1 import node_pb2
from custody.config import ClusterConfig
from custody.coordinator.account import CoordinatorAccount
from custody.coordinator.nodes import RPC_TIMEOUT, NodeClients
from custody.coordinator.relay import Held, ReportRelay, for_receiver, held_by
from custody.coordinator.store import (
    CoordinatorStore,
    KeyRow,
    OperationRow,
    SignatureRequestRow,
    signer_set,
)
from custody.governance.approvals import RequestStatus
from custody.governance.errors import GovernanceRefused
from custody.governance.wiring import Governance
from policy.exchange import HistoryReport
from policy.history import HistoryEntry
from policy.payloads import PayloadError, interpret_request
from policy.request import Approval, InitiatorSignature, SigningRequest
from signer_nodes.grpc_errors import ServiceError, reason_of
from signer_nodes.mpc.bip32 import InvalidPathError
from signer_nodes.mpc.dkls23 import PresignaturePublic, combine, derivation_tweak
from signer_nodes.mpc.dkls23 import SignatureShare as EcdsaSignatureShare
from signer_nodes.mpc.errors import InvalidSignatureShareError, MpcError, SignatureAbortError
from signer_nodes.mpc.frost import (
    SUITES,
    PublicKeyPackage,
    SignatureShare,
    SigningCommitments,
    SigningPackage,
    aggregate,
)
from signer_nodes.mpc.frost.ciphersuite import FROST_SECP256K1, Ciphersuite
from signer_nodes.mpc.hd import derived_packages
from signer_nodes.node.authorization import (
    approval_to_proto,
    entry_to_proto,
    report_from_proto,
    report_to_proto,
    request_from_proto,
    request_to_proto,
)
from signer_nodes.node.service import MAX_NONCES_PER_CALL
from signer_nodes.wire.secure import SealedEnvelope

T = TypeVar("T")
log = structlog.get_logger("coordinator")
INVALID = grpc.StatusCode.INVALID_ARGUMENT
ECDSA = "ecdsa-dkls23"
API_SCHEMES = {
    "eddsa-ed25519": "frost-ed25519",
    "schnorr-bip340": "frost-bip340",
    "ecdsa-secp256k1": ECDSA,
}
# How each scheme's public keys are encoded (ECDSA keys: compressed SEC1, like FROST secp256k1).
KEY_SUITES: dict[str, Ciphersuite] = {**SUITES, ECDSA: FROST_SECP256K1}
FINAL = {"SUCCEEDED", "FAILED"}
MAX_SIGNER_SETS = 10


class NodeCallFailed(Exception):
    """A node did not answer an RPC (down, timed out, or refused)."""

    def __init__(self, node_id: int, error: grpc.RpcError | ServiceError) -> None:
        self.node_id = node_id
        if isinstance(error, ServiceError):  # it answered, with something unusable
            self.code, self.reason = error.code, error.reason
        else:
            self.code = error.code()
            self.reason = reason_of(error) or self.code.name
        super().__init__(f"node {node_id}: {self.reason}")


API_NAMES = {internal: api for api, internal in API_SCHEMES.items()}
# Policy codes that mean "not yet": the request waits for approvers.
WAITING_CODES = frozenset({"APPROVAL_MISSING", "APPROVAL_EXPIRED"})


# Governance states after which a request waiting for approvals can never be signed.
CLOSED_GOVERNANCE_STATES = frozenset({"REJECTED", "EXPIRED", "CANCELLED"})
# A signed entry's wire form, built once: the velocity window's entries go out with
# every request of the tenant.
_wire_entry = functools.lru_cache(maxsize=1 << 16)(entry_to_proto)


def path_string(path: tuple[int, ...]) -> str:
    return "m" + "".join(f"/{i}" for i in path) if path else ""


@dataclass(frozen=True, slots=True)
class SignInput:
    """A tenant's signing request: its API id, the structured request the initiator
    signed (policy.request.SigningRequest) and the initiator's signature."""

    request_id: str
    request: SigningRequest
    initiator_signature: bytes


def _check_request_id(request_id: str) -> None:
    if not 1 <= len(request_id) <= 128 or not all(c.isalnum() or c in "._:-" for c in request_id):
        raise ServiceError(
            INVALID, "INVALID_REQUEST_ID", "request_id must be 1-128 characters [A-Za-z0-9._:-]"
        )


def _wait_for_approvals(row: SignatureRequestRow, status: RequestStatus) -> None:
    """Mark ``row`` PENDING_APPROVAL with what governance says is missing."""
    row.state = "PENDING_APPROVAL"
    row.requirement = status.requirement or ""
    row.error_code = status.code
    row.error_message = status.detail or ""


class _Refused(Exception):
    """Governance refused a new request at registration (``code``, ``message``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class _Reserved:
    """What the intake transaction reserved for a new request's first attempt: FROST
    nonces (``begin_attempt``'s result) or a DKLs23 presignature (or None: none free)."""

    nonces: tuple[dict[int, tuple[str, bytes]], set[int]] | None = None
    presignature: tuple[str, tuple[int, ...], bytes] | None = None
    # The approvals stored when the request was registered, read in that transaction.
    approvals: tuple[Approval, ...] = ()


@dataclass
class _Attempts:
    """What a signing loop learns across attempts: nodes to leave out, named
    culprits, the attempt counter and the error to report if it gives up."""

    attempts: int
    excluded: set[int] = field(default_factory=set)
    culprits: set[int] = field(default_factory=set)
    last_error: tuple[str, str] = ("UNAVAILABLE", "fewer than t signer nodes are reachable")
    # Nodes asked for a history report: each may hold the tenant's lease for the request.
    leased: set[int] = field(default_factory=set)
    # Approvals read with the request's registration, sent with the first attempt (later
    # attempts read them again: more may have arrived).
    known_approvals: tuple[Approval, ...] | None = None
    # Signers that said a trimmed report left out entries they do not hold.
    whole_reports: set[int] = field(default_factory=set)

    @classmethod
    def resuming(cls, row: SignatureRequestRow, first: _Reserved | None) -> _Attempts:
        """The loop's state for ``row``; with ``first`` (the intake's reservation, which
        the row's ``attempts`` already counts) the first iteration uses it."""
        if first is None:
            return cls(row.attempts)
        return cls(row.attempts - 1, known_approvals=first.approvals)

    def candidates(self, config: ClusterConfig) -> list[int]:
        return [n.node_id for n in config.nodes if n.node_id not in self.excluded]

    def node_unreachable(self, exc: NodeCallFailed) -> None:
        self.excluded.add(exc.node_id)
        self.last_error = ("UNAVAILABLE", str(exc))

    @property
    def culprit_list(self) -> str:
        return ",".join(map(str, sorted(self.culprits)))


def in_parallel(
    pool: ThreadPoolExecutor, calls: dict[int, Callable[[], T]]
) -> dict[int, Future[T]]:
    """Start every call on ``pool`` but the last, which runs in this thread (the caller
    waits anyway; that saves a thread hand-off per fan-out, 0.1 to 0.2 ms of a
    two-node fan-out on two cores). Each outcome is a future, in the order of
    ``calls``; an exception of the last call is delivered by its future too."""
    if not calls:
        return {}
    *others, (last_id, last_call) = calls.items()
    futures: dict[int, Future[T]] = {i: pool.submit(fn) for i, fn in others}
    here: Future[T] = Future()
    try:
        here.set_result(last_call())
    except Exception as exc:
        here.set_exception(exc)
    futures[last_id] = here
    return {i: futures[i] for i in calls}


class Coordinator:
    def __init__(
        self,
        config: ClusterConfig,
        store: CoordinatorStore,
        clients: NodeClients,
        governance: Governance,
    ) -> None:
        self.config = config
        self.governance = governance
        self.store = store
        self.clients = clients
        self.pool = ThreadPoolExecutor(
            max_workers=max(8, 2 * len(config.nodes)), thread_name_prefix="coord"
        )
        self.background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="coord-bg")
        self._request_locks: dict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        self._tenant_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._packages: dict[tuple[str, bytes, str], PublicKeyPackage] = {}
        self._keys: dict[str, KeyRow] = {}  # immutable rows, read once (get_key)
        # pool -> entries spent since its level was last read (_level_check_due)
        self._since_level_check: dict[str, int] = {}
        self.relay = ReportRelay()  # the signers' history logs, as last reported
        # the tenants' signatures, as sequences the signers hold
        self.account = CoordinatorAccount(governance.approvals.coordinator_view, self.relay.entries)
        self._stopping = threading.Event()

    def close(self) -> None:
        self._stopping.set()
        self.background.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- sessions ---------------------------------------------------------------

    def _fan_out(self, calls: dict[int, Callable[[], Any]]) -> dict[int, Any]:
        """Call every node in parallel; NodeCallFailed names the first node that failed."""
        futures = in_parallel(self.pool, calls)
        results, failed = {}, None
        for i, f in futures.items():
            try:
                results[i] = f.result()
            except grpc.RpcError as exc:
                failed = failed or NodeCallFailed(i, exc)
        if failed is not None:
            raise failed
        return results

    def run_session(
        self, node_ids: list[int], start: node_pb2.StartSessionRequest
    ) -> dict[int, node_pb2.SessionUpdate]:
        """Start a session on ``node_ids`` and relay sealed envelopes until every node is done."""
        updates = self._fan_out(
            {
                i: functools.partial(self.clients.stub(i).StartSession, start, timeout=RPC_TIMEOUT)
                for i in node_ids
            }
        )
        final: dict[int, node_pb2.SessionUpdate] = {}
        for _ in range(64):  # rounds; every protocol here has a handful
            inbox: dict[int, list[bytes]] = defaultdict(list)
            for node_id, upd in updates.items():
                if upd.state != node_pb2.SESSION_STATE_RUNNING:
                    final[node_id] = upd
                for raw in upd.envelopes:
                    env = SealedEnvelope.from_bytes(raw).envelope
                    targets = (
                        [env.recipient]
                        if env.recipient is not None
                        else [n for n in node_ids if n != env.sender]
                    )
                    for t in targets:
                        inbox[t].append(raw)
            running = [i for i in node_ids if i not in final]
            if not running:
                return final
            deliveries = {i: inbox.get(i, []) for i in running}
            if not any(deliveries.values()):
                raise ServiceError(
                    grpc.StatusCode.ABORTED, "SESSION_STALLED", "protocol session made no progress"
                )
            updates = self._fan_out(
                {
                    i: functools.partial(
                        self.clients.stub(i).Deliver,
                        node_pb2.DeliverRequest(session_id=start.session_id, envelopes=batch),
                        timeout=RPC_TIMEOUT,
                    )
                    for i, batch in deliveries.items()
                    if batch
                }
            )
        raise ServiceError(
            grpc.StatusCode.ABORTED, "SESSION_STALLED", "protocol session did not finish"
        )

    # -- keys -------------------------------------------------------------------

    def create_key(self, tenant: str, api_scheme: str, idempotency_key: str | None) -> OperationRow:
        scheme = API_SCHEMES.get(api_scheme)
        if scheme is None:
            raise ServiceError(INVALID, "UNKNOWN_SCHEME", f"unknown scheme {api_scheme!r}")
        with self.store.transaction() as s:
            if idempotency_key:
                existing = s.execute(
                    select(OperationRow).where(
                        OperationRow.tenant == tenant,
                        OperationRow.idempotency_key == idempotency_key,
                    )
                ).scalar_one_or_none()
                if existing is not None:
                    s.expunge(existing)
                    return existing
            op = OperationRow(
                operation_id=secrets.token_hex(8),
                tenant=tenant,
                idempotency_key=idempotency_key or None,
                scheme=scheme,
            )
            s.add(op)
            s.flush()
            s.expunge(op)
        self.background.submit(self._generate_key, op.operation_id, tenant, scheme)
        return op

    def _finish_operation(self, operation_id: str, **values: Any) -> None:
        with self.store.transaction() as s:
            op = s.get(OperationRow, operation_id)
            assert op is not None
            for k, v in values.items():
                setattr(op, k, v)

    def _generate_key(self, operation_id: str, tenant: str, scheme: str) -> None:
        key_id = f"key_{secrets.token_hex(8)}"
        node_ids = [n.node_id for n in self.config.nodes]
        suite = KEY_SUITES[scheme]
        try:
            start = node_pb2.StartSessionRequest(
                session_id=secrets.token_bytes(32),
                kind=node_pb2.SESSION_KIND_DKG,
                key_id=key_id,
                scheme=scheme,
                parties=node_ids,
                threshold=self.config.threshold,
                tenant=tenant,
            )
            results = self.run_session(node_ids, start)
            aborted = {
                i: u for i, u in results.items() if u.state != node_pb2.SESSION_STATE_FINISHED
            }
            if aborted:
                culprits = sorted({c for u in aborted.values() for c in u.culprits})
                codes = sorted({u.error_code for u in aborted.values()})
                metrics.record_aborts("dkg", culprits)
                raise ServiceError(
                    grpc.StatusCode.ABORTED,
                    "DKG_ABORTED",
                    f"key generation aborted ({', '.join(codes)}); culprits {culprits}",
                )
            packages = {u.public_key_package for u in results.values()}
            if len(packages) != 1:
                raise ServiceError(
                    grpc.StatusCode.ABORTED,
                    "DKG_INCONSISTENT",
                    "nodes disagree on the public key package",
                )
            public = PublicKeyPackage.from_bytes(packages.pop())
            pk = suite.serialize_public_key(public.group_public_key)
            with self.store.transaction() as s:
                s.add(
                    KeyRow(
                        key_id=key_id,
                        tenant=tenant,
                        scheme=scheme,
                        threshold=public.min_signers,
                        participants=len(node_ids),
                        public_key=pk,
                        public_key_package=public.to_bytes(),
                        chain_code=public.chain_code,
                    )
                )
            log.info("key_created", key_id=key_id, tenant=tenant, scheme=scheme)
            self._finish_operation(operation_id, stage="pools")

            def progress(done: int, total: int) -> None:
                self._finish_operation(operation_id, progress_done=done, progress_total=total)

            self.fill_pools(key_id, node_ids, progress=progress)
            self._finish_operation(operation_id, state="DONE", key_id=key_id)
        except ServiceError as err:
            log.warning("key_generation_failed", operation_id=operation_id, reason=err.reason)
            self._finish_operation(
                operation_id, state="FAILED", error_code=err.reason, error_message=err.message
            )
        except NodeCallFailed as exc:
            self._finish_operation(
                operation_id,
                state="FAILED",
                error_code="NODE_UNAVAILABLE",
                error_message=str(exc),
            )
        except Exception as exc:  # keep the operation from hanging forever; log the type only
            log.error("key_generation_crashed", operation_id=operation_id, error=type(exc).__name__)
            self._finish_operation(
                operation_id, state="FAILED", error_code="INTERNAL", error_message="internal error"
            )

    def fill_pools(
        self,
        key_id: str,
        node_ids: Iterable[int],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Bring the key's pools up to target: FROST nonces per node, or DKLs23
        presignatures per preferred signer set that lies within ``node_ids``.
        ``progress(done, total)`` is called as entries are prepared."""
        if self._scheme_of(key_id) == ECDSA:
            self.fill_presignatures(key_id, set(node_ids), progress)
            return
        target = self.config.nonce_pool_target
        node_ids = list(node_ids)
        for done, node_id in enumerate(node_ids):
            if progress is not None:
                progress(done, len(node_ids))
            missing = target - self.store.pool_level(key_id, node_id)
            while missing > 0:  # in batches a node accepts (PrepareNonces' limit)
                count = min(missing, MAX_NONCES_PER_CALL)
                try:
                    resp = self.clients.stub(node_id).PrepareNonces(
                        node_pb2.PrepareNoncesRequest(key_id=key_id, count=count),
                        timeout=RPC_TIMEOUT,
                    )
                except grpc.RpcError as exc:
                    log.warning(
                        "pool_refill_failed",
                        key_id=key_id,
                        node_id=node_id,
                        reason=reason_of(exc) or exc.code().name,
                    )
                    break
                self.store.add_nonces(
                    key_id, node_id, [(n.nonce_id, bytes(n.commitments)) for n in resp.nonces]
                )
                missing -= count
            metrics.POOL_LEVEL.labels(key_id, "nonce", f"node-{node_id}").set(
                self.store.pool_level(key_id, node_id)
            )

    def get_key(self, tenant: str, key_id: str) -> KeyRow:
        """A key of ``tenant``. Key rows never change once written (a refresh keeps the
        public key; nothing deletes them), so each is read from the database once."""
        row = self._keys.get(key_id)
        if row is None:
            with self.store.transaction() as s:
                row = s.get(KeyRow, key_id)
                if row is not None:
                    s.expunge(row)
                    self._keys[key_id] = row
        if row is None or row.tenant != tenant:  # another tenant's key does not exist for you
            raise ServiceError(grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND", f"no key {key_id}")
        return row

    def list_keys(self, tenant: str) -> list[KeyRow]:
        with self.store.transaction() as s:
            rows = list(
                s.execute(
                    select(KeyRow).where(KeyRow.tenant == tenant).order_by(KeyRow.created_at)
                ).scalars()
            )
            for r in rows:
                s.expunge(r)
            return rows

    def derive(self, tenant: str, key_id: str, path: str) -> tuple[bytes, bytes]:
        key = self.get_key(tenant, key_id)
        try:
            public = self._public_package(key, path)
        except InvalidPathError as exc:
            raise ServiceError(INVALID, exc.code, str(exc)) from None
        return KEY_SUITES[key.scheme].serialize_public_key(
            public.group_public_key
        ), public.chain_code

    def get_operation(self, tenant: str, operation_id: str) -> OperationRow:
        with self.store.transaction() as s:
            op = s.get(OperationRow, operation_id)
            if op is None or op.tenant != tenant:
                raise ServiceError(
                    grpc.StatusCode.NOT_FOUND, "OPERATION_NOT_FOUND", f"no operation {operation_id}"
                )
            s.expunge(op)
            return op

    # -- signing ----------------------------------------------------------------

    def _tenant_turn(self, tenant: str) -> threading.Lock:
        """Held from asking the signers' reports to collecting their shares: nodes report
        and sign for one request of a tenant at a time (the tenant's lease,
        policy/exchange.py), so the tenant's signings take turns here instead of meeting
        HISTORY_LEASE_BUSY at the nodes."""
        with self._locks_guard:
            return self._tenant_locks[tenant]

    def _lock_for(self, tenant: str, request_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._request_locks[(tenant, request_id)]

    def request_signature(self, tenant: str, inp: SignInput) -> SignatureRequestRow:
        """Accept a signed request (idempotent on request_id), pre-evaluate it under the
        active policy, then sign it now or wait for approvals (PENDING_APPROVAL)."""
        _check_request_id(inp.request_id)
        with self._lock_for(tenant, inp.request_id):  # one submission of an id at a time
            with metrics.phase("intake"):
                row, key, stored = self._intake(tenant, inp)
            if not stored:  # new: store, register and reserve in one commit
                return self._accept(row, key, inp.request)
            if row.state in FINAL:
                return row
            return self._decide_and_sign(row, key)

    def _intake(self, tenant: str, inp: SignInput) -> tuple[SignatureRequestRow, KeyRow, bool]:
        """Validate the request and find it stored (request_id is the idempotency key,
        AIP-155: ``True``), or build its row, not stored yet (``False``: :meth:`_accept`
        stores it). Called under the request's lock."""
        req = inp.request
        if req.tenant != tenant or req.request_id != f"{tenant}:{inp.request_id}":
            raise ServiceError(
                INVALID,
                "REQUEST_MISMATCH",
                "the signed request must name the caller's tenant and '<tenant>:<request_id>'",
            )
        key = self.get_key(tenant, req.key_id)
        path = path_string(req.derivation_path)
        if path and key.scheme == "frost-ed25519":
            raise ServiceError(
                INVALID, "BIP32_INVALID_PATH", "BIP32 derivation is defined for secp256k1 keys only"
            )
        signer_key = KEY_SUITES[key.scheme].serialize_public_key(
            self._public_package(key, path).group_public_key
        )
        try:
            found = interpret_request(req, key_scheme=API_NAMES[key.scheme], signer_key=signer_key)
        except PayloadError as exc:
            raise ServiceError(INVALID, exc.code.value, str(exc)) from None
        encoded = request_to_proto(req).SerializeToString(deterministic=True)
        stored = self.store.find_request(tenant, inp.request_id)
        if stored is not None:
            if (stored.signing_request, stored.initiator_signature) != (
                encoded,
                inp.initiator_signature,
            ):
                raise ServiceError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    "REQUEST_ID_REUSED",
                    "request_id already used with different parameters",
                )
            return stored, key, True
        new = SignatureRequestRow(
            tenant=tenant,
            request_id=inp.request_id,
            key_id=req.key_id,
            path=path,
            payload_kind=req.request_type.value,
            payload=req.payload,
            signing_request=encoded,
            initiator_signature=inp.initiator_signature,
            request_digest=req.digest(),
            signed_digest=found.digest,
            taproot_merkle_root=found.taproot_merkle_root,
            state="PENDING",
            attempts=0,
        )
        return new, key, False

    def _accept(
        self, row: SignatureRequestRow, key: KeyRow, req: SigningRequest
    ) -> SignatureRequestRow:
        """A new request in one transaction: store it, register it with governance (the
        initiator's checks, the policy's pre-evaluation, their audit records) and, if it
        may be signed now, reserve its first attempt's nonces or presignature. Then sign
        it, or leave it waiting for approvals, or failed with the policy's reason. A
        refused registration rolls everything back and the request is stored failed."""
        first: _Reserved | None = None
        try:
            with self.store.transaction() as s:
                with metrics.phase("governance"):
                    status = self._register(req, row, s)
                if status.code is None:
                    with metrics.phase("reserve"):
                        first = self._reserve_first(s, row, key, status.approvals)
                elif status.code in WAITING_CODES:
                    _wait_for_approvals(row, status)
                else:
                    row.state = "FAILED"
                    row.error_code = status.code
                    row.error_message = status.detail or status.code
                # one INSERT with the state reached (the id is new: _intake)
                self.store.add_request(row, session=s)
        except _Refused as refused:
            return self._store_failed(row, refused.code, refused.message)
        if first is not None:
            return self._sign(row, key, first)
        if row.state == "FAILED":
            log.info("signature_refused", request_id=row.request_id, code=row.error_code)
        return row

    def _register(
        self, req: SigningRequest, row: SignatureRequestRow, s: Session | None = None
    ) -> RequestStatus:
        """Governance registration (in transaction ``s`` if given: the intake's); a
        refusal raises :class:`_Refused` (``s`` rolls back) and nothing else is caught."""
        try:
            signature = InitiatorSignature(
                initiator=req.initiator, signature=row.initiator_signature
            )
            return self.governance.approvals.register(req, signature, session=s)
        except ValueError as exc:
            raise _Refused("INITIATOR_SIGNATURE_INVALID", str(exc)) from None
        except GovernanceRefused as exc:
            raise _Refused(exc.code, str(exc)) from None

    def _reserve_first(
        self, s: Session, row: SignatureRequestRow, key: KeyRow, approvals: tuple[Approval, ...]
    ) -> _Reserved:
        """The first attempt's reservation, in the intake transaction ``s``."""
        candidates = _Attempts(0).candidates(self.config)
        if key.scheme == ECDSA:
            presignature = self.store.begin_presignature_attempt(
                row.tenant, row.request_id, row.key_id, candidates, 1, session=s, request=row
            )
            return _Reserved(presignature=presignature, approvals=approvals)
        needed = self._public_package(key, row.path).min_signers
        nonces = self.store.begin_attempt(
            row.tenant, row.request_id, row.key_id, candidates, needed, 1, session=s, request=row
        )
        return _Reserved(nonces=nonces, approvals=approvals)

    def _store_failed(
        self, row: SignatureRequestRow, code: str, message: str
    ) -> SignatureRequestRow:
        """Store a new request that governance refused (nothing else was written)."""
        log.info("signature_refused", request_id=row.request_id, code=code)
        row.state, row.error_code, row.error_message = "FAILED", code, message
        row.attempts = 0
        with self.store.transaction() as s:
            self.store.add_request(row, session=s)
        return row

    def _decide_and_sign(self, row: SignatureRequestRow, key: KeyRow) -> SignatureRequestRow:
        """Register the request with governance (checks the initiator), then sign it
        if the policy allows it with the approvals it has, wait if approvals are
        missing, or fail it with the policy's reason."""
        req = request_from_proto(gpb.SigningRequest.FromString(row.signing_request))
        try:
            with metrics.phase("governance"):
                status = self._register(req, row)
        except _Refused as refused:
            return self._fail(row, refused.code, refused.message)
        if status.code is None:
            return self._sign(row, key)
        if status.code in WAITING_CODES:
            with self.store.transaction() as s:
                current = s.get(SignatureRequestRow, (row.tenant, row.request_id))
                assert current is not None
                _wait_for_approvals(current, status)
                s.flush()
                s.expunge(current)
                return current
        return self._fail(row, status.code, status.detail or status.code)

    def _fail(self, row: SignatureRequestRow, code: str, message: str) -> SignatureRequestRow:
        log.info("signature_refused", request_id=row.request_id, code=code)
        return self.store.finish_request(
            row.tenant, row.request_id, state="FAILED", error_code=code, error_message=message
        )

    def on_request_changed(self, status: Any) -> None:
        """Governance callback: an approval arrived (sign if the request is now allowed),
        or the request was rejected, cancelled by its initiator or expired (it fails with
        that reason: it can never be signed)."""
        tenant, _, request_id = status.request.request_id.partition(":")
        try:
            row = self.get_request(tenant, request_id)
        except ServiceError:
            return
        if row.state != "PENDING_APPROVAL":
            return
        if status.code is None:
            self.background.submit(self._resume_one, row)
            return
        if status.state not in CLOSED_GOVERNANCE_STATES:
            return  # still waiting (for approvals, or for a block to lift)
        code = str(getattr(status.code, "value", status.code))
        with self._lock_for(tenant, request_id):
            if self.get_request(tenant, request_id).state == "PENDING_APPROVAL":
                self.store.finish_request(
                    tenant,
                    request_id,
                    state="FAILED",
                    error_code=code,
                    error_message=f"the request is {str(status.state).lower()}: {status.detail}",
                )

    def get_request(self, tenant: str, request_id: str) -> SignatureRequestRow:
        with self.store.transaction() as s:
            row = s.get(SignatureRequestRow, (tenant, request_id))
            if row is None:
                raise ServiceError(
                    grpc.StatusCode.NOT_FOUND, "REQUEST_NOT_FOUND", f"no request {request_id}"
                )
            s.expunge(row)
            return row

    @staticmethod
    def _poll(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float, cap: float) -> T:
        """Re-read until ``done`` or ``timeout`` (at most ``cap``) seconds have passed."""
        deadline = time.monotonic() + max(0.0, min(timeout, cap))
        while True:
            value = fetch()
            if done(value) or time.monotonic() >= deadline:
                return value
            time.sleep(0.05)

    def wait_request(self, tenant: str, request_id: str, timeout: float) -> SignatureRequestRow:
        return self._poll(
            lambda: self.get_request(tenant, request_id), lambda r: r.state in FINAL, timeout, 60.0
        )

    def wait_operation(self, tenant: str, operation_id: str, timeout: float) -> OperationRow:
        return self._poll(
            lambda: self.get_operation(tenant, operation_id),
            lambda op: op.state != "RUNNING",
            timeout,
            120.0,
        )

    def _public_package(self, key: KeyRow, path: str) -> PublicKeyPackage:
        """The (derived) public key package; parsed once per key and path."""
        cache_key = (key.key_id, key.public_key_package, path)
        cached = self._packages.get(cache_key)
        if cached is None:
            _, cached = derived_packages(
                None, PublicKeyPackage.from_bytes(key.public_key_package), path
            )
            if len(self._packages) > 4096:
                self._packages.clear()
            self._packages[cache_key] = cached
        return cached

    # -- presignatures (DKLs23) ---------------------------------------------------

    def _scheme_of(self, key_id: str) -> str:
        with self.store.transaction() as s:
            row = s.get(KeyRow, key_id)
            return row.scheme if row is not None else ""

    def signer_sets(self, threshold: int) -> list[tuple[int, ...]]:
        """The signer sets whose presignature pools are kept warm: every t-subset
        of the nodes, up to MAX_SIGNER_SETS (a request with a node down then
        still finds a warm set)."""
        ids = sorted(n.node_id for n in self.config.nodes)
        return list(itertools.islice(itertools.combinations(ids, threshold), MAX_SIGNER_SETS))

    def presign(self, key_id: str, signers: tuple[int, ...]) -> tuple[str, bytes]:
        """Run one DKLs23 presign session among ``signers`` (the message-independent
        rounds of Protocol 3.6) and record the presignature's public part.
        Raises NodeCallFailed (a node did not answer) or ServiceError (aborted)."""
        session_id = secrets.token_bytes(32)
        start = node_pb2.StartSessionRequest(
            session_id=session_id,
            kind=node_pb2.SESSION_KIND_PRESIGN,
            key_id=key_id,
            scheme=ECDSA,
            parties=list(signers),
        )
        results = self.run_session(list(signers), start)
        aborted = [u for u in results.values() if u.state != node_pb2.SESSION_STATE_FINISHED]
        if aborted:
            culprits = sorted({c for u in aborted for c in u.culprits})
            codes = sorted({u.error_code for u in aborted})
            log.warning("presign_aborted", key_id=key_id, codes=codes, culprits=culprits)
            metrics.record_aborts("dkls23-presign", culprits)
            raise ServiceError(
                grpc.StatusCode.ABORTED,
                "PRESIGN_ABORTED",
                f"presigning aborted ({', '.join(codes)}); culprits {culprits}",
            )
        publics = {u.presignature_public for u in results.values()}
        if len(publics) != 1:
            raise ServiceError(
                grpc.StatusCode.ABORTED, "PRESIGN_INCONSISTENT", "signers disagree on R"
            )
        public = publics.pop()
        presignature_id = "ps_" + session_id.hex()
        self.store.add_presignature(presignature_id, key_id, signer_set(signers), public)
        metrics.POOL_LEVEL.labels(key_id, "presignature", signer_set(signers)).inc()
        return presignature_id, public

    def fill_presignatures(
        self,
        key_id: str,
        reachable: set[int],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        key = self._key_row(key_id)
        levels = self.store.presignature_levels(key_id)
        target = self.config.presignature_pool_target
        work = [
            (signers, target - levels.get(signer_set(signers), 0))
            for signers in self.signer_sets(key.threshold)
            if set(signers) <= reachable
        ]
        total, done = sum(max(0, m) for _, m in work), 0
        for signers, missing in work:
            for _ in range(missing):
                if progress is not None:
                    progress(done, total)
                try:
                    self.presign(key_id, signers)
                except (NodeCallFailed, ServiceError) as exc:
                    log.warning("presignature_refill_failed", key_id=key_id, error=str(exc))
                    break
                done += 1

    def _key_row(self, key_id: str) -> KeyRow:
        with self.store.transaction() as s:
            row = s.get(KeyRow, key_id)
            if row is None:
                raise ServiceError(grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND", f"no key {key_id}")
            s.expunge(row)
            return row

    # -- signing ----------------------------------------------------------------

    def _authorizations(
        self, row: SignatureRequestRow, signers: list[int] | tuple[int, ...], st: _Attempts
    ) -> tuple[dict[int, node_pb2.Authorization], SigningRequest]:
        """What each signer checks (policy/authorize.py): the signed request, the
        approvals, the active policy version, the other signers' signed history
        reports (policy.exchange) and the coordinator's account of the window.
        Raises NodeCallFailed if a signer does not report. Every signer asked may hold
        the tenant's lease afterwards (``st.leased``, handed back when it will not sign)."""
        st.leased.update(signers)
        proto_request = gpb.SigningRequest.FromString(row.signing_request)
        req = request_from_proto(proto_request)
        reports, whole, held, accounts = self._reports(row, proto_request, signers)
        for i in st.whole_reports:
            held[i], accounts[i] = {}, None
        approvals = self.governance.approvals
        state = approvals.chain.active()
        window = state.policy.document.max_velocity_window
        # The coordinator's account (custody/coordinator/account.py): what it recorded,
        # plus signatures the signers report that it has not recorded yet (in flight on
        # another thread when it asked); each signer gets what it does not hold yet.
        after = int(time.time()) - window - 60
        parts = {i: self.account.part(req.tenant, accounts[i], after) for i in signers}
        known, st.known_approvals = st.known_approvals, None
        if known is None:
            known = approvals.approvals_for(req.tenant, req.request_id)
        stored = [approval_to_proto(a) for a in known]
        return {
            i: node_pb2.Authorization(
                request=proto_request,
                initiator_signature=row.initiator_signature,
                approvals=stored,
                policy_version_id=state.version_id,
                reports=[
                    report_to_proto(for_receiver(reports[j], whole[j], held[i]))
                    for j in signers
                    if j != i
                ],
                coordinator_view=[_wire_entry(e) for e in parts[i][1]],
                account=node_pb2.AccountPart(
                    epoch=parts[i][0].epoch, start=parts[i][0].start, end=parts[i][0].end
                ),
                signing_set=list(signers),
            )
            for i in signers
        }, req

    def _reports(
        self,
        row: SignatureRequestRow,
        proto_request: gpb.SigningRequest,
        signers: list[int] | tuple[int, ...],
    ) -> tuple[
        dict[int, HistoryReport],
        dict[int, tuple[HistoryEntry, ...]],
        dict[int, dict[int, Held]],
        dict[int, node_pb2.HeldAccount | None],
    ]:
        """Every signer's report for ``row`` (policy.exchange step 1), asked without the
        entries the coordinator holds (custody/coordinator/relay.py), made whole again;
        what each signer holds of the others' logs and of the tenant's account
        (custody/coordinator/account.py). A report whose left-out part cannot be put back
        together is asked for again in full."""

        def ask(i: int, held_end: int) -> node_pb2.GetHistoryReportResponse:
            response: node_pb2.GetHistoryReportResponse = self.clients.stub(i).GetHistoryReport(
                node_pb2.GetHistoryReportRequest(
                    request_digest=row.request_digest,
                    request=proto_request,
                    initiator_signature=row.initiator_signature,
                    held_end=held_end,
                ),
                timeout=RPC_TIMEOUT,
            )
            return response

        responses = self._fan_out(
            {i: functools.partial(ask, i, self.relay.held_end(i)) for i in signers}
        )
        reports: dict[int, HistoryReport] = {}
        entries: dict[int, tuple[HistoryEntry, ...]] = {}
        for i in signers:
            try:
                report = report_from_proto(responses[i].report)
                suffix = self.relay.absorb(i, report)
                if suffix is None and report.start is not None:
                    responses[i] = ask(i, 0)
                    report = report_from_proto(responses[i].report)
                    suffix = self.relay.absorb(i, report)
            except grpc.RpcError as exc:
                raise NodeCallFailed(i, exc) from None
            except ServiceError as exc:  # a malformed report: this node is left out
                self.relay.forget(i)
                raise NodeCallFailed(i, exc) from None
            # What is new to the relay joins the account now, before another signer can
            # fail this attempt: the relay will not send these entries again.
            self.account.note(report.entries)
            # A report that does not chain is passed on as it came: the receivers judge it
            # (and name the node).
            reports[i] = report
            entries[i] = report.entries if suffix is None else suffix.entries
        accounts = {
            i: responses[i].account if responses[i].HasField("account") else None for i in signers
        }
        return reports, entries, {i: held_by(responses[i]) for i in signers}, accounts

    def push_policy(self, _bundle: bytes | None = None) -> None:
        """Bring every reachable node to the coordinator's active policy version: ask
        each for its active number and send the signed bundles after it. Nodes verify
        each bundle against their own chain and officer set (policy_state.py)."""
        for n in self.config.nodes:
            stub = self.clients.stub(n.node_id)
            try:
                have = stub.ActivatePolicy(node_pb2.ActivatePolicyRequest(), timeout=RPC_TIMEOUT)
                bundles = self.governance.chain.bundles_since(have.active_number)
                if bundles:
                    done = stub.ActivatePolicy(
                        node_pb2.ActivatePolicyRequest(bundles=bundles), timeout=RPC_TIMEOUT
                    )
                    log.info("policy_pushed", node_id=n.node_id, number=done.active_number)
            except grpc.RpcError as exc:
                log.warning(
                    "policy_push_failed",
                    node_id=n.node_id,
                    reason=reason_of(exc) or exc.code().name,
                )

    def _record_signed(self, entry: HistoryEntry, *, session: Session) -> None:
        """Record a signature in the governance history, in the caller's transaction."""
        try:
            self.governance.approvals.record_signed(entry, session=session)
        except GovernanceRefused as exc:  # pragma: no cover - ids are checked at intake
            log.error("history_record_failed", request_id=entry.request_id, code=exc.code)

    def _node_refused(
        self, row: SignatureRequestRow, node_id: int, exc: grpc.RpcError
    ) -> tuple[str, str]:
        """Classify a failed SignShare: (error code, message) for the request."""
        reason = reason_of(exc) or exc.code().name
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            return "UNAVAILABLE", f"node {node_id}: {reason}"
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
            if reason == "POLICY_VERSION_MISMATCH":  # a lagging node: catch it up for the retry
                self.background.submit(self.push_policy)
            self.governance.approvals.record_refusal(
                row.tenant, f"{row.tenant}:{row.request_id}", reason, node_id=node_id
            )
            return reason, f"node {node_id} refused: {exc.details()}"
        return "NODE_REFUSED", f"node {node_id}: {reason}"

    def _sign(
        self, row: SignatureRequestRow, key: KeyRow, first: _Reserved | None = None
    ) -> SignatureRequestRow:
        """Sign an allowed request; ``first``: what the intake transaction reserved for
        attempt 1 (the row's ``attempts`` already counts it)."""
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=row.request_id, key_id=key.key_id):
            sign = self._sign_ecdsa if key.scheme == ECDSA else self._sign_frost
            done = sign(row, key, first)
        metrics.SIGNATURES.labels(key.scheme, done.state).inc()
        metrics.SIGNING_LATENCY.labels(key.scheme).observe(time.perf_counter() - started)
        return done

    def start_health_monitor(self, interval: float = 5.0) -> None:
        """Probe every node with GetInfo and publish custody_node_up."""

        def loop() -> None:
            while not self._stopping.wait(interval):
                for n in self.config.nodes:
                    try:
                        self.clients.stub(n.node_id).GetInfo(node_pb2.GetInfoRequest(), timeout=2.0)
                        metrics.NODE_UP.labels(n.name).set(1)
                    except grpc.RpcError:
                        metrics.NODE_UP.labels(n.name).set(0)

        threading.Thread(target=loop, name="node-health", daemon=True).start()

    def _signing_round(
        self,
        row: SignatureRequestRow,
        signers: list[int] | tuple[int, ...],
        st: _Attempts,
        decode: Callable[[bytes], T],
        nonce_ids: dict[int, str],
        **scheme_fields: bytes,
    ) -> tuple[dict[int, T], SigningRequest] | None:
        """One attempt's exchange with ``signers``, under the tenant's turn: their history
        reports (policy.exchange), then ``SignShare`` on each with its authorization, its
        pool entry ``nonce_ids[i]`` and the scheme's fields (the FROST signing package or
        the ECDSA message hash). The shares that decoded, and the signed request; None if
        a signer did not report (``st`` excludes it)."""
        with self._tenant_turn(row.tenant):
            try:
                with metrics.phase("reports"):
                    auths, req = self._authorizations(row, signers, st)
            except NodeCallFailed as exc:
                st.node_unreachable(exc)
                return None
            node_request_id = f"{row.tenant}/{row.request_id}/{st.attempts}"
            requests = {
                i: node_pb2.SignShareRequest(
                    request_id=node_request_id,
                    key_id=row.key_id,
                    nonce_id=nonce_ids[i],
                    derivation_path=row.path,
                    authorization=auths[i],
                    **scheme_fields,
                )
                for i in signers
            }
            with metrics.phase("shares"):
                return self._collect_shares(row, requests, decode, st), req

    def _collect_shares(
        self,
        row: SignatureRequestRow,
        requests: dict[int, node_pb2.SignShareRequest],
        decode: Callable[[bytes], T],
        state: _Attempts,
    ) -> dict[int, T]:
        """SignShare on every signer in parallel; a node that fails is excluded (and,
        if its share does not even decode, named as a culprit)."""
        futures = in_parallel(
            self.pool, {i: functools.partial(self._sign_share, i, r) for i, r in requests.items()}
        )
        shares: dict[int, T] = {}
        for i, fut in futures.items():
            try:
                shares[i] = decode(fut.result())
            except grpc.RpcError as exc:
                if reason_of(exc) == "HISTORY_REPORT_INCOMPLETE":
                    # It lost what it held of the others' logs (a restart): whole reports
                    # next time, same signers.
                    state.whole_reports.add(i)
                else:
                    state.excluded.add(i)
                state.last_error = self._node_refused(row, i, exc)
                log.warning(
                    "node_failed_to_sign",
                    request_id=row.request_id,
                    node_id=i,
                    reason=state.last_error[0],
                )
            except MpcError:
                state.excluded.add(i)
                state.culprits.add(i)
        return shares

    def _release_leases(self, row: SignatureRequestRow, nodes: Iterable[int]) -> None:
        """Hand back the tenant's lease at nodes that reported for this request but will
        not sign it (policy/exchange.py, "Leases"), so the tenant's next request does not
        wait for the leases to run out. Best effort: a node that is down lets it lapse."""
        digest = row.request_digest
        calls: dict[int, Callable[[], Any]] = {
            i: functools.partial(
                self.clients.stub(i).ReleaseLease,
                node_pb2.ReleaseLeaseRequest(
                    request_id=f"{row.tenant}:{row.request_id}", request_digest=digest
                ),
                timeout=RPC_TIMEOUT,
            )
            for i in sorted(nodes)
        }
        if calls:
            try:
                self._fan_out(calls)
            except NodeCallFailed as exc:
                log.warning("lease_release_failed", node_id=exc.node_id)

    def _give_up(self, row: SignatureRequestRow, state: _Attempts) -> SignatureRequestRow:
        self._release_leases(row, state.leased)
        return self.store.finish_request(
            row.tenant,
            row.request_id,
            state="FAILED",
            error_code=state.last_error[0],
            error_message=state.last_error[1],
            culprits=state.culprit_list,
            attempts=state.attempts,
        )

    def _succeed(
        self,
        row: SignatureRequestRow,
        req: SigningRequest,
        state: _Attempts,
        signers: list[int],
        **result: object,
    ) -> SignatureRequestRow:
        log.info("signature_created", request_id=row.request_id, key_id=row.key_id, signers=signers)
        self._release_leases(row, state.leased - set(signers))
        entry = HistoryEntry.for_request(req, int(time.time()))
        with (
            metrics.phase("record"),
            self.store.transaction() as s,
        ):  # the outcome and the signed history: one commit
            self._record_signed(entry, session=s)
            done = self.store.finish_request(
                row.tenant,
                row.request_id,
                session=s,
                state="SUCCEEDED",
                culprits=state.culprit_list,
                attempts=state.attempts,
                **result,
            )
        self.account.note([entry], committed=True)  # joins the account the signers hold
        return done

    def _sign_ecdsa(
        self, row: SignatureRequestRow, key: KeyRow, first: _Reserved | None
    ) -> SignatureRequestRow:
        """DKLs23: a pool presignature (or one made now) whose signers are all
        reachable, the final step on each signer, combine and verify (step 10).
        A failed signer is excluded and another presignature used; a combined
        signature that does not verify is abort-only in DKLs23 (no culprit), so
        that attempt's signer set is dropped and another one tried."""
        root = PublicKeyPackage.from_bytes(key.public_key_package)
        tweak = 0
        if row.path not in ("", "m"):
            tweak, _ = derivation_tweak(root.group_public_key, root.chain_code, row.path)
        digest = row.signed_digest
        derived_pk = KEY_SUITES[key.scheme].serialize_public_key(
            self._public_package(key, row.path).group_public_key
        )
        bad_sets: set[tuple[int, ...]] = set()
        st = _Attempts.resuming(row, first)
        while True:
            candidates = st.candidates(self.config)
            if len(candidates) < key.threshold or st.attempts >= len(self.config.nodes) + 3:
                return self._give_up(row, st)
            st.attempts += 1
            if first is not None:
                reserved, first = first.presignature, None
            else:
                with metrics.phase("reserve"):
                    reserved = self.store.begin_presignature_attempt(
                        row.tenant, row.request_id, row.key_id, candidates, st.attempts
                    )
            if reserved is not None and reserved[1] in bad_sets:
                continue
            if reserved is None:
                fresh = next(
                    (
                        c
                        for c in itertools.combinations(candidates, key.threshold)
                        if c not in bad_sets
                    ),
                    None,
                )
                if fresh is None:
                    return self._give_up(row, st)
                try:
                    self.presign(row.key_id, fresh)
                except NodeCallFailed as exc:
                    st.node_unreachable(exc)
                    continue
                except ServiceError as err:
                    st.last_error = (err.reason, err.message)
                    bad_sets.add(fresh)
                    continue
                st.attempts -= 1  # presigning on demand is part of this attempt
                continue
            presignature_id, signers, public_bytes = reserved
            public = PresignaturePublic.from_bytes(public_bytes)
            exchanged = self._signing_round(
                row,
                signers,
                st,
                EcdsaSignatureShare.from_bytes,
                dict.fromkeys(signers, presignature_id),
                message_hash=digest,
            )
            if exchanged is None:
                continue
            shares, req = exchanged
            if len(shares) < len(signers):
                continue
            try:
                with metrics.phase("combine"):
                    signature = combine(public, shares, digest, tweak=tweak)
            except MpcError as exc:
                bad_sets.add(signers)
                if not isinstance(exc, SignatureAbortError):
                    st.culprits |= getattr(exc, "culprits", set())
                st.last_error = (
                    "SIGNATURE_ABORTED",
                    f"signers {list(signers)} produced no valid signature ({exc.code})",
                )
                log.warning(
                    "ecdsa_signature_aborted", request_id=row.request_id, signers=list(signers)
                )
                metrics.record_aborts("dkls23-sign", sorted(getattr(exc, "culprits", ())))
                continue
            done = self._succeed(
                row,
                req,
                st,
                list(signers),
                signature=signature.to_bytes(),
                public_key=derived_pk,
                recovery_id=signature.recovery_id,
            )
            with metrics.phase("refill"):
                self._maybe_refill_presignatures(row.key_id, key.threshold, signers)
            return done

    def _maybe_refill_presignatures(
        self, key_id: str, threshold: int, signers: tuple[int, ...]
    ) -> None:
        held_by = signer_set(signers)
        if not self._level_check_due([f"{key_id}/{held_by}"], self.config.presignature_pool_target):
            return
        level = self.store.presignature_levels(key_id).get(held_by, 0)
        metrics.POOL_LEVEL.labels(key_id, "presignature", held_by).set(level)
        if level < max(1, self.config.presignature_pool_target // 2):
            self.background.submit(self.fill_presignatures, key_id, set(signers))

    def _sign_frost(
        self, row: SignatureRequestRow, key: KeyRow, first: _Reserved | None
    ) -> SignatureRequestRow:
        suite: Ciphersuite = SUITES[key.scheme]
        derived_public = self._public_package(key, row.path)
        needed = derived_public.min_signers
        st = _Attempts.resuming(row, first)
        while True:
            candidates = st.candidates(self.config)
            if len(candidates) < needed or st.attempts >= len(self.config.nodes) + 2:
                return self._give_up(row, st)
            st.attempts += 1
            if first is not None and first.nonces is not None:
                (chosen, empty), first = first.nonces, None
            else:
                with metrics.phase("reserve"):
                    chosen, empty = self.store.begin_attempt(
                        row.tenant, row.request_id, row.key_id, candidates, needed, st.attempts
                    )
            if len(chosen) < needed:
                # Empty pools: refill them now (round one on demand), then try again.
                self.fill_pools(row.key_id, empty)
                chosen, empty = self.store.begin_attempt(
                    row.tenant, row.request_id, row.key_id, candidates, needed, st.attempts
                )
                st.excluded |= empty
                if len(chosen) < needed:
                    continue
            signers = sorted(chosen)
            commitments = tuple(SigningCommitments.decode(suite, chosen[i][1]) for i in signers)
            tweak = row.taproot_merkle_root if key.scheme == "frost-bip340" else None
            package = SigningPackage(commitments, row.signed_digest, tweak)
            encoded = package.encode(suite)
            exchanged = self._signing_round(
                row,
                signers,
                st,
                functools.partial(SignatureShare.decode, suite),
                {i: chosen[i][0] for i in signers},
                signing_package=encoded,
            )
            if exchanged is None:
                continue
            shares, req = exchanged
            if len(shares) < len(signers):
                continue
            try:
                with metrics.phase("combine"):
                    signature = aggregate(suite, package, list(shares.values()), derived_public)
            except InvalidSignatureShareError as exc:
                st.culprits |= exc.culprits
                st.excluded |= exc.culprits
                st.last_error = (
                    "INVALID_SIGNATURE_SHARE",
                    f"nodes {sorted(exc.culprits)} sent invalid shares",
                )
                log.warning(
                    "invalid_signature_shares",
                    request_id=row.request_id,
                    culprits=sorted(exc.culprits),
                )
                metrics.record_aborts("frost-sign", sorted(exc.culprits))
                continue
            verifying_key = suite.tweak_public_key(derived_public.group_public_key, tweak)
            done = self._succeed(
                row,
                req,
                st,
                signers,
                signature=signature,
                public_key=suite.serialize_public_key(verifying_key),
                recovery_id=-1,
            )
            with metrics.phase("refill"):
                self._maybe_refill(row.key_id, signers)
            return done

    def _level_check_due(self, pools: list[str], target: int) -> bool:
        """Whether to read the levels of ``pools`` (each just lost an entry to a
        signature): when one of them has lost a quarter of its target since its last
        read, and at the first signature after a start, instead of after each signature
        (a COUNT query per request). Refilling starts at half, so a pool is read again
        well before it runs dry (entries spent by failed attempts are not counted here;
        an empty pool is still refilled on demand inside the request)."""
        with self._locks_guard:
            spent = {p: self._since_level_check.get(p, target) + 1 for p in pools}
            due = max(spent.values(), default=0) >= max(1, target // 4)
            for p, n in spent.items():
                self._since_level_check[p] = 0 if due else n
        return due

    def _maybe_refill(self, key_id: str, node_ids: list[int]) -> None:
        """Refill in the background once a pool falls below half its target."""
        pools = [f"{key_id}/node-{i}" for i in node_ids]
        if not self._level_check_due(pools, self.config.nonce_pool_target):
            return
        levels = self.store.pool_levels(key_id)
        for i in node_ids:
            metrics.POOL_LEVEL.labels(key_id, "nonce", f"node-{i}").set(levels.get(i, 0))
        low = [i for i in node_ids if levels.get(i, 0) < self.config.nonce_pool_target // 2]
        if low:
            self.background.submit(self.fill_pools, key_id, low)

    def _sign_share(self, node_id: int, request: node_pb2.SignShareRequest) -> bytes:
        name = f"node-{node_id}"
        try:
            response = self.clients.stub(node_id).SignShare(request, timeout=15.0)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                metrics.NODE_UP.labels(name).set(0)
            raise
        metrics.NODE_UP.labels(name).set(1)
        return bytes(response.signature_share)

    def resume(self) -> None:
        """After a restart: finish every request that was accepted but not final."""
        with self.store.transaction() as s:
            rows = list(
                s.execute(
                    select(SignatureRequestRow).where(
                        SignatureRequestRow.state.in_(["PENDING", "SIGNING"])
                    )
                ).scalars()
            )
            for r in rows:
                s.expunge(r)
            ops = list(
                s.execute(select(OperationRow).where(OperationRow.state == "RUNNING")).scalars()
            )
            for op in ops:
                op.state, op.error_code, op.error_message = (
                    "FAILED",
                    "INTERRUPTED",
                    "the coordinator restarted during key generation; create the key again",
                )
        for r in rows:
            log.info("resuming_request", request_id=r.request_id, state=r.state)
            self.background.submit(self._resume_one, r)

    def _resume_one(self, row: SignatureRequestRow) -> None:
        with self._lock_for(row.tenant, row.request_id):
            current = self.get_request(row.tenant, row.request_id)
            if current.state in FINAL:
                return
            try:
                self._decide_and_sign(current, self.get_key(row.tenant, row.key_id))
            except ServiceError as err:
                self.store.finish_request(
                    row.tenant,
                    row.request_id,
                    state="FAILED",
                    error_code=err.reason,
                    error_message=err.message,
                )
