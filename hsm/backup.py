"""Backups of a node's long-lived secrets to an offline RSA key in a backup token.

Scheme (hybrid, like HPKE's KEM/DEM split): a fresh AES-256 data key
encrypts each record with AES-256-GCM; the data key is encrypted to the
backup public key with RSA-OAEP (``CKM_RSA_PKCS_OAEP``, PKCS#11 v2.40 §2.1.8).
The private key is generated in the backup token (``CKM_RSA_PKCS_KEY_PAIR_GEN``,
3072 bits) with ``CKA_SENSITIVE`` true and ``CKA_EXTRACTABLE`` false, so:

- *create* needs only the public key (a PEM file is enough; the backup token
  can stay offline) and the node's own token to unseal its records;
- *verify* unwraps the data key inside the backup token (``C_UnwrapKey`` into
  a non-extractable session object) and runs the GCM checks there
  (``C_Decrypt`` with ``CKM_AES_GCM``); nothing is written and the decrypted
  bytes are dropped at once;
- *restore* does the same, re-seals the records for the node's new token and
  commits them in one transaction (nothing half-written).

SoftHSM 2.6 accepts OAEP only with SHA-1/MGF1-SHA-1; the hash is recorded in
the file (``key_wrap``) and chosen by ``HsmConfig.oaep_hash``.

Presignatures and nonces are never backed up (:data:`~hsm.sealer.BACKUP_KINDS`):
a restored copy could be used a second time, which reveals the key share.

File format v1 (JSON, UTF-8)::

    {"format": "mpc-custody-hsm-backup", "version": 1,
     "manifest": {..., "records": [{"kind", "key_id", "epoch", "format_version",
                                    "public"?: b64}, ...]},
     "manifest_sha256": hex,
     "wrapped_key": b64, "manifest_seal": {"iv": b64, "tag": b64},
     "records": [{"iv": b64, "ct": b64}, ...]}

A manifest record's optional ``public`` is the record's non-secret companion
data (:attr:`hsm.store.SealedRecord.public`, e.g. a share's scheme and public
key package), authenticated with the manifest.

``manifest_sha256`` is SHA-256 of the canonical manifest JSON (sorted keys,
no spaces); record ``i``'s GCM additional data is
``"mpc-custody/backup/v1/record" || manifest_sha256 || u32(i)``, and
``manifest_seal`` is a GCM tag over the empty string with additional data
``"mpc-custody/backup/v1/manifest" || manifest_sha256``, so the manifest is
authenticated under the data key even for an empty backup.

Origin is not authenticated (anyone with the public key can write a backup):
restore checks cluster, node and kinds; the node layer should also check a
restored share against the cluster's public key package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import struct
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import MGF, Attribute, GCMParams, KeyType, Mechanism, ObjectClass, Session
from pkcs11 import exceptions as p11e

from hsm.config import HsmConfig, OaepHash
from hsm.errors import Code, HsmError
from hsm.module import open_session, operation_failed
from hsm.sealer import BACKUP_KINDS, RecordKind, Sealer
from hsm.store import SealedRecord, SealedStore, seal_record

FORMAT = "mpc-custody-hsm-backup"
VERSION = 1
DEFAULT_LABEL = "backup-key"
CIPHER = "AES-256-GCM"
_RECORD_AD = b"mpc-custody/backup/v1/record"
_MANIFEST_AD = b"mpc-custody/backup/v1/manifest"
_KEY_WRAP = {"sha1": "RSA-OAEP-SHA1-MGF1SHA1", "sha256": "RSA-OAEP-SHA256-MGF1SHA256"}
_OAEP_P11 = {
    "sha1": (Mechanism.SHA_1, MGF.SHA1, None),
    "sha256": (Mechanism.SHA256, MGF.SHA256, None),
}


def _corrupted(why: str) -> HsmError:
    return HsmError(Code.BACKUP_CORRUPTED, f"backup is corrupted: {why}")


# -- backup key ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupPublicKey:
    """The backup key's public half (SubjectPublicKeyInfo DER); not secret."""

    spki: bytes

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.spki).hexdigest()

    def to_pem(self) -> bytes:
        key = serialization.load_der_public_key(self.spki)
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, pem: bytes) -> BackupPublicKey:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 3072:
            raise ValueError("backup key must be RSA with at least 3072 bits")
        return cls(
            key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def wrap(self, data_key: bytes, oaep_hash: OaepHash) -> bytes:
        key = serialization.load_der_public_key(self.spki)
        assert isinstance(key, rsa.RSAPublicKey)
        h = hashes.SHA1() if oaep_hash == "sha1" else hashes.SHA256()
        return key.encrypt(data_key, padding.OAEP(padding.MGF1(h), h, None))


class BackupKeyHolder:
    """A session on the backup token holding the backup key pair."""

    def __init__(self, session: Session, config: HsmConfig, label: str) -> None:
        self._session = session
        self._config = config
        self._label = label
        try:
            self._private: Any = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label=label)
            public = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.RSA, label=label)
            n, e = public[Attribute.MODULUS], public[Attribute.PUBLIC_EXPONENT]
        except (p11e.NoSuchKey, p11e.MultipleObjectsReturned):
            session.close()
            raise HsmError(
                Code.BACKUP_KEY_NOT_FOUND,
                f"no single RSA key pair labelled {label!r} in token {config.token_label!r}",
            ) from None
        numbers = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big"))
        self._public = BackupPublicKey(
            numbers.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @classmethod
    def open(cls, config: HsmConfig, *, label: str = DEFAULT_LABEL) -> BackupKeyHolder:
        required = (Mechanism.RSA_PKCS_OAEP, Mechanism.AES_GCM)
        return cls(open_session(config, required=required), config, label)

    @classmethod
    def generate(
        cls, config: HsmConfig, *, label: str = DEFAULT_LABEL, bits: int = 3072
    ) -> BackupKeyHolder:
        """Create the backup key pair in the token (once) and open it."""
        session = open_session(config, required=(Mechanism.RSA_PKCS_KEY_PAIR_GEN,))
        try:
            if any(True for _ in session.get_objects({Attribute.LABEL: label})):
                raise HsmError(
                    Code.HSM_KEY_IN_USE,
                    f"token {config.token_label!r} already has objects labelled {label!r}",
                )
            session.generate_keypair(
                KeyType.RSA,
                bits,
                label=label,
                id=label.encode(),
                store=True,
                public_template={Attribute.ENCRYPT: True, Attribute.WRAP: True},
                private_template={
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.DECRYPT: True,
                    Attribute.UNWRAP: True,
                    Attribute.SIGN: False,
                },
            )
        except p11e.PKCS11Error as exc:
            session.close()
            raise operation_failed("generating the backup key pair", exc) from None
        except BaseException:
            session.close()
            raise
        return cls(session, config, label)

    def __repr__(self) -> str:
        return f"BackupKeyHolder(token={self._config.token_label!r}, label={self._label!r})"

    def close(self) -> None:
        self._session.close()

    @property
    def public_key(self) -> BackupPublicKey:
        return self._public

    @contextmanager
    def _data_key(self, wrapped: bytes, oaep_hash: OaepHash) -> Iterator[Any]:
        """``C_UnwrapKey`` the data key into a non-extractable session object."""
        try:
            key = self._private.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.AES,
                wrapped,
                mechanism=Mechanism.RSA_PKCS_OAEP,
                mechanism_param=_OAEP_P11[oaep_hash],
                store=False,
                template={
                    Attribute.TOKEN: False,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.DECRYPT: True,
                    Attribute.ENCRYPT: False,
                },
            )
        except (p11e.WrappedKeyInvalid, p11e.WrappedKeyLenRange, p11e.EncryptedDataInvalid):
            raise _corrupted("the wrapped data key does not decrypt") from None
        except (p11e.GeneralError, p11e.FunctionFailed, p11e.ArgumentsBad) as exc:
            raise _corrupted(f"unwrapping the data key failed ({type(exc).__name__})") from None
        except p11e.PKCS11Error as exc:
            raise operation_failed("unwrapping the backup data key", exc) from None
        try:
            yield key
        finally:
            with suppress(p11e.PKCS11Error):
                key.destroy()


# -- manifest and file --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    kind: RecordKind
    key_id: str
    epoch: int
    format_version: int
    #: The record's non-secret companion data (:attr:`SealedRecord.public`).
    public: bytes = b""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "key_id": self.key_id,
            "epoch": self.epoch,
            "format_version": self.format_version,
        }
        if self.public:
            out["public"] = _enc(self.public)
        return out

    @classmethod
    def from_json(cls, raw: Any) -> ManifestEntry:
        public = raw.get("public")
        return cls(
            RecordKind(raw["kind"]),
            _str(raw["key_id"]),
            _int(raw["epoch"]),
            _int(raw["format_version"]),
            _b64(public) if public is not None else b"",
        )


@dataclass(frozen=True, slots=True)
class BackupManifest:
    cluster_id: str
    node_id: int
    created_at: str
    backup_key_fingerprint: str
    key_wrap: str
    entries: tuple[ManifestEntry, ...]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.kind.value] = out.get(e.kind.value, 0) + 1
        return out

    @property
    def oaep_hash(self) -> OaepHash:
        for name, wrap in _KEY_WRAP.items():
            if wrap == self.key_wrap:
                return "sha1" if name == "sha1" else "sha256"
        raise _corrupted(f"unknown key wrap {self.key_wrap!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "node_id": self.node_id,
            "created_at": self.created_at,
            "backup_key_sha256": self.backup_key_fingerprint,
            "key_wrap": self.key_wrap,
            "cipher": CIPHER,
            "records": [e.to_json() for e in self.entries],
            "counts": self.counts,
        }

    def canonical(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: Any) -> BackupManifest:
        try:
            if raw["cipher"] != CIPHER:
                raise _corrupted(f"unknown cipher {raw['cipher']!r}")
            manifest = cls(
                cluster_id=_str(raw["cluster_id"]),
                node_id=_int(raw["node_id"]),
                created_at=_str(raw["created_at"]),
                backup_key_fingerprint=_str(raw["backup_key_sha256"]),
                key_wrap=_str(raw["key_wrap"]),
                entries=tuple(ManifestEntry.from_json(e) for e in raw["records"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _corrupted(f"malformed manifest ({type(exc).__name__})") from None
        if manifest.counts != raw.get("counts"):
            raise _corrupted("manifest counts do not match its records")
        manifest.oaep_hash  # noqa: B018 - validates key_wrap
        return manifest


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("expected a string")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError("expected an integer")
    return v


def _b64(v: Any) -> bytes:
    try:
        return base64.b64decode(_str(v), validate=True)
    except (binascii.Error, TypeError):
        raise _corrupted("bad base64") from None


def _record_ad(digest: bytes, index: int) -> bytes:
    return _RECORD_AD + digest + struct.pack(">I", index)


@dataclass(frozen=True, slots=True)
class _BackupFile:
    manifest: BackupManifest
    digest: bytes
    wrapped_key: bytes
    seal_iv: bytes
    seal_tag: bytes
    records: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def read(cls, path: Path) -> _BackupFile:
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise HsmError(Code.BACKUP_CORRUPTED, f"backup file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise _corrupted(f"{path} is not a readable backup ({type(exc).__name__})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise _corrupted(f"{path} is not an {FORMAT} file")
        if raw.get("version") != VERSION:
            raise _corrupted(f"unsupported backup version {raw.get('version')!r}")
        manifest = BackupManifest.from_json(raw.get("manifest"))
        digest = hashlib.sha256(manifest.canonical()).digest()
        try:
            if raw["manifest_sha256"] != digest.hex():
                raise _corrupted("manifest hash mismatch")
            records = tuple((_b64(r["iv"]), _b64(r["ct"])) for r in raw["records"])
            seal = raw["manifest_seal"]
            out = cls(
                manifest,
                digest,
                _b64(raw["wrapped_key"]),
                _b64(seal["iv"]),
                _b64(seal["tag"]),
                records,
            )
        except (KeyError, TypeError):
            raise _corrupted("missing or malformed field") from None
        if len(records) != len(manifest.entries):
            raise _corrupted("record count differs from the manifest")
        return out

    def check(
        self, holder: BackupKeyHolder, *, cluster_id: str | None, node_id: int | None
    ) -> None:
        check_manifest(
            self.manifest,
            backup_key_fingerprint=holder.public_key.fingerprint,
            cluster_id=cluster_id,
            node_id=node_id,
        )

    def decrypt_all(self, holder: BackupKeyHolder) -> Iterator[bytes]:
        """Yield each record's plaintext, decrypted inside the backup token."""
        with holder._data_key(self.wrapped_key, self.manifest.oaep_hash) as key:
            _token_gcm(key, self.seal_iv, self.seal_tag, _MANIFEST_AD + self.digest, "manifest")
            for i, (iv, ct) in enumerate(self.records):
                yield _token_gcm(key, iv, ct, _record_ad(self.digest, i), f"record {i}")


def read_manifest(path: Path) -> BackupManifest:
    """Parse ``path`` and return its manifest, without any HSM (``BACKUP_CORRUPTED``
    if it is not a well-formed backup). Nothing is authenticated yet: a caller
    uses this to refuse a foreign or wrong-node backup before touching tokens,
    then :func:`verify_backup` or :func:`restore_backup` checks it in the token."""
    return _BackupFile.read(path).manifest


def check_manifest(
    manifest: BackupManifest,
    *,
    backup_key_fingerprint: str,
    cluster_id: str | None,
    node_id: int | None,
) -> None:
    """``BACKUP_FOREIGN`` (other backup key or cluster), ``BACKUP_WRONG_NODE``,
    ``BACKUP_KIND_REFUSED`` (a presignature or nonce record)."""
    m = manifest
    if m.backup_key_fingerprint != backup_key_fingerprint:
        raise HsmError(
            Code.BACKUP_FOREIGN,
            f"backup is encrypted to key {m.backup_key_fingerprint[:16]}…, not to this "
            f"backup token's key {backup_key_fingerprint[:16]}…",
        )
    if cluster_id is not None and m.cluster_id != cluster_id:
        raise HsmError(
            Code.BACKUP_FOREIGN,
            f"backup belongs to cluster {m.cluster_id!r}, not {cluster_id!r}",
        )
    if node_id is not None and m.node_id != node_id:
        raise HsmError(
            Code.BACKUP_WRONG_NODE, f"backup is of node {m.node_id}, not of node {node_id}"
        )
    refused = sorted({e.kind.value for e in m.entries} - set(BACKUP_KINDS))
    if refused:
        raise HsmError(
            Code.BACKUP_KIND_REFUSED,
            f"backup holds {', '.join(refused)} records, which are never restored",
        )


def _token_gcm(key: Any, iv: bytes, ct: bytes, ad: bytes, what: str) -> bytes:
    if len(iv) != 12 or len(ct) < 16:
        raise _corrupted(f"{what} is truncated")
    try:
        return bytes(
            key.decrypt(ct, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, ad, 128))
        )
    except (
        p11e.EncryptedDataInvalid,
        p11e.EncryptedDataLenRange,
        p11e.GeneralError,
        p11e.FunctionFailed,
    ):
        raise _corrupted(f"{what} fails authentication") from None
    except p11e.PKCS11Error as exc:
        raise operation_failed(f"decrypting backup {what}", exc) from None


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file + fsync + link (refuses to overwrite) + directory fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise HsmError(Code.BACKUP_EXISTS, f"{path} already exists") from None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def _build_backup(
    path: Path,
    *,
    cluster_id: str,
    node_id: int,
    public_key: BackupPublicKey,
    oaep_hash: OaepHash,
    items: list[tuple[ManifestEntry, bytes]],
    created_at: str,
) -> BackupManifest:
    manifest = BackupManifest(
        cluster_id,
        node_id,
        created_at,
        public_key.fingerprint,
        _KEY_WRAP[oaep_hash],
        tuple(e for e, _ in items),
    )
    digest = hashlib.sha256(manifest.canonical()).digest()
    data_key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(data_key)
    seal_iv = os.urandom(12)
    records = []
    for i, (_, plaintext) in enumerate(items):
        iv = os.urandom(12)
        ct = aead.encrypt(iv, plaintext, _record_ad(digest, i))
        records.append({"iv": _enc(iv), "ct": _enc(ct)})
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "manifest": manifest.to_json(),
        "manifest_sha256": digest.hex(),
        "wrapped_key": _enc(public_key.wrap(data_key, oaep_hash)),
        "manifest_seal": {
            "iv": _enc(seal_iv),
            "tag": _enc(aead.encrypt(seal_iv, b"", _MANIFEST_AD + digest)),
        },
        "records": records,
    }
    del data_key, aead
    _write_atomic(path, json.dumps(doc, indent=1).encode() + b"\n")
    return manifest


def _enc(b: bytes) -> str:
    return base64.b64encode(b).decode()


# -- the three operations -----------------------------------------------------


def create_backup(
    path: Path,
    *,
    sealer: Sealer,
    store: SealedStore,
    cluster_id: str,
    public_key: BackupPublicKey,
    oaep_hash: OaepHash = "sha256",
    kinds: Collection[RecordKind] = BACKUP_KINDS,
    _now: datetime | None = None,
) -> BackupManifest:
    """Write a backup of ``store``'s shares (and identity) to ``path``.

    Refuses ``kinds`` outside :data:`BACKUP_KINDS` (``BACKUP_KIND_REFUSED``);
    presignature and nonce records in the store are skipped. Each record is
    unsealed (and so authenticated) in the node's token before it is
    re-encrypted; the file appears whole or not at all.
    """
    refused = sorted(k.value for k in set(kinds) - BACKUP_KINDS)
    if refused:
        raise HsmError(
            Code.BACKUP_KIND_REFUSED,
            f"{', '.join(refused)} records are never backed up: a restored copy could be "
            "used twice",
        )
    items = [
        (
            ManifestEntry(r.kind, r.key_id, r.epoch, r.format_version, r.public),
            sealer.unseal(r.blob, r.context(store.node_id)),
        )
        for r in store.records(kinds)
    ]
    created_at = (_now or datetime.now(UTC)).isoformat(timespec="seconds")
    return _build_backup(
        path,
        cluster_id=cluster_id,
        node_id=store.node_id,
        public_key=public_key,
        oaep_hash=oaep_hash,
        items=items,
        created_at=created_at,
    )


#: Called with each record and its plaintext before a verify or restore accepts
#: it (e.g. the node layer checks a share against its public key package);
#: raises :class:`HsmError` to refuse the backup.
RecordCheck = Callable[[ManifestEntry, bytes], None]


def verify_backup(
    path: Path,
    holder: BackupKeyHolder,
    *,
    cluster_id: str | None = None,
    node_id: int | None = None,
    check: RecordCheck | None = None,
) -> BackupManifest:
    """Check ``path`` fully inside the backup token; write nothing; return its manifest."""
    backup = _BackupFile.read(path)
    backup.check(holder, cluster_id=cluster_id, node_id=node_id)
    for entry, plaintext in zip(backup.manifest.entries, backup.decrypt_all(holder), strict=True):
        if check is not None:
            check(entry, plaintext)
        del plaintext
    return backup.manifest


def restore_backup(
    path: Path,
    holder: BackupKeyHolder,
    *,
    target: Sealer,
    store: SealedStore,
    cluster_id: str,
    check: RecordCheck | None = None,
) -> BackupManifest:
    """Rebuild ``store.node_id``'s shares from ``path`` under ``target``'s token.

    All records are decrypted, checked (``check``) and re-sealed in memory
    first, then inserted in one transaction; any error leaves the store as it
    was. The target token gets sealing key v1 if it has none (a fresh token).
    """
    backup = _BackupFile.read(path)
    backup.check(holder, cluster_id=cluster_id, node_id=store.node_id)
    taken = [e for e in backup.manifest.entries if store.get(e.kind, e.key_id, e.epoch) is not None]
    if taken:
        raise HsmError(
            Code.RESTORE_TARGET_NOT_EMPTY,
            f"node {store.node_id} already has {len(taken)} of the backed-up records "
            f"(e.g. {taken[0].kind.value} {taken[0].key_id!r}); restore only into a fresh node",
        )
    plaintexts = list(backup.decrypt_all(holder))
    if check is not None:
        for entry, plaintext in zip(backup.manifest.entries, plaintexts, strict=True):
            check(entry, plaintext)
    if not target.key_versions():
        target.rotate()
    records: list[SealedRecord] = [
        seal_record(
            target,
            store.node_id,
            e.kind,
            e.key_id,
            e.epoch,
            plaintext,
            format_version=e.format_version,
            public=e.public,
        )
        for e, plaintext in zip(backup.manifest.entries, plaintexts, strict=True)
    ]
    plaintexts.clear()
    store.insert_all(records)
    return backup.manifest
