"""Sealing of secret material before it reaches the node's database or disk.

Everything secret a node keeps (key shares, pool nonces and presignatures,
its identity) goes through a :class:`Sealer` with a :class:`SealContext`, so
a blob cannot be moved to another node, key, epoch or kind.

:class:`HsmSealer` is the node's sealer: AES-256-GCM computed inside the
node's PKCS#11 token under a non-extractable key (:mod:`hsm.sealer`). The
GCM additional data binds the blob format version, the sealing key's label,
the node id, key id, epoch, record kind and :data:`RECORD_FORMAT_VERSION`.
Only the kinds in :data:`KINDS` can be sealed or unsealed; any other kind is
refused (``SEAL_KIND_UNKNOWN``) rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from hsm import sealer as hsm_sealer
from hsm.config import HsmConfig
from hsm.errors import Code, HsmError
from hsm.sealer import RecordKind

#: Version of the plaintext record formats a node seals (bound into the AAD).
RECORD_FORMAT_VERSION = 1
#: How often (seconds) a running node re-lists its token's sealing keys, so a
#: rotation by ``custody hsm rotate`` takes effect without a restart. The
#: rotation waits longer than this before retiring the old key.
KEY_REFRESH_SECONDS = 1.0

#: The node's record kinds and what the HSM layer calls them.
KINDS: dict[str, RecordKind] = {
    "share": RecordKind.SHARE,
    "nonce": RecordKind.NONCE,
    "presignature": RecordKind.PRESIGNATURE,
    "identity": RecordKind.IDENTITY,
}

#: The HSM codes that mean "this blob does not open here": tampered, bound to
#: another context, or naming a key this token does not hold (the message
#: tells which).
_BLOB_INVALID = {Code.HSM_SEALED_BLOB_INVALID, Code.HSM_CONTEXT_MISMATCH, Code.HSM_KEY_NOT_FOUND}


class SealingError(Exception):
    """Sealing or unsealing failed; ``code`` is stable, the message names no secret.

    ``SEALED_BLOB_INVALID``: tampered, truncated, or sealed for another node,
    key, epoch, kind or token; ``SEAL_KIND_UNKNOWN``; ``SEAL_NODE_MISMATCH``;
    otherwise the HSM layer's code (``HSM_KEY_NOT_FOUND``, ``HSM_OPERATION_FAILED``...).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class SealContext:
    node_id: int
    key_id: str
    epoch: int
    kind: str  # share | nonce | presignature | identity


def identity_context(node_id: int) -> SealContext:
    """The context of a node's sealed identity key (``<node dir>/identity.sealed``)."""
    return SealContext(node_id, "node-identity", 0, "identity")


class Sealer(Protocol):
    def seal(self, plaintext: bytes, context: SealContext) -> bytes: ...

    def unseal(self, blob: bytes, context: SealContext) -> bytes: ...


class HsmSealer:
    """:class:`Sealer` for node ``node_id`` over its token (:class:`hsm.sealer.Sealer`)."""

    def __init__(self, node_id: int, sealer: hsm_sealer.Sealer) -> None:
        self.node_id = node_id
        self._sealer = sealer

    @classmethod
    def open(cls, node_id: int, config: HsmConfig) -> HsmSealer:
        """Log in to the node's token; it must already hold a sealing key
        (``HSM_KEY_NOT_FOUND`` otherwise: ``custody init`` or a restore creates it)."""
        sealer = hsm_sealer.Sealer.open(config, refresh_interval=KEY_REFRESH_SECONDS)
        try:
            sealer.active_version  # noqa: B018 - raises HSM_KEY_NOT_FOUND
        except HsmError:
            sealer.close()
            raise
        return cls(node_id, sealer)

    def __repr__(self) -> str:
        return f"HsmSealer(node={self.node_id}, {self._sealer!r})"

    def close(self) -> None:
        self._sealer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def hsm_context(self, context: SealContext) -> hsm_sealer.SealContext:
        """The HSM layer's context for ``context``; refuses unknown kinds and other nodes."""
        kind = KINDS.get(context.kind)
        if kind is None:
            raise SealingError(
                "SEAL_KIND_UNKNOWN",
                f"no sealed record kind {context.kind!r} (known: {', '.join(KINDS)})",
            )
        if context.node_id != self.node_id:
            raise SealingError(
                "SEAL_NODE_MISMATCH",
                f"node {self.node_id} cannot seal or unseal for node {context.node_id}",
            )
        try:
            return hsm_sealer.SealContext(
                context.node_id, context.key_id, context.epoch, kind, RECORD_FORMAT_VERSION
            )
        except ValueError as exc:
            raise SealingError("SEAL_CONTEXT_INVALID", str(exc)) from None

    def seal(self, plaintext: bytes, context: SealContext) -> bytes:
        ctx = self.hsm_context(context)
        try:
            return self._sealer.seal(plaintext, ctx)
        except HsmError as exc:
            raise SealingError(exc.code.value, exc.message) from None

    def unseal(self, blob: bytes, context: SealContext) -> bytes:
        ctx = self.hsm_context(context)
        try:
            return self._sealer.unseal(blob, ctx)
        except HsmError as exc:
            code = "SEALED_BLOB_INVALID" if exc.code in _BLOB_INVALID else exc.code.value
            raise SealingError(code, exc.message) from None
