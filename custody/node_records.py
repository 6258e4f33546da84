"""A signer node's long-lived secrets as the HSM layer sees them.

Node ``i`` keeps two kinds of long-lived sealed material: its key shares
(table ``key_shares`` of its database, one sealed key package per key and
epoch) and its identity key (``<data-dir>/node-<i>/identity.sealed``).
:class:`NodeShareStore` presents both as :class:`hsm.store.SealedRecord`\\ s,
which is what :mod:`hsm.backup` backs up and restores. Pool entries (table
``nonces``: FROST nonces and DKLs23 presignatures) are deliberately not part
of it: a restored copy could be used a second time.

:func:`check_record` is the node layer's check of a decrypted backup record:
a share must be this node's share of the key named by the public key package
stored with it, and an identity must be the one ``custody.json`` lists.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import delete, select, update

from custody.config import ClusterConfig
from custody.sealed_files import IDENTITY_KEY_ID, identity_path, replace_file, write_new_file
from hsm.backup import ManifestEntry
from hsm.errors import Code, HsmError
from hsm.sealer import RecordKind
from hsm.store import SealedRecord
from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.errors import EncodingError, MpcError
from signer_nodes.mpc.frost import SUITES, KeyPackage, PublicKeyPackage
from signer_nodes.node.sealing import RECORD_FORMAT_VERSION
from signer_nodes.node.store import KeyShareRow, NodeStore, NonceRow
from signer_nodes.wire.identity import NodeIdentity

#: The node database's name for DKLs23 threshold-ECDSA shares (see signer_nodes.node.service).
ECDSA_SCHEME = "ecdsa-dkls23"


#: Columns of ``key_shares`` that identify the record or are not carried over.
_NOT_PUBLIC = {"key_id", "epoch", "created_at"}


def share_public(row: KeyShareRow) -> dict[str, Any]:
    """The non-secret columns of a share row (scheme, tenant, public key package, and
    whatever the node adds later), so a restore rebuilds the whole row."""
    out: dict[str, Any] = {}
    for column in KeyShareRow.__table__.columns:
        name = column.name
        if name in _NOT_PUBLIC or name.startswith("sealed_"):
            continue
        out[name] = getattr(row, name)
    return out


def encode_share_public(values: dict[str, Any]) -> bytes:
    """Canonical JSON of :func:`share_public` (bytes as ``{"hex": ...}``)."""
    doc = {
        k: {"hex": bytes(v).hex()} if isinstance(v, bytes | bytearray | memoryview) else v
        for k, v in values.items()
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_share_public(public: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_share_public`; needs at least ``scheme`` and
    ``public_key_package`` (``BACKUP_CORRUPTED`` otherwise)."""
    try:
        doc = json.loads(public)
        values = {
            str(k): bytes.fromhex(v["hex"]) if isinstance(v, dict) else v for k, v in doc.items()
        }
        if not isinstance(values["scheme"], str) or not isinstance(
            values["public_key_package"], bytes
        ):
            raise TypeError("scheme or public key package")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise HsmError(
            Code.BACKUP_CORRUPTED, "backup is corrupted: share record without scheme and public key"
        ) from None
    unknown = sorted(set(values) - {c.name for c in KeyShareRow.__table__.columns})
    if unknown:
        raise HsmError(
            Code.BACKUP_CORRUPTED, f"backup is corrupted: unknown share columns {unknown}"
        )
    return values


class NodeShareStore:
    """:class:`hsm.store.SealedStore` over node ``node_id``'s shares and identity."""

    def __init__(self, config: ClusterConfig, node_id: int) -> None:
        config.node(node_id)  # ConfigError for an unknown node
        self._config = config
        self._node_id = node_id
        self._db = NodeStore(config.node_database_url(node_id))
        self._identity = identity_path(config.data_dir, node_id)

    def __repr__(self) -> str:
        return f"NodeShareStore(node {self._node_id})"

    @property
    def node_id(self) -> int:
        return self._node_id

    def close(self) -> None:
        self._db.engine.dispose()

    def _identity_record(self) -> SealedRecord | None:
        try:
            blob = self._identity.read_bytes()
        except FileNotFoundError:
            return None
        return SealedRecord(RecordKind.IDENTITY, IDENTITY_KEY_ID, 0, blob, RECORD_FORMAT_VERSION)

    @staticmethod
    def _share_record(row: KeyShareRow) -> SealedRecord:
        return SealedRecord(
            RecordKind.SHARE,
            row.key_id,
            row.epoch,
            bytes(row.sealed_key_package),
            RECORD_FORMAT_VERSION,
            encode_share_public(share_public(row)),
        )

    def get(self, kind: RecordKind, key_id: str, epoch: int) -> SealedRecord | None:
        if kind == RecordKind.IDENTITY:
            record = self._identity_record()
            return record if record and (key_id, epoch) == (record.key_id, record.epoch) else None
        if kind != RecordKind.SHARE:
            return None
        with self._db.transaction() as s:
            row = s.get(KeyShareRow, key_id)
            return self._share_record(row) if row is not None and row.epoch == epoch else None

    def records(self, kinds: Collection[RecordKind] | None = None) -> list[SealedRecord]:
        out: list[SealedRecord] = []
        if kinds is None or RecordKind.SHARE in kinds:
            with self._db.transaction() as s:
                rows = s.execute(select(KeyShareRow).order_by(KeyShareRow.key_id)).scalars()
                out += [self._share_record(r) for r in rows]
        if kinds is None or RecordKind.IDENTITY in kinds:
            identity = self._identity_record()
            out += [identity] if identity else []
        return out

    def is_empty(self) -> bool:
        """No identity file and no key share: a node a restore may rebuild."""
        if self._identity.exists():
            return False
        with self._db.transaction() as s:
            return s.execute(select(KeyShareRow.key_id).limit(1)).first() is None

    def insert_all(self, records: Iterable[SealedRecord]) -> None:
        """Shares in one database transaction; the identity file is written
        inside it and removed again if the commit fails."""
        records = list(records)
        refused = sorted({r.kind.value for r in records} - {"share", "identity"})
        if refused:
            raise HsmError(
                Code.BACKUP_KIND_REFUSED, f"a node store takes no {', '.join(refused)} records"
            )
        identities = [r for r in records if r.kind == RecordKind.IDENTITY]
        if len(identities) > 1 or any(r.key_id != IDENTITY_KEY_ID for r in identities):
            raise HsmError(Code.BACKUP_CORRUPTED, "backup is corrupted: bad identity record")
        written = False
        try:
            with self._db.transaction() as s:
                for r in records:
                    if r.kind != RecordKind.SHARE:
                        continue
                    if s.get(KeyShareRow, r.key_id) is not None:
                        raise self._exists(r)
                    s.add(
                        KeyShareRow(
                            **decode_share_public(r.public),
                            key_id=r.key_id,
                            epoch=r.epoch,
                            sealed_key_package=r.blob,
                        )
                    )
                s.flush()
                if identities:
                    try:
                        write_new_file(self._identity, identities[0].blob)
                    except FileExistsError:
                        raise self._exists(identities[0]) from None
                    written = True
        except BaseException:
            if written:
                self._identity.unlink(missing_ok=True)
            raise

    def _exists(self, r: SealedRecord) -> HsmError:
        return HsmError(
            Code.STORE_RECORD_EXISTS,
            f"node {self._node_id} already has {r.kind.value} {r.key_id!r}",
        )

    def replace(self, old: SealedRecord, new: SealedRecord) -> None:
        if (old.kind, old.key_id, old.epoch) != (new.kind, new.key_id, new.epoch):
            raise ValueError("replace keeps the record key")
        if old.kind == RecordKind.IDENTITY:
            swapped = replace_file(self._identity, old.blob, new.blob)
        else:
            with self._db.transaction() as s:
                result = s.execute(
                    update(KeyShareRow)
                    .where(
                        KeyShareRow.key_id == old.key_id,
                        KeyShareRow.epoch == old.epoch,
                        KeyShareRow.sealed_key_package == old.blob,
                    )
                    .values(sealed_key_package=new.blob)
                )
                swapped = result.rowcount == 1  # type: ignore[attr-defined]
        if not swapped:
            raise HsmError(
                Code.STORE_CONFLICT,
                f"{old.kind.value} {old.key_id!r} epoch {old.epoch} changed concurrently",
            )

    def delete(self, record: SealedRecord) -> None:
        """Forget a record; a deleted share takes its pool entries with it."""
        if record.kind == RecordKind.IDENTITY:
            self._identity.unlink(missing_ok=True)
            return
        with self._db.transaction() as s:
            s.execute(delete(NonceRow).where(NonceRow.key_id == record.key_id))
            s.execute(
                delete(KeyShareRow).where(
                    KeyShareRow.key_id == record.key_id, KeyShareRow.epoch == record.epoch
                )
            )


def check_record(
    config: ClusterConfig, node_id: int, entry: ManifestEntry, plaintext: bytes
) -> None:
    """Refuse a backup record that is not node ``node_id``'s (``BACKUP_WRONG_NODE``)
    or whose share does not fit its public key package (``RESTORE_RECORD_MISMATCH``)."""
    if entry.kind == RecordKind.IDENTITY:
        try:
            identity = NodeIdentity.from_bytes(plaintext)
        except (EncodingError, ValueError):
            raise _mismatch("the identity record does not decode") from None
        if identity.public != config.node(node_id).public_identity:
            raise HsmError(
                Code.BACKUP_WRONG_NODE,
                f"the identity in this backup is not node {node_id}'s identity in custody.json",
            )
        return
    if entry.kind != RecordKind.SHARE:
        raise HsmError(Code.BACKUP_KIND_REFUSED, f"{entry.kind.value} records are never restored")
    values = decode_share_public(entry.public)
    scheme, public = values["scheme"], values["public_key_package"]
    try:
        if scheme == ECDSA_SCHEME:
            share = KeyShare.from_bytes(plaintext)
            if share.public.to_bytes() != public:
                raise _mismatch(f"share of {entry.key_id!r} names another public key package")
            key = share.key_package
        elif scheme in SUITES:
            key = KeyPackage.from_bytes(plaintext)
        else:
            raise _mismatch(f"share of {entry.key_id!r} has unknown scheme {scheme!r}")
        package = PublicKeyPackage.from_bytes(public)
    except (MpcError, ValueError):
        raise _mismatch(f"share of {entry.key_id!r} does not decode") from None
    if key.identifier != node_id:
        raise HsmError(
            Code.BACKUP_WRONG_NODE,
            f"share of {entry.key_id!r} belongs to node {key.identifier}, not node {node_id}",
        )
    if (
        package.verifying_shares.get(node_id) != key.verifying_share
        or package.group_public_key != key.group_public_key
    ):
        raise _mismatch(f"share of {entry.key_id!r} does not match its public key package")


def _mismatch(why: str) -> HsmError:
    return HsmError(Code.RESTORE_RECORD_MISMATCH, why)
