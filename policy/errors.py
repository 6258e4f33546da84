"""Stable reason codes and exceptions of the policy layer.

Every refusal, rejected document, rejected policy version and detected audit tampering
carries a :class:`ReasonCode`. The codes are part of the interface: logs, metrics, the
audit log and the gRPC edge use them verbatim, so a code is never renamed or reused for
another meaning. Messages name identifiers and paths only, never key material.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    # Evaluation (Decision.reasons)
    RULE_ALLOW = "RULE_ALLOW"
    RULE_BLOCK = "RULE_BLOCK"
    RULE_REQUIRES_APPROVAL = "RULE_REQUIRES_APPROVAL"
    DEFAULT_BLOCK = "DEFAULT_BLOCK"
    VELOCITY_EXCEEDED = "VELOCITY_EXCEEDED"
    # Node-side refusals (authorize)
    POLICY_VERSION_MISMATCH = "POLICY_VERSION_MISMATCH"
    REQUEST_EXPIRED = "REQUEST_EXPIRED"
    REQUEST_FROM_FUTURE = "REQUEST_FROM_FUTURE"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    INITIATOR_UNKNOWN = "INITIATOR_UNKNOWN"
    INITIATOR_TENANT_MISMATCH = "INITIATOR_TENANT_MISMATCH"
    INITIATOR_SIGNATURE_INVALID = "INITIATOR_SIGNATURE_INVALID"
    KEY_TENANT_MISMATCH = "KEY_TENANT_MISMATCH"
    BLOCKED_BY_RULE = "BLOCKED_BY_RULE"
    BLOCKED_BY_DEFAULT = "BLOCKED_BY_DEFAULT"
    APPROVER_UNKNOWN = "APPROVER_UNKNOWN"
    APPROVAL_SIGNATURE_INVALID = "APPROVAL_SIGNATURE_INVALID"
    APPROVAL_REQUEST_MISMATCH = "APPROVAL_REQUEST_MISMATCH"
    APPROVAL_POLICY_MISMATCH = "APPROVAL_POLICY_MISMATCH"
    SELF_APPROVAL = "SELF_APPROVAL"
    APPROVAL_REJECTED = "APPROVAL_REJECTED"
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"
    APPROVAL_MISSING = "APPROVAL_MISSING"
    HISTORY_REPORT_MISSING = "HISTORY_REPORT_MISSING"
    HISTORY_REPORT_INVALID = "HISTORY_REPORT_INVALID"
    HISTORY_REPORT_INCOMPLETE = "HISTORY_REPORT_INCOMPLETE"
    HISTORY_CHAIN_INVALID = "HISTORY_CHAIN_INVALID"
    HISTORY_ROLLBACK = "HISTORY_ROLLBACK"
    HISTORY_CONFLICT = "HISTORY_CONFLICT"
    HISTORY_HIDDEN = "HISTORY_HIDDEN"
    # Documents and governance
    POLICY_DOCUMENT_INVALID = "POLICY_DOCUMENT_INVALID"
    POLICY_QUORUM_NOT_MET = "POLICY_QUORUM_NOT_MET"
    POLICY_NOT_OFFICER = "POLICY_NOT_OFFICER"
    POLICY_SIGNATURE_INVALID = "POLICY_SIGNATURE_INVALID"
    POLICY_CHAIN_BROKEN = "POLICY_CHAIN_BROKEN"
    POLICY_VERSION_NOT_NEXT = "POLICY_VERSION_NOT_NEXT"
    # Audit log
    AUDIT_MALFORMED = "AUDIT_MALFORMED"
    AUDIT_TAMPERED = "AUDIT_TAMPERED"


class PolicyError(Exception):
    """Base class of every error raised by ``policy``; ``code`` is stable."""

    code: ReasonCode = ReasonCode.POLICY_DOCUMENT_INVALID

    def __init__(self, code: ReasonCode, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class DocumentError(PolicyError):
    """A policy document does not parse or violates the format; ``path`` is a JSON
    pointer (RFC 6901) to the offending field, e.g. ``/rules/3/match/amount/max``."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path or "/"
        self.reason = message
        super().__init__(ReasonCode.POLICY_DOCUMENT_INVALID, f"{self.path}: {message}")


class GovernanceError(PolicyError):
    """A signed policy version was not activated; ``code`` says why. The node keeps its
    current version; nothing is half-applied."""


class AuditFormatError(PolicyError):
    """An exported audit log does not parse (wrong shape, types, or encoding)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(ReasonCode.AUDIT_MALFORMED, f"line {line}: {message}")
