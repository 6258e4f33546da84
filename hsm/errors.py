"""Errors of the HSM layer, each with a stable code.

Callers (the node process, the ``custody`` CLI, operators reading logs) match
on :attr:`HsmError.code`, never on the message. Messages name the token,
module, key label, node or file involved, and never a PIN or key material.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Stable error codes. Never renumber or rename; add new ones at the end."""

    HSM_MODULE_NOT_FOUND = "HSM_MODULE_NOT_FOUND"
    HSM_MODULE_ENV_CONFLICT = "HSM_MODULE_ENV_CONFLICT"
    HSM_TOKEN_NOT_FOUND = "HSM_TOKEN_NOT_FOUND"
    HSM_TOKEN_AMBIGUOUS = "HSM_TOKEN_AMBIGUOUS"
    HSM_PIN_MISSING = "HSM_PIN_MISSING"
    HSM_PIN_INCORRECT = "HSM_PIN_INCORRECT"
    HSM_PIN_LOCKED = "HSM_PIN_LOCKED"
    HSM_MECHANISM_UNSUPPORTED = "HSM_MECHANISM_UNSUPPORTED"
    HSM_KEY_NOT_FOUND = "HSM_KEY_NOT_FOUND"
    HSM_KEY_AMBIGUOUS = "HSM_KEY_AMBIGUOUS"
    HSM_KEY_IN_USE = "HSM_KEY_IN_USE"
    HSM_SEALED_BLOB_INVALID = "HSM_SEALED_BLOB_INVALID"
    HSM_CONTEXT_MISMATCH = "HSM_CONTEXT_MISMATCH"
    HSM_OPERATION_FAILED = "HSM_OPERATION_FAILED"
    HSM_PROVISIONING_FAILED = "HSM_PROVISIONING_FAILED"
    STORE_RECORD_EXISTS = "STORE_RECORD_EXISTS"
    STORE_RECORD_NOT_FOUND = "STORE_RECORD_NOT_FOUND"
    STORE_CONFLICT = "STORE_CONFLICT"
    BACKUP_CORRUPTED = "BACKUP_CORRUPTED"
    BACKUP_FOREIGN = "BACKUP_FOREIGN"
    BACKUP_WRONG_NODE = "BACKUP_WRONG_NODE"
    BACKUP_KIND_REFUSED = "BACKUP_KIND_REFUSED"
    BACKUP_EXISTS = "BACKUP_EXISTS"
    BACKUP_KEY_NOT_FOUND = "BACKUP_KEY_NOT_FOUND"
    RESTORE_TARGET_NOT_EMPTY = "RESTORE_TARGET_NOT_EMPTY"
    HSM_CONFIG_INVALID = "HSM_CONFIG_INVALID"
    RESTORE_RECORD_MISMATCH = "RESTORE_RECORD_MISMATCH"
    ROTATION_INCOMPLETE = "ROTATION_INCOMPLETE"


class HsmError(Exception):
    """Any failure of the HSM layer; ``code`` is stable, ``str()`` is for humans."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
