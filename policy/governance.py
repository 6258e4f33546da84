"""Officer-quorum governance: policy versions form a hash chain; a node activates a version
only when a quorum of DISTINCT officers of its CURRENT policy signed it and it extends the
node's active version.

* ``document_hash = SHA-256(tag("document") || lp(document bytes))``
* ``version_id = SHA-256(tag("version") || u64(number) || parent_id || document_hash)``;
  this is the "policy version id" requests and approvals name.
* officers sign ``tag("officer-signature") || version_id`` with Ed25519.

The officer set lives in the document (``/officers``), so changing it is an ordinary
policy change that the current quorum must sign; the new set governs only the versions
after it. A rollback is a new version (next number, parent = current id) whose document is
an old one, signed like any change: the chain never moves backwards, so a coordinator that
replays an old signed version gets ``POLICY_VERSION_NOT_NEXT``. The first version (genesis,
number 1, parent 32 zero bytes) is trusted by configuration: each node is provisioned with
its document hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy._codec import ZERO_HASH, ed25519_ok, hash_tagged, load_public_key, lp, tag, u64
from policy.document import OfficerSet
from policy.errors import DocumentError, GovernanceError, ReasonCode
from policy.evaluate import Policy
from policy.request import valid_identifier


def document_hash(document: bytes) -> bytes:
    return hash_tagged("document", lp(document))


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One link of the version chain: the exact document bytes officers approve."""

    number: int
    parent_hash: bytes
    document: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not 1 <= self.number < 1 << 63:
            raise ValueError("number: a positive integer")
        if len(self.parent_hash) != 32:
            raise ValueError("parent_hash: 32 bytes")

    @property
    def document_hash(self) -> bytes:
        return document_hash(self.document)

    @property
    def version_id(self) -> bytes:
        return hash_tagged("version", u64(self.number), self.parent_hash, self.document_hash)


def officer_message(version_id: bytes) -> bytes:
    if len(version_id) != 32:
        raise ValueError("a version id is 32 bytes")
    return tag("officer-signature") + version_id


@dataclass(frozen=True, slots=True)
class OfficerSignature:
    officer: str
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not valid_identifier(self.officer) or len(self.signature) != 64:
            raise ValueError("an officer id and a 64-byte signature")


@dataclass(frozen=True, slots=True)
class SignedPolicyVersion:
    """The bundle the coordinator pushes to every node once officers reached quorum."""

    version: PolicyVersion
    signatures: tuple[OfficerSignature, ...]


def sign_version(key: Ed25519PrivateKey, officer: str, version: PolicyVersion) -> OfficerSignature:
    """Officer-side helper: approve ``version``."""
    return OfficerSignature(officer, key.sign(officer_message(version.version_id)))


@dataclass(frozen=True, slots=True)
class ChainState:
    """A node's active policy: the version, its compiled policy, and the document hashes of
    every version activated so far (index ``k`` = version ``k + 1``) for rollbacks."""

    version: PolicyVersion
    policy: Policy = field(compare=False, repr=False)
    document_hashes: tuple[bytes, ...]

    @property
    def number(self) -> int:
        return self.version.number

    @property
    def version_id(self) -> bytes:
        return self.version.version_id

    @property
    def officers(self) -> OfficerSet:
        return self.policy.document.officers


def _compile(document: bytes) -> Policy:
    try:
        return Policy.from_bytes(document)
    except DocumentError as e:
        raise GovernanceError(ReasonCode.POLICY_DOCUMENT_INVALID, str(e)) from e


def genesis(document: bytes, *, expected_document_hash: bytes) -> ChainState:
    """The trusted first version, pinned by the hash in the node's configuration."""
    if document_hash(document) != expected_document_hash:
        raise GovernanceError(
            ReasonCode.POLICY_CHAIN_BROKEN, "genesis document does not match the pinned hash"
        )
    version = PolicyVersion(1, ZERO_HASH, document)
    return ChainState(version, _compile(document), (version.document_hash,))


def propose(state: ChainState, document: bytes) -> PolicyVersion:
    """The next version carrying ``document`` (validated, so officers never sign a document
    nodes would reject)."""
    _compile(document)
    return PolicyVersion(state.number + 1, state.version_id, document)


def propose_rollback(state: ChainState, old: PolicyVersion) -> PolicyVersion:
    """A new version whose document equals an earlier one's; needs the usual quorum."""
    if old.number > state.number or state.document_hashes[old.number - 1] != old.document_hash:
        raise GovernanceError(
            ReasonCode.POLICY_CHAIN_BROKEN, f"version {old.number} is not in this chain"
        )
    return propose(state, old.document)


def verify_signatures(
    officers: OfficerSet, version_id: bytes, sigs: Iterable[OfficerSignature]
) -> frozenset[str]:
    """The distinct officers whose valid signatures ``sigs`` contains; raises on any
    signature by a non-officer or any invalid signature, and when they are below quorum."""
    signers: set[str] = set()
    msg = officer_message(version_id)
    for s in sorted(sigs, key=lambda s: (s.officer, s.signature)):
        raw = officers.members.get(s.officer)
        if raw is None:
            raise GovernanceError(ReasonCode.POLICY_NOT_OFFICER, f"{s.officer!r} is not an officer")
        if not ed25519_ok(load_public_key(raw), s.signature, msg):
            raise GovernanceError(
                ReasonCode.POLICY_SIGNATURE_INVALID, f"bad signature by officer {s.officer!r}"
            )
        signers.add(s.officer)
    if len(signers) < officers.quorum:
        raise GovernanceError(
            ReasonCode.POLICY_QUORUM_NOT_MET,
            f"{len(signers)} distinct officer signatures, quorum is {officers.quorum}",
        )
    return frozenset(signers)


def verify_and_activate(state: ChainState, signed: SignedPolicyVersion) -> ChainState:
    """The node-side check: return the new state, or raise :class:`GovernanceError` and keep
    ``state``. Checks, in order: the number is exactly the next one
    (``POLICY_VERSION_NOT_NEXT``), the parent is the active version id
    (``POLICY_CHAIN_BROKEN``), every signature is by a current officer
    (``POLICY_NOT_OFFICER``) and valid (``POLICY_SIGNATURE_INVALID``), distinct signers reach
    the current quorum (``POLICY_QUORUM_NOT_MET``), and the document parses
    (``POLICY_DOCUMENT_INVALID``)."""
    v = signed.version
    if v.number != state.number + 1:
        raise GovernanceError(
            ReasonCode.POLICY_VERSION_NOT_NEXT,
            f"version {v.number} offered, active is {state.number}",
        )
    if v.parent_hash != state.version_id:
        raise GovernanceError(
            ReasonCode.POLICY_CHAIN_BROKEN, "parent hash is not the active version id"
        )
    verify_signatures(state.officers, v.version_id, signed.signatures)
    return ChainState(v, _compile(v.document), (*state.document_hashes, v.document_hash))


def activate_chain(state: ChainState, versions: Iterable[SignedPolicyVersion]) -> ChainState:
    """Apply several versions in order (a node catching up); all-or-nothing."""
    for signed in versions:
        state = verify_and_activate(state, signed)
    return state
