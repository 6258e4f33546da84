"""A signer node's own policy: the chain of activated versions, its signing history, and
the history heads it remembers from its signing peers.

Every node enforces the policy itself (ARCHITECTURE.md §1), so nothing here trusts the
coordinator: a pushed version is activated only if it passes
:func:`policy.governance.verify_and_activate` against the node's CURRENT chain state
(``docs/policy-format.md`` §6), and on start-up the whole stored chain is re-verified from
the genesis document, whose hash is pinned in the node's configuration. A row edited in the
database therefore stops the node (``POLICY_STATE_CORRUPT``) instead of silently changing
what it signs.

The history is the hash chain of ``policy.history.NodeHistory``
(``head_k = H(tag("history") || head_{k-1} || entry_k)``, §8). :meth:`PolicyState.record`
appends an entry inside a caller's SQLAlchemy session, so the node records what it signs in
the SAME transaction that consumes the nonce or presignature: either both happen or
neither. Appends serialise on one head row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
serialises writers anyway), and the stored head of every row is re-checked when the log is
read back.

Tables live in the node's database (same URL as :class:`signer_nodes.node.store.NodeStore`)
under their own metadata: ``policy_versions``, ``policy_history``, ``policy_history_head``,
``policy_peer_heads``, ``policy_leases``.

Leases (``policy.exchange``, "Leases"): before the node gives a history report for a
request it takes its tenant's lease for that request, in a committed transaction; it
records (and so contributes to) a request of a tenant only while it holds that tenant's
lease for it, in the recording transaction, which releases the lease. A lease that ran out
is lost for good for its request (``HISTORY_LEASE_LOST``); another request of the tenant
waits (``HISTORY_LEASE_BUSY``) until the lease is released or runs out. Lease rows are
pruned once their request has expired under the active policy (nobody honest signs it
then). The caller serialises :meth:`PolicyState.report` and the decisions it records
(one lock per node process).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    RowMapping,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from custody.governance.bundle import BundleError, decode_bundle
from policy._codec import ZERO_HASH
from policy.authorize import Authorization
from policy.errors import GovernanceError
from policy.exchange import LEASE_SECONDS, HistoryHead, HistoryReport, make_report
from policy.governance import (
    ChainState,
    PolicyVersion,
    SignedPolicyVersion,
    genesis,
    verify_and_activate,
    verify_signatures,
)
from policy.history import History, HistoryEntry, NodeHistory, chain_step
from policy.request import SigningRequest, request_digest
from signer_nodes.db import TransactionalStore, utcnow
from signer_nodes.prepared import run

PRUNE_EVERY = 60  # seconds between drops of expired leases (PolicyState._prune)

GENESIS_BUNDLE_FILE = "policy-genesis.bundle"
GENESIS_HASH_FILE = "policy-genesis.sha256"


class PolicyStateError(Exception):
    """A refused policy-state operation. ``code`` is stable: the governance codes of
    ``docs/policy-format.md`` §6 (``POLICY_VERSION_NOT_NEXT``, ``POLICY_CHAIN_BROKEN``,
    ``POLICY_NOT_OFFICER``, ``POLICY_SIGNATURE_INVALID``, ``POLICY_QUORUM_NOT_MET``,
    ``POLICY_DOCUMENT_INVALID``) or one of ``POLICY_BUNDLE_MALFORMED``,
    ``POLICY_GENESIS_MISMATCH``, ``POLICY_STATE_CORRUPT``, ``REQUEST_ID_REUSED``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class PolicyBase(DeclarativeBase):
    pass


class PolicyVersionRow(PolicyBase):
    """One activated version; ``bundle`` is the signed bundle exactly as verified."""

    __tablename__ = "policy_versions"
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    version_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    bundle: Mapped[bytes] = mapped_column(LargeBinary)
    activated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class HistoryRow(PolicyBase):
    """Entry number ``seq`` (1-based) of the node's history and the chain head after it."""

    __tablename__ = "policy_history"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    request_id: Mapped[str] = mapped_column(String(160), unique=True)
    request_digest: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(128))
    initiator: Mapped[str] = mapped_column(String(128))
    tenant: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(String(128))
    amount: Mapped[str] = mapped_column(String(80))  # decimal: amounts reach 2^256
    timestamp: Mapped[int] = mapped_column(BigInteger, index=True)
    head: Mapped[bytes] = mapped_column(LargeBinary)


class HistoryHeadRow(PolicyBase):
    """The single row appends lock: entry count and chain head."""

    __tablename__ = "policy_history_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger)
    head: Mapped[bytes] = mapped_column(LargeBinary)


class PeerHeadRow(PolicyBase):
    """The latest signed head this node saw from a peer (``policy.exchange``)."""

    __tablename__ = "policy_peer_heads"
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary)
    anchor_count: Mapped[int] = mapped_column(BigInteger)
    anchor_hash: Mapped[bytes] = mapped_column(LargeBinary)
    request_digest: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class LeaseRow(PolicyBase):
    """A lease this node gave for a request (module docstring). ``state``: ``held`` until
    ``expires_at`` (then lost), ``released`` once the request is recorded."""

    __tablename__ = "policy_leases"
    # Whether the tenant's lease is held: rows stay until their request expires, so the
    # search is by tenant, state and expiry together.
    __table_args__ = (Index("ix_policy_leases_held", "tenant", "state", "expires_at"),)
    request_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    request_digest: Mapped[bytes] = mapped_column(LargeBinary)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)  # the request's


_HISTORY = cast(Table, HistoryRow.__table__)
_HEAD = cast(Table, HistoryHeadRow.__table__)
_PEERS = cast(Table, PeerHeadRow.__table__)
_LEASES = cast(Table, LeaseRow.__table__)

# The statements of the signing path, built once (SQLAlchemy Core on the caller's
# connection: no unit of work, a cache key memoized per statement). Bind names differ
# from column names (an UPDATE reserves those for its SET clause).
_HEAD_FOR_UPDATE = select(_HEAD.c.count, _HEAD.c.head).where(_HEAD.c.id == 1).with_for_update()
_MOVE_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(count=bindparam("b_count"), head=bindparam("b_head"))
)
_LOGGED = select(_HISTORY.c.request_digest).where(
    _HISTORY.c.request_id == bindparam("b_request_id")
)
_APPEND = insert(_HISTORY)
_NEW_ENTRIES = (
    select(_HISTORY).where(_HISTORY.c.seq > bindparam("b_after")).order_by(_HISTORY.c.seq)
)
_PEER_HEADS = select(_PEERS)
_MOVE_PEER_HEAD = (
    update(_PEERS)
    .where(_PEERS.c.node_id == bindparam("b_node_id"), _PEERS.c.count <= bindparam("b_count"))
    .values(
        count=bindparam("b_count"),
        head_hash=bindparam("b_head_hash"),
        anchor_count=bindparam("b_anchor_count"),
        anchor_hash=bindparam("b_anchor_hash"),
        request_digest=bindparam("b_request_digest"),
        signature=bindparam("b_signature"),
    )
)
_PEER_KNOWN = select(_PEERS.c.node_id).where(_PEERS.c.node_id == bindparam("b_node_id"))
_ADD_PEER_HEAD = insert(_PEERS)
_LEASE_FOR_UPDATE = (
    select(_LEASES.c.request_digest, _LEASES.c.state, _LEASES.c.expires_at)
    .where(_LEASES.c.request_id == bindparam("b_request_id"))
    .with_for_update()
)
_TENANT_BUSY = (
    select(_LEASES.c.expires_at)
    .where(
        _LEASES.c.tenant == bindparam("b_tenant"),
        _LEASES.c.state == "held",
        _LEASES.c.expires_at > bindparam("b_now"),
    )
    .limit(1)
)
_TAKE_LEASE = insert(_LEASES)
_RELEASE_LEASE = (
    update(_LEASES)
    .where(_LEASES.c.request_id == bindparam("b_request_id"))
    .values(state="released")
)
_FORFEIT_LEASE = (
    update(_LEASES)
    .where(
        _LEASES.c.request_id == bindparam("b_request_id"),
        _LEASES.c.request_digest == bindparam("b_digest"),
        _LEASES.c.state == "held",
    )
    .values(state="lost")
)
_PRUNE_LEASES = delete(_LEASES).where(_LEASES.c.created_at < bindparam("b_oldest"))


@dataclass(frozen=True, slots=True)
class GenesisPin:
    """The genesis bundle and the document hash the node trusts it by."""

    bundle: bytes
    document_hash: bytes

    @classmethod
    def load(cls, node_dir: Path) -> GenesisPin:
        """Read ``policy-genesis.bundle`` and ``policy-genesis.sha256`` (hex) from a node
        directory, as ``custody init`` installs them."""
        try:
            bundle = (node_dir / GENESIS_BUNDLE_FILE).read_bytes()
            text = (node_dir / GENESIS_HASH_FILE).read_text().strip()
        except FileNotFoundError as e:
            raise PolicyStateError("POLICY_GENESIS_MISMATCH", f"missing {e.filename}") from None
        try:
            pinned = bytes.fromhex(text)
        except ValueError:
            pinned = b""
        if len(pinned) != 32:
            raise PolicyStateError(
                "POLICY_GENESIS_MISMATCH", f"{GENESIS_HASH_FILE}: not 32 bytes hex"
            )
        return cls(bundle, pinned)


def _decode(bundle: bytes) -> SignedPolicyVersion:
    try:
        return decode_bundle(bundle)
    except BundleError as e:
        raise PolicyStateError(e.code, str(e)) from None


def genesis_state(pin: GenesisPin) -> ChainState:
    """Version 1 from the pinned genesis bundle. Besides the pinned hash (§6), the bundle
    must carry a quorum of its OWN officers' signatures: officers who cannot sign genesis
    could never sign version 2, and a typo in the officer set is caught at provisioning."""
    signed = _decode(pin.bundle)
    v = signed.version
    if v.number != 1 or v.parent_hash != ZERO_HASH:
        raise PolicyStateError("POLICY_GENESIS_MISMATCH", "genesis is version 1 with a zero parent")
    try:
        state = genesis(v.document, expected_document_hash=pin.document_hash)
        verify_signatures(state.officers, state.version_id, signed.signatures)
    except GovernanceError as e:
        code = "POLICY_GENESIS_MISMATCH" if e.code == "POLICY_CHAIN_BROKEN" else e.code.value
        raise PolicyStateError(code, str(e)) from None
    return state


def _entry(row: RowMapping) -> HistoryEntry:
    return HistoryEntry(
        request_id=row["request_id"],
        request_digest=row["request_digest"],
        key_id=row["key_id"],
        initiator=row["initiator"],
        tenant=row["tenant"],
        asset=row["asset"],
        amount=int(row["amount"]),
        timestamp=row["timestamp"],
    )


def _head(row: RowMapping) -> HistoryHead:
    return HistoryHead(
        node_id=row["node_id"],
        count=row["count"],
        head_hash=row["head_hash"],
        anchor_count=row["anchor_count"],
        anchor_hash=row["anchor_hash"],
        request_digest=row["request_digest"],
        signature=row["signature"],
    )


def _logged_digest(conn: Connection, request_id: str) -> bytes | None:
    """The digest this node's log holds for ``request_id``, if it recorded it."""
    digest = run(conn, _LOGGED, {"b_request_id": request_id}).scalar_one_or_none()
    return None if digest is None else bytes(digest)


def _reused(request_id: str) -> PolicyStateError:
    return PolicyStateError("REQUEST_ID_REUSED", f"request {request_id!r} has another digest")


def _check_held(state: str, expires_at: int, now: int) -> None:
    """Raise ``HISTORY_LEASE_LOST`` unless a lease in ``state`` is still held."""
    if state != "held" or now >= expires_at:
        raise PolicyStateError(
            "HISTORY_LEASE_LOST",
            "this node refused this request, or its report for it ran out; submit it again",
        )


class PolicyState(TransactionalStore):
    """The node's policy chain and history (module docstring). Thread-safe; one per node
    process. ``active()`` and ``log()`` are served from memory, refreshed from the database
    under a lock."""

    def __init__(self, url: str, genesis_pin: GenesisPin) -> None:
        super().__init__(url, "node")
        self._pin = genesis_pin
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._log = NodeHistory()
        self._pruned_at = -PRUNE_EVERY  # when expired leases were last dropped (_prune)
        with self.transaction() as s:
            if s.get(HistoryHeadRow, 1) is None:
                s.add(HistoryHeadRow(id=1, count=0, head=ZERO_HASH))
            first = s.get(PolicyVersionRow, 1)
            if first is None:
                state = genesis_state(genesis_pin)
                s.add(
                    PolicyVersionRow(
                        number=1, version_id=state.version_id, bundle=genesis_pin.bundle
                    )
                )
        self._state = self._load_chain()

    @classmethod
    def for_node(cls, url: str, node_dir: Path) -> PolicyState:
        """Open with the genesis files ``custody init`` installed in ``node_dir``."""
        return cls(url, GenesisPin.load(node_dir))

    # -- the version chain -----------------------------------------------------------

    def _load_chain(self) -> ChainState:
        """Re-verify every stored version from the pinned genesis (module docstring)."""
        with self.transaction() as s:
            rows = s.execute(select(PolicyVersionRow).order_by(PolicyVersionRow.number)).scalars()
            stored = [(r.number, r.version_id, r.bundle) for r in rows]
        state = genesis_state(self._pin)
        if not stored or stored[0][1] != state.version_id:
            raise PolicyStateError(
                "POLICY_GENESIS_MISMATCH", "the stored genesis is not the configured one"
            )
        for number, version_id, bundle in stored[1:]:
            try:
                state = verify_and_activate(state, decode_bundle(bundle))
            except (BundleError, GovernanceError) as e:
                raise PolicyStateError(
                    "POLICY_STATE_CORRUPT", f"stored version {number} does not verify: {e}"
                ) from None
            if state.number != number or state.version_id != version_id:
                raise PolicyStateError(
                    "POLICY_STATE_CORRUPT", f"stored version {number} mislabelled"
                )
        return state

    def active(self) -> ChainState:
        """The active version (what :func:`policy.authorize.authorize` takes)."""
        return self._state

    def activate(self, bundle: bytes) -> ChainState:
        """Verify a pushed bundle against the active version and activate it, atomically.

        Re-delivering the active version is a no-op (pushes are retried); any other bundle
        that is not exactly the next version is refused with the §6 code and nothing
        changes. Raises :class:`PolicyStateError`."""
        return self.activate_chain([bundle])

    def activate_chain(self, bundles: Sequence[bytes]) -> ChainState:
        """Apply several versions in order (a node catching up): all or nothing."""
        signed = [_decode(b) for b in bundles]
        with self._lock:
            self._refresh_chain()
            state = self._state
            new_rows: list[PolicyVersionRow] = []
            for raw, sv in zip(bundles, signed, strict=True):
                if sv.version.version_id == state.version_id:
                    continue  # re-delivery of what is active
                try:
                    state = verify_and_activate(state, sv)
                except GovernanceError as e:
                    raise PolicyStateError(e.code.value, str(e)) from None
                new_rows.append(
                    PolicyVersionRow(number=state.number, version_id=state.version_id, bundle=raw)
                )
            if not new_rows:
                return state
            try:
                with self.transaction() as s:
                    s.add_all(new_rows)
            except IntegrityError:  # another writer took the number first
                self._state = self._load_chain()
                raise PolicyStateError(
                    "POLICY_VERSION_NOT_NEXT", "another version was activated concurrently"
                ) from None
            self._state = state
            return state

    def _refresh_chain(self) -> None:
        """Reload when the database holds a newer chain than memory (another process)."""
        with self.transaction() as s:
            latest = s.execute(
                select(PolicyVersionRow.number, PolicyVersionRow.version_id)
                .order_by(PolicyVersionRow.number.desc())
                .limit(1)
            ).one()
        if (latest.number, latest.version_id) != (self._state.number, self._state.version_id):
            self._state = self._load_chain()

    def versions(self) -> list[PolicyVersion]:
        """Every activated version, oldest first."""
        with self.transaction() as s:
            bundles = s.execute(
                select(PolicyVersionRow.bundle).order_by(PolicyVersionRow.number)
            ).scalars()
            return [decode_bundle(b).version for b in bundles]

    def bundle(self, number: int) -> bytes | None:
        with self.transaction() as s:
            row = s.get(PolicyVersionRow, number)
            return None if row is None else row.bundle

    # -- signing history -------------------------------------------------------------

    def record(self, session: Session, entry: HistoryEntry) -> bytes:
        """Append ``entry`` inside the caller's transaction; return the new chain head.

        Call it in the transaction that consumes the nonce/presignature, so a committed
        share always has its history entry. The same request again (same id and digest,
        a retry) is not appended twice; the same id with another digest raises
        ``REQUEST_ID_REUSED`` (and the caller's transaction must roll back)."""
        return self._record(session.connection(), entry, lease_now=None)

    def _record(self, conn: Connection, entry: HistoryEntry, *, lease_now: int | None) -> bytes:
        """:meth:`record`; with ``lease_now``, a new entry is appended only if this node
        holds the tenant's lease for it then, and the lease is released
        (:meth:`_take_up_lease`). A retry's place in the log is fixed: no lease needed."""
        count, head = run(conn, _HEAD_FOR_UPDATE).one()  # appends serialise here
        existing = _logged_digest(conn, entry.request_id)
        if existing is not None:
            if existing != entry.request_digest:
                raise _reused(entry.request_id)
            return bytes(head)
        if lease_now is not None:
            self._take_up_lease(conn, entry, lease_now)
        return self._append(conn, int(count), bytes(head), entry)

    @staticmethod
    def _append(conn: Connection, count: int, head: bytes, entry: HistoryEntry) -> bytes:
        """Append ``entry`` after entry ``count`` (chain head ``head``, the head row locked)."""
        new_head = chain_step(head, entry)
        run(
            conn,
            _APPEND,
            {
                "seq": count + 1,
                "request_id": entry.request_id,
                "request_digest": entry.request_digest,
                "key_id": entry.key_id,
                "initiator": entry.initiator,
                "tenant": entry.tenant,
                "asset": entry.asset,
                "amount": str(entry.amount),
                "timestamp": entry.timestamp,
                "head": new_head,
            },
        )
        run(conn, _MOVE_HEAD, {"b_count": count + 1, "b_head": new_head})
        return new_head

    def remember_heads(self, session: Session, heads: Mapping[int, HistoryHead]) -> None:
        """Store the peers' latest heads inside the caller's transaction. A head never
        moves back to a shorter log (a later, longer one replaces it)."""
        conn = session.connection()
        for node_id, h in sorted(heads.items()):
            if h.node_id != node_id:
                raise ValueError("head keyed under another node id")
            values = {
                "b_node_id": node_id,
                "b_count": h.count,
                "b_head_hash": h.head_hash,
                "b_anchor_count": h.anchor_count,
                "b_anchor_hash": h.anchor_hash,
                "b_request_digest": h.request_digest,
                "b_signature": h.signature,
            }
            if run(conn, _MOVE_PEER_HEAD, values).rowcount == 1:
                continue  # the usual case: a longer (or the same) log than last time
            if run(conn, _PEER_KNOWN, {"b_node_id": node_id}).first() is None:
                run(conn, _ADD_PEER_HEAD, {k[2:]: v for k, v in values.items()})

    def record_authorization(
        self, session: Session, authorization: Authorization, now: int
    ) -> bytes:
        """:meth:`record` the authorized entry and :meth:`remember_heads` of the peers, in
        the caller's transaction (the one that consumes the nonce/presignature), if this
        node holds the tenant's lease for the request (or recorded it before: a retry);
        the lease is released. Raises ``HISTORY_LEASE_MISSING`` / ``HISTORY_LEASE_LOST``
        (and the caller's transaction must roll back)."""
        new_head = self._record(session.connection(), authorization.entry, lease_now=now)
        if authorization.peer_heads:
            self.remember_heads(session, authorization.peer_heads)
        return new_head

    def log(self) -> NodeHistory:
        """The node's hash-chained history (committed entries), checked row by row against
        the heads stored with them."""
        with self._log_lock, self.engine.connect() as conn:
            return self._catch_up(conn)

    def _catch_up(self, conn: Connection) -> NodeHistory:
        """Extend the log in memory by the entries committed since it was last read (one
        statement; none when nothing was appended). Call with ``_log_lock`` held."""
        log = self._log
        for row in run(conn, _NEW_ENTRIES, {"b_after": log.count}).mappings():
            entry = _entry(row)
            if row["seq"] != log.count + 1 or row["head"] != chain_step(log.head, entry):
                raise PolicyStateError(
                    "POLICY_STATE_CORRUPT", f"history entry {row['seq']} does not chain"
                )
            log = log.append(entry)
        self._log = log
        return log

    def signing_view(self) -> tuple[NodeHistory, dict[int, HistoryHead]]:
        """:meth:`log` and :meth:`remembered_heads`, read together (what a signing
        decision needs)."""
        with self._log_lock, self.engine.connect() as conn:
            log = self._catch_up(conn)
            return log, self._heads(conn)

    def history(self) -> History:
        """The node's own history, indexed for velocity windows."""
        return self.log().as_history()

    def head(self) -> tuple[int, bytes]:
        """``(count, head hash)`` of the committed history."""
        log = self.log()
        return log.count, log.head

    def remembered_heads(self) -> dict[int, HistoryHead]:
        with self.engine.connect() as conn:
            return self._heads(conn)

    @staticmethod
    def _heads(conn: Connection) -> dict[int, HistoryHead]:
        return {r["node_id"]: _head(r) for r in run(conn, _PEER_HEADS).mappings()}

    @staticmethod
    def _take_up_lease(conn: Connection, entry: HistoryEntry, now: int) -> None:
        """Release the held lease for ``entry`` (not yet recorded) or refuse."""
        lease = run(conn, _LEASE_FOR_UPDATE, {"b_request_id": entry.request_id}).first()
        if lease is None or lease.request_digest != entry.request_digest:
            raise PolicyStateError(
                "HISTORY_LEASE_MISSING", "this node gave no report for this request"
            )
        _check_held(lease.state, lease.expires_at, now)
        run(conn, _RELEASE_LEASE, {"b_request_id": entry.request_id})

    def _prune(self, conn: Connection, now: int) -> None:
        """Drop the leases of requests that expired (nobody honest signs them then). At
        most once per :data:`PRUNE_EVERY` seconds: a lease kept a little longer only
        refuses what its expired request would be refused anyway."""
        if 0 <= now - self._pruned_at < PRUNE_EVERY:
            return
        limits = self._state.policy.document.limits
        oldest = now - limits.request_max_age_seconds - limits.clock_skew_seconds
        run(conn, _PRUNE_LEASES, {"b_oldest": oldest})
        self._pruned_at = now

    def _lease(self, conn: Connection, request: SigningRequest, digest: bytes, now: int) -> None:
        """Take (or keep) the tenant's lease for ``request`` (module docstring)."""
        self._prune(conn, now)
        logged = _logged_digest(conn, request.request_id)
        if logged is not None:
            if logged != digest:
                raise _reused(request.request_id)
            return  # already recorded: its place in the log is fixed
        own = run(conn, _LEASE_FOR_UPDATE, {"b_request_id": request.request_id}).first()
        if own is not None:
            if own.request_digest != digest:
                raise _reused(request.request_id)
            _check_held(own.state, own.expires_at, now)
            return
        busy = run(conn, _TENANT_BUSY, {"b_tenant": request.tenant, "b_now": now}).first()
        if busy is not None:
            raise PolicyStateError(
                "HISTORY_LEASE_BUSY",
                f"another request of this tenant holds the lease for {busy[0] - now} s",
            )
        run(
            conn,
            _TAKE_LEASE,
            {
                "request_id": request.request_id,
                "request_digest": digest,
                "tenant": request.tenant,
                "state": "held",
                "expires_at": now + LEASE_SECONDS,
                "created_at": request.created_at,
            },
        )

    def forfeit(self, request_id: str, digest: bytes) -> None:
        """The node refused ``request_id``: its held lease is lost (module docstring)."""
        with self.transaction() as s:
            run(s, _FORFEIT_LEASE, {"b_request_id": request_id, "b_digest": digest})

    def report(
        self,
        key: Ed25519PrivateKey,
        node_id: int,
        request: SigningRequest,
        now: int,
        held_end: int = 0,
    ) -> HistoryReport:
        """Take the tenant's lease for ``request`` and give this node's signed history
        report for it (``policy.exchange`` step 1 and "Leases"): the log suffix covering
        the active policy's longest velocity window, without the entries up to
        ``held_end`` that the asker says it holds. The lease is committed before the
        report exists. Raises ``REQUEST_ID_REUSED``, ``HISTORY_LEASE_BUSY``,
        ``HISTORY_LEASE_LOST``. The caller checks the request first
        (:func:`policy.authorize.check_reportable`)."""
        digest = request_digest(request)
        with self.transaction() as s:
            conn = s.connection()
            self._lease(conn, request, digest, now)
            # The log as this transaction sees it: committed entries only (it appends
            # none), read while it holds the database's write lock on SQLite.
            with self._log_lock:
                log = self._catch_up(conn)
        window = self._state.policy.document.max_velocity_window
        return make_report(key, node_id, log, digest, now - window, held_end)
