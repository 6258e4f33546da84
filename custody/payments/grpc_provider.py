"""A :class:`~custody.payments.provider.SignatureProvider` over the running custody
service (CustodyService and GovernanceService on the coordinator's mTLS port).

``sign(request)`` sends the payment's :class:`~policy.request.SigningRequest` as the
tenant's initiator (``RequestSignature``: the structured request and the initiator's
Ed25519 signature over its digest, ``docs/governance.md`` §5), then waits, up to
``timeout`` seconds, while the coordinator signs or the approvers decide. Every signer
node re-derives what it signs from the payload and checks the policy itself; this
provider only reports how it ended (``docs/payments.md``, "Provider interface"):

* ``SUCCEEDED``: the signature (the payment checks it against its own digest).
* :class:`SigningRefused`, definitive, the payment releases its funds: the request
  ``FAILED`` with a policy or payload code (``BLOCKED_BY_RULE``, ``REQUEST_EXPIRED``,
  ``PAYLOAD_MISMATCH``...), an approver rejected it or its initiator cancelled it (the
  coordinator fails it with governance's reason, ``APPROVAL_REJECTED`` /
  ``REQUEST_CANCELLED``; while waiting, the decision is also read from
  GovernanceService), or the coordinator refused to accept it (``INVALID_ARGUMENT``,
  ``NOT_FOUND``...).
* :class:`SigningUnavailable`, outcome unknown, the payment stays reserved: the
  coordinator is unreachable, the deadline passed (``APPROVAL_PENDING`` while approvers
  are needed, ``SIGNING_TIMEOUT``), or the request ``FAILED`` for an operational reason
  (:data:`RETRYABLE`, e.g. ``UNAVAILABLE``: fewer than t nodes reachable).

``cancel(request)`` finds the payment's current attempt and, when the coordinator holds
it ``PENDING_APPROVAL``, sends GovernanceService ``CancelRequest`` with the initiator's
signed cancellation (``docs/governance.md`` §5). It returns only when governance answers
that the request is ``CANCELLED``; a cancelled request is final there: no approval is
accepted for it and the coordinator's pre-evaluation, which gates every signing, refuses
it with ``REQUEST_CANCELLED``.

**Request ids and retries.** The API id of attempt 0 is the payment's own request id
(``payment:<id>:<input>``); the signed request's id is ``<tenant>:<api id>``. The
coordinator answers the same id idempotently, and a ``FAILED`` request is final there,
so a payment resumed after an operational failure needs a new id: each call walks
attempts 0, 1, 2... (:func:`service_request_id`), takes a ``SUCCEEDED`` one, waits for
one in flight, and submits the next attempt only when every earlier one ``FAILED`` for
an operational reason. Every attempt carries the same payload (same Ethereum nonce, same
Bitcoin inputs), so even two signatures could only ever produce one transaction.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import replace
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody._pb.custody.governance.v1 import governance_pb2 as gpb
from custody._pb.custody.governance.v1 import governance_pb2_grpc
from custody._pb.custody.v1 import custody_pb2 as pb
from custody.client import SCHEME_NAMES, CustodyClient, OperationFailed
from custody.config import ClusterConfig
from custody.governance.approvals import sign_cancellation
from custody.governance.genesis import governance_root, initiator_id, initiator_key_path
from custody.governance.keys import KeyFileError, load_private_key
from custody.payments.errors import PaymentCode, PaymentError
from custody.payments.provider import (
    CancelRefused,
    KeyInfo,
    SignedResult,
    SigningRefused,
    SigningUnavailable,
)
from policy.request import SigningRequest, sign_request
from signer_nodes.grpc_errors import reason_of

DEFAULT_TIMEOUT = 60.0
MAX_ATTEMPTS = 16
RPC_TIMEOUT = 30.0

RETRYABLE = frozenset(
    {
        "UNAVAILABLE",  # fewer than t signer nodes reachable
        "NODE_REFUSED",  # a node failed for a non-policy reason
        "INVALID_SIGNATURE_SHARE",  # culprits excluded; another signer set may work
        "SIGNATURE_ABORTED",
        "PRESIGN_ABORTED",
        "PRESIGN_INCONSISTENT",
        "SIGNING_INPUT_MISMATCH",  # the coordinator sent nodes the wrong input
        "POLICY_VERSION_MISMATCH",  # a lagging node; the coordinator catches it up
        "HISTORY_REPORT_MISSING",
        "HISTORY_REPORT_INVALID",
        "HISTORY_REPORT_INCOMPLETE",
        "HISTORY_CHAIN_INVALID",
        "HISTORY_ROLLBACK",
        "HISTORY_CONFLICT",
        "HISTORY_HIDDEN",
        "INTERNAL",
    }
)
"""``FAILED`` codes that say nothing against the request itself: signing may succeed
under the next attempt id. Every other ``FAILED`` code is a refusal."""

_REFUSING_STATUS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
_API_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_RETRY_SUFFIX = re.compile(r"\.retry[0-9]+\Z")
_SIGNING_REQUEST_ID_MAX = 128


def service_request_id(tenant: str, request_id: str, attempt: int = 0) -> str:
    """The API request id of ``attempt`` for a payment request id: ``request_id``
    itself for attempt 0, ``<request_id>.retry<n>`` after; an id outside the API's
    alphabet (``[A-Za-z0-9._:-]``), too long for ``<tenant>:<id>`` (128 characters), or
    already ending like a retry is replaced by ``h-`` and hex digits of SHA-256 of the
    tenant, id and attempt (32, fewer when a long tenant name leaves less room, never
    fewer than 16). One-to-one, so two payments never share an id."""
    natural = request_id if attempt == 0 else f"{request_id}.retry{attempt}"
    room = _SIGNING_REQUEST_ID_MAX - len(tenant) - 1
    if _API_ID.fullmatch(natural) and len(natural) <= room and not _RETRY_SUFFIX.search(request_id):
        return natural
    digest = hashlib.sha256(f"{tenant}\0{request_id}\0{attempt}".encode()).hexdigest()
    return "h-" + digest[: max(16, min(32, room - 2))]


def _rpc_error(exc: grpc.RpcError) -> tuple[bool, str, str]:
    """(refused?, reason, message) of a failed CustodyService call."""
    code = exc.code()
    reason = reason_of(exc) or code.name
    return code in _REFUSING_STATUS, reason, str(exc.details() or reason)


class CustodyServiceProvider:
    """Signs payments through the custody service as ``client``'s tenant and initiator.

    ``timeout``: seconds one :meth:`sign` waits for signing and approvals before it
    reports ``SigningUnavailable`` (the payment is then resumed later); ``poll``: how
    often, while approvals are pending, the approvers' decision is read."""

    def __init__(
        self,
        client: CustodyClient,
        initiator_key: Ed25519PrivateKey,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        poll: float = 1.0,
    ) -> None:
        if not client.tenant or not client.initiator:
            raise ValueError("the client must name its tenant and initiator")
        self.client = client
        self.timeout = timeout
        self.poll = poll
        self._initiator_key = initiator_key
        self._governance = governance_pb2_grpc.GovernanceServiceStub(client.channel)

    def __repr__(self) -> str:
        return f"CustodyServiceProvider(tenant={self.tenant!r}, initiator={self.initiator!r})"

    @classmethod
    def from_data_dir(
        cls, data_dir: Path | str, tenant: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> CustodyServiceProvider:
        """Connect as ``tenant`` (default: the cluster's first) with its certificate and
        sign as ``<tenant>-initiator`` with the key in ``<data-dir>/governance``."""
        config = ClusterConfig.load(data_dir)
        chosen = tenant or config.tenants[0]
        path = initiator_key_path(governance_root(config.data_dir), initiator_id(chosen))
        try:
            key = load_private_key(path)
            client = CustodyClient.from_data_dir(data_dir, chosen)
        except (KeyFileError, OSError) as exc:  # names a file, never key material
            raise PaymentError(
                PaymentCode.SIGNING_UNAVAILABLE, f"tenant {chosen} cannot sign requests: {exc}"
            ) from None
        return cls(client, key, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    @property
    def tenant(self) -> str:
        return self.client.tenant

    @property
    def initiator(self) -> str:
        return self.client.initiator

    # -- keys --------------------------------------------------------------------------

    def key(self, key_id: str, path: str) -> KeyInfo:
        """The scheme (``GetKey``) and the public key at ``path`` (``DeriveKey``: the
        untweaked x-only key for BIP340, compressed secp256k1 for ECDSA)."""
        try:
            scheme = SCHEME_NAMES.get(self.client.get_key(key_id).scheme, "")
            derived = self.client.derive(key_id, path)
        except grpc.RpcError as exc:
            refused, reason, message = _rpc_error(exc)
            if not refused:
                raise SigningUnavailable(reason, message) from None
            code = PaymentCode.KEY_NOT_FOUND if reason == "KEY_NOT_FOUND" else None
            raise PaymentError(code or PaymentCode.PAYMENT_INVALID, message) from None
        return KeyInfo(key_id, scheme, bytes(derived.public_key))

    # -- signing -----------------------------------------------------------------------

    def sign(self, request: SigningRequest) -> SignedResult:
        if (request.tenant, request.initiator) != (self.tenant, self.initiator):
            raise SigningUnavailable(
                "PROVIDER_MISMATCH", f"this provider signs for {self.tenant}/{self.initiator}"
            )
        deadline = time.monotonic() + self.timeout
        code = ""
        for attempt in range(MAX_ATTEMPTS):
            api_id = service_request_id(self.tenant, request.request_id, attempt)
            try:
                signing = replace(request, request_id=f"{self.tenant}:{api_id}")
            except ValueError as exc:  # nothing was sent: no signature can exist
                raise SigningRefused("REQUEST_INVALID", str(exc)) from None
            current, fresh = self._find_or_submit(api_id, signing)
            current = self._wait(api_id, signing, current, deadline)
            if current.state == pb.REQUEST_STATE_SUCCEEDED:
                return SignedResult(
                    bytes(current.signature),
                    current.recovery_id if current.recovery_id >= 0 else None,
                )
            code, message = current.error_code or "FAILED", current.error_message
            if code not in RETRYABLE:
                raise SigningRefused(code, message)
            if fresh:
                raise SigningUnavailable(code, message)
            # An earlier call's attempt failed for an operational reason: next id.
        raise SigningRefused(
            "SIGNING_ATTEMPTS_EXHAUSTED", f"{MAX_ATTEMPTS} attempts failed; the last: {code}"
        )

    def _find(self, api_id: str, signing: SigningRequest) -> pb.SignatureRequest | None:
        """The request an earlier call submitted under ``api_id`` (it must be this
        request), or ``None``."""
        try:
            found: pb.SignatureRequest = self.client.stub.GetSignatureRequest(
                pb.GetSignatureRequestRequest(request_id=api_id), timeout=RPC_TIMEOUT
            )
        except grpc.RpcError as exc:
            if reason_of(exc) != "REQUEST_NOT_FOUND":
                raise SigningUnavailable(*_rpc_error(exc)[1:]) from None
            return None
        if found.request_digest != signing.digest():
            raise SigningRefused("REQUEST_ID_REUSED", f"request id {api_id} names another request")
        return found

    def _find_or_submit(
        self, api_id: str, signing: SigningRequest
    ) -> tuple[pb.SignatureRequest, bool]:
        """The request under ``api_id`` if an earlier call submitted it, else submit it
        now; ``fresh`` says which."""
        found = self._find(api_id, signing)
        if found is not None:
            return found, False
        signature = sign_request(self._initiator_key, self.initiator, signing).signature
        try:
            submitted = self.client.submit_signed(
                api_id, signing, signature, timeout=RPC_TIMEOUT, wait=False
            )
        except OperationFailed as exc:  # FAILED at once: refused before any signing
            return pb.SignatureRequest(
                request_id=api_id,
                state=pb.REQUEST_STATE_FAILED,
                error_code=exc.code,
                error_message=str(exc).split(": ", 1)[-1],
            ), True
        except grpc.RpcError as exc:
            refused, reason, message = _rpc_error(exc)
            if refused:
                raise SigningRefused(reason, message) from None
            raise SigningUnavailable(reason, message) from None
        return submitted, True

    def _wait(
        self,
        api_id: str,
        signing: SigningRequest,
        current: pb.SignatureRequest,
        deadline: float,
    ) -> pb.SignatureRequest:
        """Until the request is final or ``deadline``. While it waits for approvers, read
        their decision too: a rejection, expiry or cancellation is final for the policy
        (the coordinator fails its request on governance's callback; reading it here does
        not depend on that)."""
        final = (pb.REQUEST_STATE_SUCCEEDED, pb.REQUEST_STATE_FAILED)
        while current.state not in final:
            if current.state == pb.REQUEST_STATE_PENDING_APPROVAL:
                self._check_decision(signing)
            left = deadline - time.monotonic()
            if left <= 0:
                if current.state == pb.REQUEST_STATE_PENDING_APPROVAL:
                    raise SigningUnavailable(
                        "APPROVAL_PENDING",
                        f"{api_id} waits for approvals ({current.approval_requirement})",
                    )
                raise SigningUnavailable("SIGNING_TIMEOUT", f"{api_id} is still being signed")
            step = (
                min(left, self.poll) if current.state == pb.REQUEST_STATE_PENDING_APPROVAL else left
            )
            try:
                current = self.client.wait(api_id, timeout=step)
            except grpc.RpcError as exc:
                raise SigningUnavailable(*_rpc_error(exc)[1:]) from None
        return current

    def _decision(self, signing: SigningRequest) -> gpb.RequestDecision:
        try:
            decision: gpb.RequestDecision = self._governance.GetRequestDecision(
                gpb.GetRequestDecisionRequest(tenant=self.tenant, request_id=signing.request_id),
                timeout=RPC_TIMEOUT,
            )
        except grpc.RpcError as exc:
            raise SigningUnavailable(*_rpc_error(exc)[1:]) from None
        return decision

    def _check_decision(self, signing: SigningRequest) -> None:
        decision = self._decision(signing)
        if decision.request_digest != signing.digest():
            return  # not ours to judge; the coordinator's state decides
        if decision.state in _DECIDED:
            raise SigningRefused(decision.code or _DECIDED[decision.state], decision.detail)

    # -- cancelling --------------------------------------------------------------------

    def cancel(self, request: SigningRequest) -> None:
        """Cancel the attempt of ``request`` that waits for approvals (module
        docstring); return once governance says it is ``CANCELLED``."""
        if (request.tenant, request.initiator) != (self.tenant, self.initiator):
            raise SigningUnavailable(
                "PROVIDER_MISMATCH", f"this provider signs for {self.tenant}/{self.initiator}"
            )
        api_id, current, signing = self._current_attempt(request)
        if current is None:
            raise CancelRefused("REQUEST_NOT_PENDING", "no signing request was submitted")
        state, code = current.state, current.error_code
        if state == pb.REQUEST_STATE_SUCCEEDED:
            raise CancelRefused("REQUEST_SIGNED", f"{current.request_id} is signed")
        if state == pb.REQUEST_STATE_FAILED:
            if code in RETRYABLE:
                raise CancelRefused(
                    "REQUEST_NOT_PENDING", f"the last attempt failed ({code}); nothing waits"
                )
            raise SigningRefused(code or "FAILED", current.error_message)
        if state != pb.REQUEST_STATE_PENDING_APPROVAL:
            raise CancelRefused("REQUEST_APPROVED", f"{current.request_id} is being signed")
        message = gpb.CancelRequestRequest(
            tenant=self.tenant,
            request_id=signing.request_id,
            initiator=self.initiator,
            signature=sign_cancellation(self._initiator_key, self.initiator, signing),
        )
        try:
            decision: gpb.RequestDecision = self._governance.CancelRequest(
                message, timeout=RPC_TIMEOUT
            )
        except grpc.RpcError as exc:
            refused, reason, text = _rpc_error(exc)
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise CancelRefused("CANCEL_UNSUPPORTED", "the coordinator cannot cancel") from None
            if not refused and exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise SigningUnavailable(reason, text) from None  # it may have been cancelled
            if reason != "REQUEST_CLOSED":
                raise CancelRefused(reason, text) from None
            decision = self._decision(signing)  # how it closed decides what follows
        if decision.request_digest != signing.digest():
            raise CancelRefused("SERVER_MISMATCH", "governance answered for another request")
        if decision.state == gpb.REQUEST_STATE_CANCELLED:
            self._check_not_signing(api_id, signing)
            return
        if decision.state in _DECIDED:  # rejected or expired first: refused anyway
            raise SigningRefused(decision.code or _DECIDED[decision.state], decision.detail)
        if decision.state == gpb.REQUEST_STATE_SIGNED:
            raise CancelRefused("REQUEST_SIGNED", f"{signing.request_id} is signed")
        raise CancelRefused("REQUEST_APPROVED", f"{signing.request_id} was not cancelled")

    def _check_not_signing(self, api_id: str, signing: SigningRequest) -> None:
        """After governance cancelled the request: the coordinator's record must not be
        signed or being signed. Governance refuses to cancel a request it cleared, but a
        cleared request can look uncleared again (an approval lapsed, the window of a
        velocity rule filled) while the coordinator signs it; such a payment stays
        reserved (``resume`` settles or releases it). A record that is FAILED, or still
        PENDING_APPROVAL, stays so: governance never clears a cancelled request."""
        after = self._find(api_id, signing)
        if after is None:  # pragma: no cover - it was found before the cancellation
            raise CancelRefused("REQUEST_NOT_PENDING", f"{api_id} disappeared")
        if after.state == pb.REQUEST_STATE_SUCCEEDED:
            raise CancelRefused("REQUEST_SIGNED", f"{api_id} was signed before it was cancelled")
        if after.state not in (pb.REQUEST_STATE_FAILED, pb.REQUEST_STATE_PENDING_APPROVAL):
            raise CancelRefused("REQUEST_APPROVED", f"{api_id} is being signed")

    def _current_attempt(
        self, request: SigningRequest
    ) -> tuple[str, pb.SignatureRequest | None, SigningRequest]:
        """The latest attempt submitted for ``request`` (attempts after an operational
        failure only; see :meth:`sign`): its API id, record and the signed request it
        carries."""
        found: pb.SignatureRequest | None = None
        found_id, signing = "", request
        for attempt in range(MAX_ATTEMPTS):
            api_id = service_request_id(self.tenant, request.request_id, attempt)
            candidate = replace(request, request_id=f"{self.tenant}:{api_id}")
            current = self._find(api_id, candidate)
            if current is None:
                break
            found, found_id, signing = current, api_id, candidate
            if current.state != pb.REQUEST_STATE_FAILED or current.error_code not in RETRYABLE:
                break
        return found_id, found, signing


_DECIDED = {
    gpb.REQUEST_STATE_REJECTED: "APPROVAL_REJECTED",
    gpb.REQUEST_STATE_EXPIRED: "REQUEST_EXPIRED",
    gpb.REQUEST_STATE_CANCELLED: "REQUEST_CANCELLED",
}
"""Governance states in which a request waiting for approvals can never be signed."""


def service_provider(config: ClusterConfig, tenant: str) -> CustodyServiceProvider:
    """The CLI's default provider factory (:func:`custody.payments.cli.set_provider_factory`)."""
    return CustodyServiceProvider.from_data_dir(config.data_dir, tenant)


__all__ = [
    "RETRYABLE",
    "CustodyServiceProvider",
    "service_provider",
    "service_request_id",
]
