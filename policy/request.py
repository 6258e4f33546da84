"""The signing request and the signed statements about it (initiator signature, approvals).

What an initiator signs and what approvers approve is :func:`request_digest`, a
domain-separated SHA-256 over a canonical, versioned, length-prefixed encoding of every
field of :class:`SigningRequest`, including the payload the node derives the signed digest
from. A coordinator that swaps the payload, amount or destination after approval changes
the digest, so neither the initiator signature nor the approvals verify any more.

Encoding v1 (``docs/policy-format.md`` section "Request digest"):

``request_digest = SHA-256(tag("request") || u8(1) || lp(request_id) || lp(tenant) ||
lp(initiator) || lp(key_id) || u32(len(path)) || u32(i)... || lp(type) || lp(chain) ||
lp(asset) || lp(destination) || lp(amount minimal big-endian) || lp(payload) || i64(created_at))``
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policy._codec import ed25519_ok, hash_tagged, i64, lp, lps, tag, u8, uint_var

REQUEST_ENCODING_VERSION = 1
MAX_AMOUNT = (1 << 256) - 1
MAX_PAYLOAD = 1 << 20
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")


class RequestType(StrEnum):
    """What is being signed; policy rules match on it. ``raw_digest`` (a bare 32-byte
    digest the node cannot interpret) must be allowed by a rule explicitly, like any type."""

    TRANSFER = "transfer"
    CONTRACT_CALL = "contract_call"
    RAW_DIGEST = "raw_digest"
    MESSAGE = "message"
    POR_ATTESTATION = "por_attestation"


class ApprovalDecision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


def valid_identifier(value: str) -> bool:
    """Identifiers (tenants, initiators, keys, assets, chains, rule ids...): 1-128 chars of
    ``[A-Za-z0-9._:@/+-]``, starting alphanumeric; no whitespace, so no look-alike ids."""
    return _ID.fullmatch(value) is not None


def normalize_address(address: str) -> str:
    """The canonical form destinations are compared in: EVM-style ``0x`` + 40 hex
    addresses compare case-insensitively (EIP-55 checksums only change case); every other
    address compares byte for byte, as the chain's canonical encoding."""
    if len(address) == 42 and address[:2] in ("0x", "0X"):
        body = address[2:]
        if all(c in "0123456789abcdefABCDEF" for c in body):
            return "0x" + body.lower()
    return address


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningRequest:
    """One institution request to sign. Validated on construction; immutable.

    ``amount`` is in integer minor units of ``asset`` (wei, satoshi...); ``destination`` is
    the recipient address (empty for messages, raw digests and attestations); ``payload``
    is the structured payload (transaction, message, digest) from which the node derives
    what it signs; ``created_at`` is the initiator's unix time in seconds.
    """

    request_id: str
    tenant: str
    initiator: str
    key_id: str
    derivation_path: tuple[int, ...] = ()
    request_type: RequestType
    chain: str
    asset: str
    destination: str = ""
    amount: int = 0
    payload: bytes = field(default=b"", repr=False)
    created_at: int
    # The digest of the fields above, computed once (validation first): every check of a
    # request asks for it, several times per decision.
    _digest: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        for name in ("request_id", "tenant", "initiator", "key_id", "chain", "asset"):
            value = getattr(self, name)
            if not isinstance(value, str) or not valid_identifier(value):
                raise ValueError(f"{name}: not a valid identifier")
        if not isinstance(self.request_type, RequestType):
            raise ValueError("request_type: not a RequestType")
        if not isinstance(self.destination, str) or len(self.destination) > 256:
            raise ValueError("destination: a string of at most 256 characters")
        if any(c.isspace() for c in self.destination):
            raise ValueError("destination: contains whitespace")
        if len(self.derivation_path) > 16 or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 1 << 31
            for i in self.derivation_path
        ):
            raise ValueError("derivation_path: at most 16 non-hardened indices < 2^31")
        if (
            not isinstance(self.amount, int)
            or isinstance(self.amount, bool)
            or not 0 <= self.amount <= MAX_AMOUNT
        ):
            raise ValueError("amount: an integer in [0, 2^256)")
        if not isinstance(self.payload, bytes) or len(self.payload) > MAX_PAYLOAD:
            raise ValueError("payload: bytes, at most 1 MiB")
        if (
            not isinstance(self.created_at, int)
            or isinstance(self.created_at, bool)
            or not 0 <= self.created_at < 1 << 62
        ):
            raise ValueError("created_at: unix seconds")
        object.__setattr__(self, "_digest", hash_tagged("request", self.encode()))

    def encode(self) -> bytes:
        """The canonical v1 encoding (without the domain tag)."""
        path = len(self.derivation_path).to_bytes(4, "big") + b"".join(
            i.to_bytes(4, "big") for i in self.derivation_path
        )
        return b"".join(
            (
                u8(REQUEST_ENCODING_VERSION),
                lps(self.request_id),
                lps(self.tenant),
                lps(self.initiator),
                lps(self.key_id),
                path,
                lps(self.request_type.value),
                lps(self.chain),
                lps(self.asset),
                lps(self.destination),
                uint_var(self.amount),
                lp(self.payload),
                i64(self.created_at),
            )
        )

    def digest(self) -> bytes:
        """The 32-byte digest initiators and approvers sign:
        ``hash_tagged("request", encode())``."""
        return self._digest


def request_digest(request: SigningRequest) -> bytes:
    """The 32-byte digest initiators and approvers sign."""
    return request.digest()


def initiator_message(digest: bytes) -> bytes:
    """What an initiator's Ed25519 key signs: ``tag("initiator") || digest``."""
    if len(digest) != 32:
        raise ValueError("a request digest is 32 bytes")
    return tag("initiator") + digest


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiatorSignature:
    """The institution's signature over the request digest, by the initiator key the
    policy registers for ``initiator``."""

    initiator: str
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.signature, bytes) or len(self.signature) != 64:
            raise ValueError("signature: 64 bytes")

    def verify(self, key: Ed25519PublicKey, digest: bytes) -> bool:
        return ed25519_ok(key, self.signature, initiator_message(digest))


def sign_request(
    key: Ed25519PrivateKey, initiator: str, request: SigningRequest
) -> InitiatorSignature:
    """Client-side helper: sign ``request`` as ``initiator``."""
    return InitiatorSignature(
        initiator=initiator, signature=key.sign(initiator_message(request_digest(request)))
    )


def approval_message(
    *,
    approver: str,
    request_digest: bytes,
    decision: ApprovalDecision,
    expires_at: int,
    policy_version_id: bytes,
) -> bytes:
    """What an approver signs: ``tag("approval") || lp(approver) || digest || lp(decision)
    || i64(expires_at) || policy_version_id``. Binding the policy version means an approval
    given under one policy never counts under another (e.g. after the approver's group
    changed); binding the approver id stops a signature being re-labelled."""
    if len(request_digest) != 32 or len(policy_version_id) != 32:
        raise ValueError("digests are 32 bytes")
    return (
        tag("approval")
        + lps(approver)
        + request_digest
        + lps(decision.value)
        + i64(expires_at)
        + policy_version_id
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """An approver's signed approve/reject of one request digest under one policy version.

    An approval counts only while ``now < expires_at`` (it is expired at ``expires_at``).
    """

    approver: str
    request_digest: bytes
    decision: ApprovalDecision
    expires_at: int
    policy_version_id: bytes
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not valid_identifier(self.approver):
            raise ValueError("approver: not a valid identifier")
        if len(self.request_digest) != 32 or len(self.policy_version_id) != 32:
            raise ValueError("request_digest and policy_version_id are 32 bytes")
        if not isinstance(self.decision, ApprovalDecision):
            raise ValueError("decision: not an ApprovalDecision")
        if isinstance(self.expires_at, bool) or not 0 <= self.expires_at < 1 << 62:
            raise ValueError("expires_at: unix seconds")
        if len(self.signature) != 64:
            raise ValueError("signature: 64 bytes")

    def message(self) -> bytes:
        return approval_message(
            approver=self.approver,
            request_digest=self.request_digest,
            decision=self.decision,
            expires_at=self.expires_at,
            policy_version_id=self.policy_version_id,
        )

    def verify(self, key: Ed25519PublicKey) -> bool:
        return ed25519_ok(key, self.signature, self.message())


def sign_approval(
    key: Ed25519PrivateKey,
    *,
    approver: str,
    request: SigningRequest,
    decision: ApprovalDecision,
    expires_at: int,
    policy_version_id: bytes,
) -> Approval:
    """Approver-side helper: approve or reject ``request`` until ``expires_at``."""
    digest = request_digest(request)
    msg = approval_message(
        approver=approver,
        request_digest=digest,
        decision=decision,
        expires_at=expires_at,
        policy_version_id=policy_version_id,
    )
    return Approval(
        approver=approver,
        request_digest=digest,
        decision=decision,
        expires_at=expires_at,
        policy_version_id=policy_version_id,
        signature=key.sign(msg),
    )


__all__ = [
    "Approval",
    "ApprovalDecision",
    "InitiatorSignature",
    "RequestType",
    "SigningRequest",
    "approval_message",
    "initiator_message",
    "normalize_address",
    "request_digest",
    "sign_approval",
    "sign_request",
    "valid_identifier",
]
