"""Failures of taking or publishing a snapshot that are not about the file format.

Format and input failures keep the stable codes of :mod:`proofs.errors`
(``POR_MALFORMED``, ``POR_BALANCE_RANGE``, ...). The codes here are the service's own
(``docs/por-format.md`` section 11): a code is never renamed or reused.
"""

from __future__ import annotations

from enum import StrEnum


class SnapshotCode(StrEnum):
    CUSTOMER_NAMESPACE = "POR_CUSTOMER_NAMESPACE"  # customer id not "<tenant>/<account>"
    UNKNOWN_KEY = "POR_UNKNOWN_KEY"  # a custody key the cluster does not know
    SIGNING_FAILED = "POR_SIGNING_FAILED"  # the cluster did not sign the challenge
    CONTROL_SIGNATURE_INVALID = "POR_CONTROL_SIGNATURE_INVALID"  # ... or signed it wrongly
    SNAPSHOT_EXISTS = "POR_SNAPSHOT_EXISTS"  # the snapshot id is already published
    NO_LIABILITIES_SOURCE = "POR_NO_LIABILITIES_SOURCE"  # retired: the ledger is always read
    SERVICE_KEY_INVALID = "POR_SERVICE_KEY_INVALID"  # the snapshot key file is unusable
    CUTOFF_IN_FUTURE = "POR_CUTOFF_IN_FUTURE"  # the books at the cut-off are not known yet


class SnapshotError(Exception):
    """A snapshot could not be taken or published; nothing was published."""

    __slots__ = ("code", "detail")

    def __init__(self, code: SnapshotCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail
