"""Policy proposals, officer signatures and the coordinator's mirror of the version chain
(``docs/policy-format.md`` §6, ``docs/governance.md``).

The coordinator is trusted for availability only (ARCHITECTURE.md §1): it collects
signatures, but what it can hand to nodes is exactly what officers signed, and nodes
re-verify everything. It still checks as much as a node does, so officers get an answer
at once instead of a silent refusal later:

* a proposal names the version it extends (number, parent id) and carries the
  proposer's officer signature over the new version id — proposing is the first approval;
  the document must parse, and a rollback's document must equal the named old version's;
* an approval is an officer signature ``tag("officer-signature") || version_id`` by an
  officer of the ACTIVE version; a rejection is an Ed25519 signature over
  ``tag("officer-rejection") || version_id`` (a statement of this service; nodes never see
  rejections);
* when distinct approvals reach the active quorum, the bundle is checked with
  :func:`policy.governance.verify_and_activate` (the nodes' check), recorded as the next
  version, every other open proposal is superseded, and ``on_activated(bundle)`` is called
  after the commit;
* a proposal is rejected once so many officers rejected it that the quorum is out of reach.

Every step is audited (``policy_change``) in the same transaction as the state change.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from custody.governance.bundle import BundleError, decode_bundle, encode_bundle
from custody.governance.errors import Fault, GovernanceRefused
from custody.governance.store import GovernanceStore
from custody.governance.tables import ProposalRow, VersionRow, VoteRow
from policy._codec import ed25519_ok, load_public_key, tag
from policy.audit import AuditKind
from policy.errors import GovernanceError
from policy.governance import (
    ChainState,
    OfficerSignature,
    PolicyVersion,
    SignedPolicyVersion,
    officer_message,
    propose,
    verify_and_activate,
)
from signer_nodes.db import utcnow
from signer_nodes.node.policy_state import GenesisPin, PolicyStateError, genesis_state

log = structlog.get_logger("governance")

OPEN, ACTIVATED, REJECTED, SUPERSEDED = "OPEN", "ACTIVATED", "REJECTED", "SUPERSEDED"
APPROVE, REJECT = "approve", "reject"


def rejection_message(version_id: bytes) -> bytes:
    """What an officer signs to reject a proposal."""
    if len(version_id) != 32:
        raise ValueError("a version id is 32 bytes")
    return tag("officer-rejection") + version_id


def sign_rejection(key: Ed25519PrivateKey, officer: str, version_id: bytes) -> OfficerSignature:
    return OfficerSignature(officer, key.sign(rejection_message(version_id)))


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """An activated version as the coordinator mirrors it."""

    version: PolicyVersion
    signatures: tuple[OfficerSignature, ...]
    bundle: bytes = field(repr=False)
    rollback_of: int | None
    proposer: str
    activated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ProposalInfo:
    version: PolicyVersion
    proposer: str
    rollback_of: int | None
    state: str
    approvals: tuple[OfficerSignature, ...]
    rejections: tuple[OfficerSignature, ...]
    quorum: int
    created_at: dt.datetime
    push_error: str = ""

    @property
    def proposal_id(self) -> str:
        return self.version.version_id.hex()


def _version_info(row: VersionRow) -> VersionInfo:
    signed = decode_bundle(row.bundle)
    return VersionInfo(
        signed.version,
        signed.signatures,
        row.bundle,
        row.rollback_of,
        row.proposer,
        row.activated_at,
    )


class PolicyGovernance:
    """Proposals and the mirrored chain (module docstring). Thread-safe; one per
    coordinator process (mutations serialise on a lock and on the database)."""

    def __init__(
        self,
        store: GovernanceStore,
        genesis: GenesisPin,
        *,
        on_activated: Callable[[bytes], None] | None = None,
    ) -> None:
        self.store = store
        self.on_activated = on_activated
        self._lock = threading.RLock()
        try:
            state = genesis_state(genesis)
        except PolicyStateError as e:
            raise GovernanceRefused(e.code, Fault.INVALID, str(e)) from None
        with store.transaction() as s:
            first = s.get(VersionRow, 1)
            if first is None:
                s.add(
                    VersionRow(number=1, version_id=state.version_id.hex(), bundle=genesis.bundle)
                )
                store.audit(
                    AuditKind.POLICY_CHANGE, self._body("genesis", state.version), session=s
                )
            elif first.version_id != state.version_id.hex():
                raise GovernanceRefused(
                    "POLICY_GENESIS_MISMATCH", Fault.CONFLICT, "stored genesis differs"
                )
        self._state = self._load(state)

    def _load(self, state: ChainState) -> ChainState:
        with self.store.transaction() as s:
            rows = s.execute(
                select(VersionRow).where(VersionRow.number > 1).order_by(VersionRow.number)
            )
            bundles = [(r.number, r.bundle) for r in rows.scalars()]
        for number, bundle in bundles:
            try:
                state = verify_and_activate(state, decode_bundle(bundle))
            except (BundleError, GovernanceError) as e:
                raise GovernanceRefused(
                    "POLICY_STATE_CORRUPT", Fault.CONFLICT, f"stored version {number}: {e}"
                ) from None
        return state

    @staticmethod
    def _body(event: str, version: PolicyVersion, **extra: object) -> dict[str, object]:
        return {
            "event": event,
            "number": version.number,
            "version_id": version.version_id.hex(),
            "document_hash": version.document_hash.hex(),
            **extra,
        }

    # -- reads -------------------------------------------------------------------------

    def active(self) -> ChainState:
        return self._state

    def versions(self) -> list[VersionInfo]:
        with self.store.transaction() as s:
            rows = s.execute(select(VersionRow).order_by(VersionRow.number)).scalars()
            return [_version_info(r) for r in rows]

    def version(self, number: int | None = None) -> VersionInfo:
        """Version ``number``, or the active one."""
        with self.store.transaction() as s:
            row = s.get(VersionRow, number or self._state.number)
            if row is None:
                raise GovernanceRefused(
                    "POLICY_VERSION_NOT_FOUND", Fault.NOT_FOUND, f"no version {number}"
                )
            return _version_info(row)

    def bundles_since(self, number: int) -> list[bytes]:
        """The bundles after version ``number``, in order: what a lagging node applies
        (``PolicyState.activate_chain``)."""
        with self.store.transaction() as s:
            rows = s.execute(
                select(VersionRow.bundle)
                .where(VersionRow.number > number)
                .order_by(VersionRow.number)
            )
            return list(rows.scalars())

    def proposals(self, state: str | None = None) -> list[ProposalInfo]:
        with self.store.transaction() as s:
            q = select(ProposalRow).order_by(ProposalRow.number, ProposalRow.created_at)
            if state is not None:
                q = q.where(ProposalRow.state == state)
            return [self._info(s, r) for r in s.execute(q).scalars()]

    def proposal(self, proposal_id: str) -> ProposalInfo:
        with self.store.transaction() as s:
            return self._info(s, self._row(s, proposal_id))

    def _row(self, s: Session, proposal_id: str) -> ProposalRow:
        row = s.get(ProposalRow, proposal_id.lower(), with_for_update=True)
        if row is None:
            raise GovernanceRefused(
                "PROPOSAL_NOT_FOUND", Fault.NOT_FOUND, f"no proposal {proposal_id[:16]}"
            )
        return row

    def _info(self, s: Session, row: ProposalRow, push_error: str = "") -> ProposalInfo:
        votes = s.execute(
            select(VoteRow).where(VoteRow.proposal_id == row.proposal_id).order_by(VoteRow.officer)
        ).scalars()
        approvals: list[OfficerSignature] = []
        rejections: list[OfficerSignature] = []
        for v in votes:
            (approvals if v.decision == APPROVE else rejections).append(
                OfficerSignature(v.officer, v.signature)
            )
        return ProposalInfo(
            PolicyVersion(row.number, row.parent_hash, row.document),
            row.proposer,
            row.rollback_of,
            row.state,
            tuple(approvals),
            tuple(rejections),
            self._state.officers.quorum,
            row.created_at,
            push_error,
        )

    # -- officer actions ---------------------------------------------------------------

    def _check_officer(self, officer: str, message: bytes, signature: bytes) -> None:
        raw = self._state.officers.members.get(officer)
        if raw is None:
            raise GovernanceRefused(
                "POLICY_NOT_OFFICER", Fault.FORBIDDEN, f"{officer!r} is not an officer"
            )
        if not ed25519_ok(load_public_key(raw), signature, message):
            raise GovernanceRefused(
                "POLICY_SIGNATURE_INVALID", Fault.INVALID, f"bad signature by {officer!r}"
            )

    def propose(
        self,
        document: bytes,
        *,
        number: int,
        parent_version_id: bytes,
        officer: str,
        signature: bytes,
        rollback_of: int | None = None,
    ) -> ProposalInfo:
        """Propose the next version; the proposer's signature is its first approval.
        Proposing a version that is already open adds the signature to it."""
        with self._lock:
            state = self._state
            if number != state.number + 1:
                raise GovernanceRefused(
                    "POLICY_VERSION_NOT_NEXT", Fault.CONFLICT, f"active is {state.number}"
                )
            if parent_version_id != state.version_id:
                raise GovernanceRefused(
                    "POLICY_CHAIN_BROKEN", Fault.CONFLICT, "parent is not the active version"
                )
            try:
                version = propose(state, document)
            except GovernanceError as e:
                raise GovernanceRefused(e.code.value, Fault.INVALID, str(e)) from None
            if rollback_of is not None and not (
                1 <= rollback_of <= state.number
                and state.document_hashes[rollback_of - 1] == version.document_hash
            ):
                raise GovernanceRefused(
                    "POLICY_ROLLBACK_MISMATCH",
                    Fault.INVALID,
                    f"the document is not that of version {rollback_of}",
                )
            self._check_officer(officer, officer_message(version.version_id), signature)
            pid = version.version_id.hex()
            with self.store.transaction() as s:
                row = s.get(ProposalRow, pid, with_for_update=True)
                if row is None:
                    row = ProposalRow(
                        proposal_id=pid,
                        number=version.number,
                        parent_hash=version.parent_hash,
                        document=document,
                        document_hash=version.document_hash,
                        proposer=officer,
                        rollback_of=rollback_of,
                        state=OPEN,
                    )
                    s.add(row)
                    s.flush()
                    event = self._body("proposed", version, officer=officer)
                    if rollback_of is not None:
                        event["rollback_of"] = rollback_of
                    self.store.audit(AuditKind.POLICY_CHANGE, event, session=s)
                elif row.state != OPEN:
                    raise GovernanceRefused(
                        "PROPOSAL_CLOSED", Fault.CONFLICT, f"proposal is {row.state.lower()}"
                    )
                activated = self._vote(s, row, officer, APPROVE, signature)
                info = self._info(s, row)
            return self._after(info, activated)

    def approve(self, proposal_id: str, *, officer: str, signature: bytes) -> ProposalInfo:
        """Add an officer's signature; activates at quorum."""
        with self._lock, self.store.transaction() as s:
            row = self._open_row(s, proposal_id)
            self._check_officer(officer, officer_message(bytes.fromhex(row.proposal_id)), signature)
            activated = self._vote(s, row, officer, APPROVE, signature)
            info = self._info(s, row)
        return self._after(info, activated)

    def reject(self, proposal_id: str, *, officer: str, signature: bytes) -> ProposalInfo:
        """Record an officer's signed rejection; the proposal is rejected once the quorum
        can no longer be reached."""
        with self._lock, self.store.transaction() as s:
            row = self._open_row(s, proposal_id)
            msg = rejection_message(bytes.fromhex(row.proposal_id))
            self._check_officer(officer, msg, signature)
            self._vote(s, row, officer, REJECT, signature)
            return self._info(s, row)

    def _open_row(self, s: Session, proposal_id: str) -> ProposalRow:
        row = self._row(s, proposal_id)
        if row.state != OPEN:
            raise GovernanceRefused(
                "PROPOSAL_CLOSED", Fault.CONFLICT, f"proposal is {row.state.lower()}"
            )
        if row.parent_hash != self._state.version_id:  # defensive: activation supersedes
            raise GovernanceRefused("PROPOSAL_CLOSED", Fault.CONFLICT, "proposal is superseded")
        return row

    def _vote(
        self, s: Session, row: ProposalRow, officer: str, decision: str, signature: bytes
    ) -> tuple[bytes, ChainState] | None:
        """Store one vote and apply its consequence; returns the activation if any."""
        existing = s.get(VoteRow, (row.proposal_id, officer))
        if existing is not None:
            if existing.decision != decision:
                raise GovernanceRefused(
                    "PROPOSAL_ALREADY_VOTED", Fault.CONFLICT, f"{officer!r} already voted"
                )
            return None
        s.add(
            VoteRow(
                proposal_id=row.proposal_id, officer=officer, decision=decision, signature=signature
            )
        )
        s.flush()
        version = PolicyVersion(row.number, row.parent_hash, row.document)
        self.store.audit(
            AuditKind.POLICY_CHANGE,
            self._body("approved" if decision == APPROVE else "rejected", version, officer=officer),
            session=s,
        )
        votes = list(
            s.execute(select(VoteRow).where(VoteRow.proposal_id == row.proposal_id)).scalars()
        )
        officers = self._state.officers
        if decision == REJECT:
            rejections = sum(1 for v in votes if v.decision == REJECT)
            if rejections > len(officers.members) - officers.quorum:
                row.state, row.decided_at = REJECTED, utcnow()
                self.store.audit(
                    AuditKind.POLICY_CHANGE, self._body("proposal_rejected", version), session=s
                )
            return None
        sigs = tuple(
            OfficerSignature(v.officer, v.signature) for v in votes if v.decision == APPROVE
        )
        if len(sigs) < officers.quorum:
            return None
        signed = SignedPolicyVersion(version, sigs)
        try:
            new_state = verify_and_activate(self._state, signed)
        except GovernanceError as e:  # cannot happen for checked votes; never half-apply
            raise GovernanceRefused(e.code.value, Fault.CONFLICT, str(e)) from None
        bundle = encode_bundle(signed)
        s.add(
            VersionRow(
                number=version.number,
                version_id=row.proposal_id,
                bundle=bundle,
                rollback_of=row.rollback_of,
                proposer=row.proposer,
            )
        )
        row.state, row.decided_at = ACTIVATED, utcnow()
        s.execute(
            update(ProposalRow)
            .where(ProposalRow.state == OPEN, ProposalRow.proposal_id != row.proposal_id)
            .values(state=SUPERSEDED, decided_at=utcnow())
        )
        self.store.audit(
            AuditKind.POLICY_CHANGE,
            self._body("activated", version, signers=sorted(x.officer for x in sigs)),
            session=s,
        )
        return bundle, new_state

    def _after(
        self, info: ProposalInfo, activated: tuple[bytes, ChainState] | None
    ) -> ProposalInfo:
        """After the commit: switch the mirror and push the bundle to the nodes."""
        if activated is None:
            return info
        bundle, state = activated
        self._state = state
        log.info("policy_activated", number=state.number, version_id=state.version_id.hex())
        if self.on_activated is None:
            return info
        try:
            self.on_activated(bundle)
        except Exception as e:  # the version stays active; nodes catch up via bundles_since
            log.warning("policy_push_failed", number=state.number, error=type(e).__name__)
            return replace(info, push_error=f"{type(e).__name__}: {str(e)[:200]}")
        return info
