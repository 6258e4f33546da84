"""Refusals of the governance service: a stable ``code`` and the kind of fault, which the
gRPC edge maps to a status code (``docs/governance.md`` lists the codes)."""

from __future__ import annotations

from enum import Enum


class Fault(Enum):
    INVALID = "invalid"  # malformed input, bad signature          -> INVALID_ARGUMENT
    FORBIDDEN = "forbidden"  # signer not entitled (not an officer) -> PERMISSION_DENIED
    NOT_FOUND = "not_found"  #                                      -> NOT_FOUND
    CONFLICT = "conflict"  # state moved on (not next, closed)      -> FAILED_PRECONDITION
    EXISTS = "exists"  # same id, other content                     -> ALREADY_EXISTS


class GovernanceRefused(Exception):
    """Nothing was changed. Messages name ids and codes only, never key material."""

    def __init__(self, code: str, fault: Fault, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.fault = fault
        self.message = message
