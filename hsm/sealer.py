"""Sealing node secrets under a non-extractable AES-256 key in the node's token.

A sealed blob is AES-256-GCM (``CKM_AES_GCM``, PKCS#11 v2.40 §2.12.3,
``CK_GCM_PARAMS`` with a 96-bit IV from ``os.urandom`` and a 128-bit tag)
computed inside the token, so the sealing key never leaves it: it is created
with ``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE`` true and
``CKA_EXTRACTABLE``, ``CKA_WRAP``, ``CKA_MODIFIABLE`` false (hence
``CKA_ALWAYS_SENSITIVE`` and ``CKA_NEVER_EXTRACTABLE``).

Blob format v1 (integers big-endian)::

    "MCSB" | u8 version=1 | u8 len | key label | 12-byte IV | u16 len | context | ciphertext||tag

Everything before the ciphertext is the GCM additional data, so the key
label, the IV and the :class:`SealContext` (node id, key id, epoch, kind,
record format version) are authenticated: a blob moved to another node, key,
epoch or kind, or edited anywhere, does not open. Random IVs bound each key
version to well under 2**32 seals (NIST SP 800-38D §8.3); :meth:`Sealer.rotate`
starts a new key version.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass, Session
from pkcs11 import exceptions as p11e

from hsm.config import HsmConfig
from hsm.errors import Code, HsmError
from hsm.module import open_session, operation_failed

MAGIC = b"MCSB"
BLOB_VERSION = 1
IV_LEN = 12
TAG_LEN = 16
_CONTEXT_TAG = b"mpc-custody/seal-context/v1"

#: Template of a sealing key (attributes of PKCS#11 v2.40 §4.7 and §4.8).
SEAL_KEY_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}


class RecordKind(StrEnum):
    """What a sealed record holds; backups take only :data:`BACKUP_KINDS`."""

    SHARE = "share"
    PRESIGNATURE = "presignature"
    NONCE = "nonce"
    IDENTITY = "identity"


#: Restoring a presignature or nonce could make a node use it twice, which
#: leaks the key share (a reused FROST nonce or DKLs23 presignature).
BACKUP_KINDS = frozenset({RecordKind.SHARE, RecordKind.IDENTITY})


@dataclass(frozen=True, slots=True)
class SealContext:
    """What a sealed blob is bound to; authenticated as GCM additional data."""

    node_id: int
    key_id: str
    epoch: int
    kind: RecordKind
    format_version: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.node_id < 2**32:
            raise ValueError("node_id out of range")
        if not 0 <= self.epoch < 2**64 or not 0 <= self.format_version < 2**16:
            raise ValueError("epoch or format_version out of range")
        if not 0 < len(self.key_id.encode()) < 256:
            raise ValueError("key_id must be 1..255 bytes")
        object.__setattr__(self, "kind", RecordKind(self.kind))

    def encode(self) -> bytes:
        """Canonical, injective encoding (domain tag, fixed-width and length-prefixed fields)."""
        kind, key_id = self.kind.value.encode(), self.key_id.encode()
        return (
            bytes([len(_CONTEXT_TAG)])
            + _CONTEXT_TAG
            + bytes([len(kind)])
            + kind
            + struct.pack(">I", self.node_id)
            + bytes([len(key_id)])
            + key_id
            + struct.pack(">QH", self.epoch, self.format_version)
        )

    @classmethod
    def decode(cls, data: bytes) -> SealContext:
        try:
            pos = 1 + data[0]
            if data[1:pos] != _CONTEXT_TAG:
                raise ValueError("context tag")
            kind = data[pos + 1 : pos + 1 + data[pos]].decode()
            pos += 1 + data[pos]
            (node_id,) = struct.unpack_from(">I", data, pos)
            pos += 4
            key_id = data[pos + 1 : pos + 1 + data[pos]].decode()
            pos += 1 + data[pos]
            epoch, version = struct.unpack_from(">QH", data, pos)
            if pos + 10 != len(data):
                raise ValueError("trailing bytes")
            ctx = cls(node_id, key_id, epoch, RecordKind(kind), version)
        except (IndexError, ValueError, struct.error, UnicodeDecodeError):
            raise HsmError(Code.HSM_SEALED_BLOB_INVALID, "malformed seal context") from None
        if ctx.encode() != data:
            raise HsmError(Code.HSM_SEALED_BLOB_INVALID, "non-canonical seal context")
        return ctx


@dataclass(frozen=True, slots=True)
class SealedBlob:
    """A parsed blob; ``header`` is the GCM additional data."""

    key_label: str
    iv: bytes
    context: SealContext
    header: bytes
    ciphertext: bytes

    @classmethod
    def parse(cls, blob: bytes) -> SealedBlob:
        bad = HsmError(Code.HSM_SEALED_BLOB_INVALID, "not a sealed blob (truncated or malformed)")
        if len(blob) < 8 or blob[:4] != MAGIC:
            raise bad
        if blob[4] != BLOB_VERSION:
            raise HsmError(
                Code.HSM_SEALED_BLOB_INVALID, f"unsupported sealed blob version {blob[4]}"
            )
        pos = 6 + blob[5]
        try:
            label = blob[6:pos].decode("ascii")
        except UnicodeDecodeError:
            raise bad from None
        iv = blob[pos : pos + IV_LEN]
        pos += IV_LEN
        if len(blob) < pos + 2:
            raise bad
        (ctx_len,) = struct.unpack_from(">H", blob, pos)
        pos += 2
        context = SealContext.decode(blob[pos : pos + ctx_len])
        pos += ctx_len
        if len(blob) < pos + TAG_LEN:
            raise bad
        return cls(label, iv, context, blob[:pos], blob[pos:])


def _header(label: str, iv: bytes, context: SealContext) -> bytes:
    raw_label, ctx = label.encode("ascii"), context.encode()
    return (
        MAGIC
        + bytes([BLOB_VERSION, len(raw_label)])
        + raw_label
        + iv
        + struct.pack(">H", len(ctx))
        + ctx
    )


def context_mismatch(found: SealContext, expected: SealContext) -> list[str]:
    return [
        f
        for f in ("node_id", "key_id", "epoch", "kind", "format_version")
        if getattr(found, f) != getattr(expected, f)
    ]


class Sealer:
    """Seals and unseals a node's records with its token's sealing keys.

    Holds one logged-in PKCS#11 session; PKCS#11 sessions must not be used by
    two threads at once (v2.40 §5.1.2), so calls are serialised by a lock.
    The active key is the highest version; older versions still unseal until
    :meth:`destroy_key` removes them.

    Another process may rotate the token's keys (``custody hsm rotate`` while
    the node runs). With ``refresh_interval`` set, :meth:`seal` re-lists the
    token's keys once that many seconds have passed, so new records go under
    the newest version soon after it appears; :meth:`unseal` re-lists at once
    when a blob names a version it does not know yet.
    """

    def __init__(
        self, session: Session, config: HsmConfig, *, refresh_interval: float | None = None
    ) -> None:
        self._session = session
        self._config = config
        self._lock = threading.RLock()
        self._keys: dict[int, Any] = {}
        self._pattern = re.compile(re.escape(config.seal_key_prefix) + r"([1-9][0-9]*)")
        self._refresh_interval = refresh_interval
        self._loaded_at = 0.0
        self._load_keys()

    @classmethod
    def open(
        cls,
        config: HsmConfig,
        *,
        create_key: bool = False,
        refresh_interval: float | None = None,
    ) -> Sealer:
        """Open the token; with ``create_key``, make sealing key v1 if there is none."""
        session = open_session(config, required=(Mechanism.AES_GCM, Mechanism.AES_KEY_GEN))
        try:
            sealer = cls(session, config, refresh_interval=refresh_interval)
        except BaseException:
            session.close()
            raise
        if create_key and not sealer._keys:
            sealer.rotate()
        return sealer

    def __repr__(self) -> str:
        return f"Sealer(token={self._config.token_label!r}, versions={self.key_versions()})"

    def close(self) -> None:
        with self._lock:
            self._keys.clear()
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def token_label(self) -> str:
        return self._config.token_label

    def label(self, version: int) -> str:
        return f"{self._config.seal_key_prefix}{version}"

    def key_versions(self) -> list[int]:
        return sorted(self._keys)

    @property
    def active_version(self) -> int:
        if not self._keys:
            raise HsmError(
                Code.HSM_KEY_NOT_FOUND,
                f"token {self.token_label!r} has no sealing key "
                f"({self._config.seal_key_prefix}N); initialise the node first",
            )
        return max(self._keys)

    def _load_keys(self) -> None:
        keys: dict[int, Any] = {}
        try:
            for obj in self._session.get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
            ):
                match = self._pattern.fullmatch(obj[Attribute.LABEL])
                if not match:
                    continue
                version = int(match.group(1))
                if version in keys:
                    raise HsmError(
                        Code.HSM_KEY_AMBIGUOUS,
                        f"two keys labelled {self.label(version)!r} in {self.token_label!r}",
                    )
                keys[version] = obj
        except p11e.PKCS11Error as exc:
            raise operation_failed("listing sealing keys", exc) from None
        self._keys = keys
        self._loaded_at = time.monotonic()

    def refresh(self) -> None:
        """Re-list the token's sealing keys (versions added or destroyed elsewhere)."""
        with self._lock:
            self._load_keys()

    def rotate(self) -> int:
        """Generate the next sealing key version (``CKM_AES_KEY_GEN``, 256 bits)
        and make it active; returns its version."""
        with self._lock:
            version = max(self._keys, default=0) + 1
            try:
                key = self._session.generate_key(
                    KeyType.AES,
                    256,
                    label=self.label(version),
                    id=self.label(version).encode(),
                    store=True,
                    template=SEAL_KEY_TEMPLATE,
                )
            except p11e.PKCS11Error as exc:
                raise operation_failed(f"generating {self.label(version)}", exc) from None
            self._keys[version] = key
            return version

    def destroy_key(self, version: int) -> None:
        """``C_DestroyObject`` on an old version; blobs sealed under it stop opening."""
        with self._lock:
            if version not in self._keys:
                raise HsmError(Code.HSM_KEY_NOT_FOUND, f"no sealing key {self.label(version)!r}")
            if version == self.active_version:
                raise HsmError(
                    Code.HSM_KEY_IN_USE, f"{self.label(version)!r} is the active sealing key"
                )
            try:
                self._keys.pop(version).destroy()
            except p11e.PKCS11Error as exc:
                raise operation_failed(f"destroying {self.label(version)}", exc) from None

    def seal(self, plaintext: bytes, context: SealContext) -> bytes:
        """Encrypt ``plaintext`` under the active key, bound to ``context``."""
        with self._lock:
            if (
                self._refresh_interval is not None
                and time.monotonic() - self._loaded_at >= self._refresh_interval
            ):
                self._load_keys()
            version = self.active_version
            label = self.label(version)
            iv = os.urandom(IV_LEN)
            header = _header(label, iv, context)
            try:
                ciphertext = self._keys[version].encrypt(
                    bytes(plaintext),
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(iv, header, TAG_LEN * 8),
                )
            except p11e.PKCS11Error as exc:
                raise operation_failed(f"sealing with {label}", exc) from None
            return header + bytes(ciphertext)

    def unseal(self, blob: bytes, expected: SealContext) -> bytes:
        """Decrypt ``blob`` if it is intact and sealed for exactly ``expected``.

        ``HSM_SEALED_BLOB_INVALID``: malformed, or the GCM tag does not verify
        (tampered, or sealed by another token's key); ``HSM_CONTEXT_MISMATCH``:
        intact framing but for another node, key, epoch, kind or format;
        ``HSM_KEY_NOT_FOUND``: its key version is not (or no longer) in the token.
        """
        parsed = SealedBlob.parse(blob)
        fields = context_mismatch(parsed.context, expected)
        if fields:
            raise HsmError(
                Code.HSM_CONTEXT_MISMATCH,
                f"sealed blob is bound to another {', '.join(fields)} "
                f"(blob: node {parsed.context.node_id} {parsed.context.kind} "
                f"{parsed.context.key_id!r} epoch {parsed.context.epoch}; expected: node "
                f"{expected.node_id} {expected.kind} {expected.key_id!r} epoch {expected.epoch})",
            )
        match = self._pattern.fullmatch(parsed.key_label)
        with self._lock:
            version = int(match.group(1)) if match else None
            if version is not None and version not in self._keys:
                self._load_keys()  # rotated by another process since we listed
            key = self._keys.get(version) if version is not None else None
            if key is None:
                raise HsmError(
                    Code.HSM_KEY_NOT_FOUND,
                    f"sealing key {parsed.key_label!r} is not in token {self.token_label!r}",
                )
            try:
                plaintext = key.decrypt(
                    parsed.ciphertext,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(parsed.iv, parsed.header, TAG_LEN * 8),
                )
            except (
                p11e.EncryptedDataInvalid,
                p11e.EncryptedDataLenRange,
                p11e.GeneralError,
                p11e.FunctionFailed,
            ):
                raise HsmError(
                    Code.HSM_SEALED_BLOB_INVALID,
                    f"sealed blob failed authentication under {parsed.key_label!r} "
                    "(tampered, or sealed by another token)",
                ) from None
            except p11e.PKCS11Error as exc:
                raise operation_failed(f"unsealing with {parsed.key_label}", exc) from None
            return bytes(plaintext)

    def key_version_of(self, blob: bytes) -> int | None:
        """The key version a blob was sealed under (``None`` if foreign prefix)."""
        match = self._pattern.fullmatch(SealedBlob.parse(blob).key_label)
        return int(match.group(1)) if match else None

    def reseal(self, blob: bytes, expected: SealContext) -> bytes:
        """Re-encrypt ``blob`` under the active key (unchanged if it already is).

        PKCS#11 has no in-token GCM-to-GCM re-encryption (``C_WrapKey`` with
        ``CKM_AES_GCM`` is not offered by SoftHSM2), so the plaintext passes
        through this process's memory, as it does whenever the node signs.
        """
        if self.key_version_of(blob) == self.active_version:
            self.unseal(blob, expected)  # still authenticate it
            return blob
        return self.seal(self.unseal(blob, expected), expected)
