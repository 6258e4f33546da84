"""Sealing of secret material before it reaches the node's database.

Everything secret a node stores (key shares, pool nonces, its identity) goes
through a :class:`Sealer` with a :class:`SealContext` as associated data, so
a blob cannot be moved to another node, key, epoch or kind.

:class:`FileSealer` is the development sealer: AES-256-GCM with a key file
(mode 0600) beside the node's data. It keeps the database free of plaintext
but is only as strong as that file's protection; production nodes use the
PKCS#11 sealer of ``hsm/``, which keeps the key inside the token.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from signer_nodes.mpc.encoding import Writer

_MAGIC = b"SEAL"
_VERSION = 1


class SealingError(Exception):
    code = "SEALED_BLOB_INVALID"


@dataclass(frozen=True, slots=True)
class SealContext:
    node_id: int
    key_id: str
    epoch: int
    kind: str  # share | nonce | identity | presignature

    def aad(self) -> bytes:
        return bytes(
            Writer()
            .fixed(b"mpc-custody/seal-context/v1")
            .u16(self.node_id)
            .var(self.key_id.encode())
            .u32(self.epoch)
            .var(self.kind.encode())
        )


class Sealer(Protocol):
    def seal(self, plaintext: bytes, context: SealContext) -> bytes: ...

    def unseal(self, blob: bytes, context: SealContext) -> bytes: ...


class FileSealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256 key expected")
        self._aead = AESGCM(key)

    @classmethod
    def open(cls, path: Path) -> FileSealer:
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        return cls(path.read_bytes())

    def seal(self, plaintext: bytes, context: SealContext) -> bytes:
        nonce = secrets.token_bytes(12)
        return (
            _MAGIC + bytes([_VERSION]) + nonce + self._aead.encrypt(nonce, plaintext, context.aad())
        )

    def unseal(self, blob: bytes, context: SealContext) -> bytes:
        if len(blob) < 5 + 12 + 16 or blob[:4] != _MAGIC or blob[4] != _VERSION:
            raise SealingError("not a sealed blob of a known version")
        try:
            return self._aead.decrypt(blob[5:17], blob[17:], context.aad())
        except InvalidTag:
            raise SealingError(
                "sealed blob fails authentication (tampered or another context)"
            ) from None

    def __repr__(self) -> str:
        return "FileSealer(<key redacted>)"
