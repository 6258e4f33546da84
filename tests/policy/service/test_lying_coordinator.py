"""A lying coordinator gets no signature share from honest signer nodes (ARCHITECTURE.md
section 6, invariants 4 and 5; issue 5), through REAL node processes.

The test plays the coordinator with the coordinator's client certificate
(:mod:`tests.policy.service.liar_cluster`) against a cluster of 3 nodes, threshold 2, with
the ``custody init`` starter policy (``custody/governance/genesis.py``): ``acme-initiator``
may send ETH transfers of at most 1 ETH within 10 ETH per tenant and 24 h, every other
transfer needs one approver of ``acme-treasury``; messages and raw digests are allowed.

Every lie is sent to every honest signer it concerns, and every refusal is checked for
its gRPC status, its stable ErrorInfo reason, and for what did NOT happen: the
presignature / FROST nonce is still unused with its sealed secret, the node's policy
history has no entry for the request, and no share was recorded
(:meth:`~tests.policy.service.liar_signing._Attempt.refused`). Where the same pool entries
then sign honestly, the signature is checked with an independent library (coincurve,
``cryptography``), so the refusals are the lies' doing, not a broken setup.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_utils.crypto import keccak

from custody._pb.custody.governance.v1 import governance_pb2 as gpb
from custody._pb.custody.node.v1 import node_pb2
from custody._pb.custody.v1 import custody_pb2 as pb
from custody.governance.client import GovernanceClient
from policy.governance import PolicyVersion
from policy.payloads import interpret_request
from policy.payloads.messages import message_digest
from policy.request import Approval, ApprovalDecision, RequestType, SigningRequest
from tests.policy.service.liar_cluster import NODES, LiarCluster, refusal
from tests.policy.service.liar_edits import (
    known_to,
    signing_set,
    told,
    with_approvals,
    without_report,
)
from tests.policy.service.liar_signing import (
    ADDRESS_A,
    ADDRESS_B,
    ETH,
    EcdsaAttempt,
    FrostAttempt,
    approval,
    bundle,
    eth_payload,
    eth_transfer,
    initiator_signature,
    offchain,
)
from tests.service.lying import authorizations

pytestmark = pytest.mark.timeout(180)
FAILED = grpc.StatusCode.FAILED_PRECONDITION
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DAILY_ETH = 10 * ETH  # the starter policy's acme-eth-small velocity budget


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiarCluster]:
    c = LiarCluster(tmp_path_factory.mktemp("liar") / "data")
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def ecdsa_key(cluster: LiarCluster) -> pb.Key:
    with cluster.client("acme") as acme:
        return acme.create_key("ecdsa-secp256k1")


@pytest.fixture(scope="module")
def frost_key(cluster: LiarCluster) -> pb.Key:
    with cluster.client("acme") as acme:
        return acme.create_key("eddsa-ed25519")


def active_id(cluster: LiarCluster) -> bytes:
    ids = {bytes(cluster.active(i).active_version_id) for i in NODES}
    assert len(ids) == 1, "the nodes disagree on the active policy"
    return ids.pop()


def treasury(
    cluster: LiarCluster,
    request: SigningRequest,
    *,
    version: bytes | None = None,
    decision: ApprovalDecision = ApprovalDecision.APPROVE,
    expires_at: int | None = None,
) -> Approval:
    """A genuine statement by acme-approver-1 (default: approve, under the active version)."""
    return approval(
        cluster.approver_key("acme-approver-1"),
        "acme-approver-1",
        request,
        version or active_id(cluster),
        decision=decision,
        expires_at=expires_at,
    )


def resubmitted(request: SigningRequest) -> SigningRequest:
    """The same request under a new id (as a client submits a refused request again)."""
    return dataclasses.replace(request, request_id=f"{request.request_id}-again")


def signed(cluster: LiarCluster, request: SigningRequest) -> bytes:
    return initiator_signature(cluster.initiator_key(request.tenant), request)


def ecdsa_input(request: SigningRequest) -> bytes:
    """What the payload says an ECDSA key signs (keccak256 of the EIP-1559 payload)."""
    return interpret_request(request, key_scheme="ecdsa-secp256k1").digest


# -- approvals ---------------------------------------------------------------------------


def test_dropped_approvals_get_no_share(cluster: LiarCluster, ecdsa_key: pb.Key) -> None:
    """A 2 ETH transfer needs the treasury (the starter policy allows at most 1 ETH without
    approval). The treasury approved it; the coordinator drops the approval: every signer
    refuses with APPROVAL_MISSING."""
    request = eth_transfer(ecdsa_key.key_id, to=ADDRESS_A, amount=2 * ETH)
    sig = signed(cluster, request)
    attempt = EcdsaAttempt(cluster, ecdsa_key.key_id, (1, 2))
    dropped = authorizations(cluster, request, sig, attempt.signers)
    for i in attempt.signers:
        assert not dropped[i].approvals
        attempt.refused(i, dropped[i], "APPROVAL_MISSING", message_hash=ecdsa_input(request))


def test_forged_and_relabelled_approvals_get_no_share(
    cluster: LiarCluster, ecdsa_key: pb.Key
) -> None:
    """Approvals are checked against each node's own policy copy: an approval must be an
    unexpired signature by a registered approver of the required group over THIS request's
    digest, the decision and the active version. Then the honest approval signs."""
    request = eth_transfer(ecdsa_key.key_id, to=ADDRESS_A, amount=2 * ETH)
    sig = signed(cluster, request)
    other = eth_transfer(ecdsa_key.key_id, to=ADDRESS_A, amount=2 * ETH)
    version = active_id(cluster)
    mallory = Ed25519PrivateKey.generate()
    genuine = treasury(cluster, request)
    forged = approval(mallory, "acme-approver-1", request, version)
    relabelled = dataclasses.replace(genuine, approver="acme-approver-2")
    rejection = treasury(cluster, request, decision=ApprovalDecision.REJECT)
    flipped = dataclasses.replace(rejection, decision=ApprovalDecision.APPROVE)
    later = dataclasses.replace(genuine, expires_at=genuine.expires_at + 86_400)
    lies: list[tuple[str, list[Approval], str]] = [
        ("signed by a non-approver key", [forged], "APPROVAL_SIGNATURE_INVALID"),
        (
            "approver-1's signature relabelled approver-2",
            [relabelled],
            "APPROVAL_SIGNATURE_INVALID",
        ),
        ("a rejection relabelled approve", [flipped], "APPROVAL_SIGNATURE_INVALID"),
        ("expiry pushed back", [later], "APPROVAL_SIGNATURE_INVALID"),
        ("approval of another request", [treasury(cluster, other)], "APPROVAL_SIGNATURE_INVALID"),
        (
            "unregistered approver",
            [approval(mallory, "mallory", request, version)],
            "APPROVER_UNKNOWN",
        ),
        (
            "another tenant's approver",
            [
                approval(
                    cluster.approver_key("globex-approver-1"), "globex-approver-1", request, version
                )
            ],
            "APPROVAL_MISSING",
        ),
        (
            "expired approval",
            [treasury(cluster, request, expires_at=int(time.time()) - 1)],
            "APPROVAL_EXPIRED",
        ),
        ("forged approval next to a genuine one", [genuine, forged], "APPROVAL_SIGNATURE_INVALID"),
    ]
    attempt = EcdsaAttempt(cluster, ecdsa_key.key_id, (1, 2))
    honest = authorizations(cluster, request, sig, attempt.signers, approvals=[genuine])
    for what, approvals, code in lies:
        lying = with_approvals(honest, approvals)
        for i in attempt.signers:
            try:
                attempt.refused(i, lying[i], code, message_hash=ecdsa_input(request))
            except AssertionError as exc:
                raise AssertionError(f"{what}: {exc}") from None
    # Control: the same presignature, the genuine approval -> a valid ECDSA signature. A
    # node that refused a request never signs it (its lease is lost): submitted again.
    again = resubmitted(request)
    attempt.refused(
        1, honest[1], "HISTORY_LEASE_LOST", status=FAILED, message_hash=ecdsa_input(request)
    )
    fresh = authorizations(
        cluster,
        again,
        signed(cluster, again),
        attempt.signers,
        approvals=[treasury(cluster, again)],
    )
    attempt.sign(fresh, ecdsa_input(again), ecdsa_key.public_key)


# -- payload ------------------------------------------------------------------------------


def test_payload_swapped_after_signing_gets_no_share(
    cluster: LiarCluster, ecdsa_key: pb.Key
) -> None:
    """The initiator signed and the treasury approved 2 ETH to A. The coordinator changes
    the destination, the amount, or only the payload: the request digest changes, so the
    initiator signature and the approvals no longer verify, and a payload that says
    something else than the request is refused before any policy is evaluated."""
    request = eth_transfer(ecdsa_key.key_id, to=ADDRESS_A, amount=2 * ETH)
    sig = signed(cluster, request)
    genuine = treasury(cluster, request)
    to_b = eth_transfer(
        ecdsa_key.key_id, to=ADDRESS_B, amount=2 * ETH, request_id=request.request_id
    )
    more = eth_transfer(
        ecdsa_key.key_id, to=ADDRESS_A, amount=5 * ETH, request_id=request.request_id
    )
    payload_only = eth_transfer(
        ecdsa_key.key_id,
        to=ADDRESS_A,
        amount=2 * ETH,
        payload=eth_payload(ADDRESS_B, 2 * ETH),
        request_id=request.request_id,
    )
    # A second request the initiator really signed (9 ETH to B), with the first's approval.
    second = eth_transfer(ecdsa_key.key_id, to=ADDRESS_B, amount=9 * ETH)
    attempt = EcdsaAttempt(cluster, ecdsa_key.key_id, (1, 3))
    lies = [
        (to_b, sig, "INITIATOR_SIGNATURE_INVALID"),
        (more, sig, "INITIATOR_SIGNATURE_INVALID"),
        (payload_only, sig, "PAYLOAD_MISMATCH"),
        (second, signed(cluster, second), "APPROVAL_SIGNATURE_INVALID"),
    ]
    for swapped, signature, code in lies:
        if swapped is second:  # the coordinator gives up on the first request
            attempt.abandon(
                authorizations(cluster, request, sig, attempt.signers),
                message_hash=ecdsa_input(request),
            )
        if code != "APPROVAL_SIGNATURE_INVALID":  # no node reports for a forged request
            for i in attempt.signers:
                with pytest.raises(grpc.RpcError) as err:
                    authorizations(cluster, swapped, signature, [i])
                assert refusal(err.value) == (DENIED, "INITIATOR_SIGNATURE_INVALID")
        genuine_reports = None if code == "APPROVAL_SIGNATURE_INVALID" else (request, sig)
        auths = authorizations(
            cluster,
            swapped,
            signature,
            attempt.signers,
            approvals=[genuine],
            reports_for=genuine_reports,
        )
        message_hash = bytes(keccak(swapped.payload))
        for i in attempt.signers:
            attempt.refused(i, auths[i], code, message_hash=message_hash)


def test_signing_input_must_be_what_the_payload_says(
    cluster: LiarCluster, ecdsa_key: pb.Key, frost_key: pb.Key
) -> None:
    """Fully authorized requests, but the coordinator asks the nodes to sign something
    else: an ECDSA hash of another transaction or of the request digest itself, a FROST
    package over another message (or with a key tweak). SIGNING_INPUT_MISMATCH; then the
    same FROST nonces sign the right message."""
    request = eth_transfer(ecdsa_key.key_id, to=ADDRESS_A, amount=2 * ETH)
    sig = signed(cluster, request)
    attempt = EcdsaAttempt(cluster, ecdsa_key.key_id, (2, 3))
    auths = authorizations(
        cluster, request, sig, attempt.signers, approvals=[treasury(cluster, request)]
    )
    for wrong in (bytes(keccak(eth_payload(ADDRESS_B, 2 * ETH))), request.digest()):
        for i in attempt.signers:
            attempt.refused(i, auths[i], "SIGNING_INPUT_MISMATCH", message_hash=wrong)

    message = b"acme pays invoice 1042"
    m = offchain(frost_key.key_id, message)
    frost = FrostAttempt(cluster, frost_key.key_id, (1, 3))
    honest = authorizations(cluster, m, signed(cluster, m), frost.signers)
    right = message_digest(message)
    wrong_packages = [
        frost.package(message),  # the message itself, not its tagged digest
        frost.package(message_digest(b"acme pays invoice 9999")),
    ]
    for package in wrong_packages:
        for i in frost.signers:
            frost.refused(i, honest[i], "SIGNING_INPUT_MISMATCH", package=package)
    tweaked = frost.package(right)
    tweaked = type(tweaked)(tweaked.commitments, right, b"\x01" * 32)
    for i in frost.signers:
        frost.refused(i, honest[i], "LOCAL_MISUSE", status=FAILED, package=tweaked)
    again = resubmitted(m)  # the nodes that refused m never sign it
    frost.sign(
        authorizations(cluster, again, signed(cluster, again), frost.signers),
        right,
        frost_key.public_key,
    )


# -- tenants ------------------------------------------------------------------------------


def test_another_tenants_initiator_or_key_gets_no_share(
    cluster: LiarCluster, frost_key: pb.Key
) -> None:
    """acme's key, globex's initiator: globex signing for acme's key is KEY_TENANT_MISMATCH
    (the key's tenant comes from each node's own key store, fixed at DKG); globex's signed
    request relabelled as acme's is INITIATOR_TENANT_MISMATCH; globex's signature replayed
    on an acme-initiator request is INITIATOR_SIGNATURE_INVALID."""
    message = b"move everything"
    globex_req = offchain(frost_key.key_id, message, tenant="globex")
    globex_sig = signed(cluster, globex_req)
    relabelled = offchain(
        frost_key.key_id,
        message,
        initiator="globex-initiator",
        request_id=globex_req.request_id,
    )
    as_acme = offchain(frost_key.key_id, message, request_id=globex_req.request_id)
    frost = FrostAttempt(cluster, frost_key.key_id, (2, 3))
    package = frost.package(message_digest(message))
    lies = [
        (globex_req, "KEY_TENANT_MISMATCH"),
        (relabelled, "INITIATOR_TENANT_MISMATCH"),
        (as_acme, "INITIATOR_SIGNATURE_INVALID"),
    ]
    acme_sig = signed(cluster, as_acme)
    for request, code in lies:
        for i in frost.signers:  # no report (and no lease) for it...
            with pytest.raises(grpc.RpcError) as err:
                authorizations(cluster, request, globex_sig, [i])
            assert refusal(err.value) == (DENIED, code)
        # ... and no share with the reports given for the genuine request
        auths = authorizations(
            cluster, request, globex_sig, frost.signers, reports_for=(as_acme, acme_sig)
        )
        for i in frost.signers:
            frost.refused(i, auths[i], code, package=package)
    again = resubmitted(as_acme)  # globex's signature on it made the nodes refuse as_acme
    honest = authorizations(cluster, again, signed(cluster, again), frost.signers)
    frost.sign(honest, message_digest(message), frost_key.public_key)


# -- policy versions -----------------------------------------------------------------------


def test_replayed_policy_version_gets_no_share(
    cluster: LiarCluster, ecdsa_key: pb.Key, frost_key: pb.Key
) -> None:
    """Officers (quorum 2 of 3, through GovernanceService) activate a version that blocks
    acme's raw digests. The coordinator replays the old version id (for a raw digest the
    old version allowed, and with approvals given under it), names the new id with old
    approvals, and pushes the old bundle again: every node refuses."""
    digest_payload = bytes(range(32))
    raw = offchain(frost_key.key_id, digest_payload, request_type=RequestType.RAW_DIGEST)
    raw_sig = signed(cluster, raw)
    transfer = eth_transfer(ecdsa_key.key_id, to=ADDRESS_A, amount=3 * ETH)
    transfer_sig = signed(cluster, transfer)
    old = active_id(cluster)
    old_number = cluster.active(1).active_number
    old_approval = treasury(cluster, transfer, version=old)

    with GovernanceClient.from_data_dir(cluster.config.data_dir) as gov:
        doc = json.loads(gov.version().document)
        doc["rules"].insert(
            0,
            {
                "id": "acme-no-raw-digests",
                "match": {"tenants": ["acme"], "request_types": ["raw_digest"]},
                "action": "block",
            },
        )
        proposal = gov.propose(
            json.dumps(doc).encode(), "officer-1", cluster.officer_key("officer-1")
        )
        assert proposal.state == gpb.PROPOSAL_STATE_OPEN  # one officer is not a quorum
        assert active_id(cluster) == old
        done = gov.approve_policy(
            proposal.version_id.hex(), "officer-2", cluster.officer_key("officer-2")
        )
        assert done.state == gpb.PROPOSAL_STATE_ACTIVATED
    deadline = time.monotonic() + 15
    while {cluster.active(i).active_number for i in NODES} != {old_number + 1}:
        assert time.monotonic() < deadline, "the new version did not reach every node"
        time.sleep(0.1)
    new = active_id(cluster)
    assert new == proposal.version_id

    frost = FrostAttempt(cluster, frost_key.key_id, (1, 2))
    package = frost.package(digest_payload)
    replayed = authorizations(cluster, raw, raw_sig, frost.signers, policy_version_id=old)
    current = authorizations(cluster, raw, raw_sig, frost.signers)
    for i in frost.signers:
        frost.refused(i, replayed[i], "POLICY_VERSION_MISMATCH", package=package)
        frost.refused(i, current[i], "BLOCKED_BY_RULE", package=package)

    attempt = EcdsaAttempt(cluster, ecdsa_key.key_id, (1, 2))
    old_id = authorizations(
        cluster,
        transfer,
        transfer_sig,
        attempt.signers,
        approvals=[old_approval],
        policy_version_id=old,
    )
    new_id = authorizations(
        cluster, transfer, transfer_sig, attempt.signers, approvals=[old_approval]
    )
    for i in attempt.signers:
        attempt.refused(i, old_id[i], "POLICY_VERSION_MISMATCH", message_hash=ecdsa_input(transfer))
        attempt.refused(
            i, new_id[i], "APPROVAL_POLICY_MISMATCH", message_hash=ecdsa_input(transfer)
        )

    genesis = (cluster.governance / "genesis.bundle").read_bytes()
    for i in NODES:
        with pytest.raises(grpc.RpcError) as err:
            cluster.stub(i).ActivatePolicy(node_pb2.ActivatePolicyRequest(bundles=[genesis]))
        assert refusal(err.value) == (FAILED, "POLICY_VERSION_NOT_NEXT")
    assert active_id(cluster) == new


def test_policy_change_without_officer_quorum_is_refused_by_every_node(
    cluster: LiarCluster,
) -> None:
    """The coordinator pushes a permissive next version (allow everything) signed by one
    officer, by an officer and a non-officer, with a forged officer signature, signed in
    by the officers it adds, on a wrong parent, or skipping a number, and a valid version
    chained with an under-signed one: every node refuses with the section 6 code and keeps
    its active version."""
    state = cluster.active(1)
    number, parent = state.active_number, bytes(state.active_version_id)
    with GovernanceClient.from_data_dir(cluster.config.data_dir) as gov:
        doc = json.loads(gov.version().document)
    doc["rules"] = [{"id": "anything-goes", "match": {}, "action": "allow"}]
    permissive = json.dumps(doc).encode()
    mallory, newcomer = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    doc["officers"]["members"]["officer-4"] = {
        "public_key": newcomer.public_key().public_bytes_raw().hex()
    }
    with_newcomer = json.dumps(doc).encode()
    o1, o2 = (
        ("officer-1", cluster.officer_key("officer-1")),
        ("officer-2", cluster.officer_key("officer-2")),
    )
    valid_next = bundle(number + 1, parent, permissive, [o1, o2])
    after_valid = PolicyVersion(number + 1, parent, permissive).version_id
    cases: list[tuple[str, list[bytes], str]] = [
        ("no signature", [bundle(number + 1, parent, permissive, [])], "POLICY_QUORUM_NOT_MET"),
        ("one officer", [bundle(number + 1, parent, permissive, [o1])], "POLICY_QUORUM_NOT_MET"),
        (
            "officer and non-officer",
            [bundle(number + 1, parent, permissive, [o1, ("mallory", mallory)])],
            "POLICY_NOT_OFFICER",
        ),
        (
            "forged officer-2 signature",
            [bundle(number + 1, parent, permissive, [o1, ("officer-2", mallory)])],
            "POLICY_SIGNATURE_INVALID",
        ),
        (
            "incoming officer signs itself in",
            [bundle(number + 1, parent, with_newcomer, [o1, ("officer-4", newcomer)])],
            "POLICY_NOT_OFFICER",
        ),
        (
            "wrong parent",
            [bundle(number + 1, bytes(32), permissive, [o1, o2])],
            "POLICY_CHAIN_BROKEN",
        ),
        (
            "skips a number",
            [bundle(number + 2, parent, permissive, [o1, o2])],
            "POLICY_VERSION_NOT_NEXT",
        ),
        (
            "valid version chained with an under-signed one",
            [valid_next, bundle(number + 2, after_valid, permissive, [o1])],
            "POLICY_QUORUM_NOT_MET",
        ),
    ]
    for what, bundles, code in cases:
        for i in NODES:
            with pytest.raises(grpc.RpcError) as err:
                cluster.stub(i).ActivatePolicy(node_pb2.ActivatePolicyRequest(bundles=bundles))
            assert refusal(err.value) == (FAILED, code), f"{what} at node {i}"
            now = cluster.active(i)
            assert (now.active_number, bytes(now.active_version_id)) == (number, parent), what


# -- velocity and hidden history -----------------------------------------------------------


def test_hidden_history_cannot_dodge_the_velocity_limit(
    cluster: LiarCluster, ecdsa_key: pb.Key
) -> None:
    """acme's ETH budget (10 ETH / 24 h) is spent exactly through signer set {1, 2}; then
    the coordinator sends one more unapproved transfer through {2, 3}, hiding the history.

    Assumption (A), docs/policy-format.md section 8: any two signing sets share an honest
    node. Against a lying coordinator with honest nodes this is ``2t > n``: here
    ``2 * 2 > 3``, so {1, 2} and {2, 3} share node 2. Node 3 never saw the spending; it
    learns it only from node 2's signed report and the coordinator's account. Omitting the
    report (HISTORY_REPORT_MISSING) or the account (HISTORY_HIDDEN, with node 2's report as
    the evidence) refuses; node 2 catches a hidden account from its own log; a signing set
    shrunk to {3} so that no report is due does not match the presignature. Told the truth,
    both nodes refuse because the budget is spent (the starter policy then asks for the
    treasury: APPROVAL_MISSING), and with the treasury's approval they sign."""
    key_id, public_key = ecdsa_key.key_id, ecdsa_key.public_key
    spent = cluster.history_amounts("acme", "ETH")
    assert spent < DAILY_ETH - 2 * ETH, "earlier tests spent too much of acme's ETH budget"
    # Up to the limit through {1, 2}: an approved transfer of the rest but 1 ETH, then
    # 1 ETH that the small-transfer rule allows without approval (exactly the limit).
    big = eth_transfer(key_id, to=ADDRESS_A, amount=DAILY_ETH - spent - ETH)
    EcdsaAttempt(cluster, key_id, (1, 2)).sign(
        authorizations(
            cluster, big, signed(cluster, big), (1, 2), approvals=[treasury(cluster, big)]
        ),
        ecdsa_input(big),
        public_key,
    )
    last = eth_transfer(key_id, to=ADDRESS_A, amount=ETH)
    EcdsaAttempt(cluster, key_id, (1, 2)).sign(
        authorizations(cluster, last, signed(cluster, last), (1, 2)), ecdsa_input(last), public_key
    )
    assert cluster.history_amounts("acme", "ETH") == DAILY_ETH
    assert last.request_id not in cluster.history_ids(3)

    extra = eth_transfer(key_id, to=ADDRESS_B, amount=ETH // 2)
    sig = signed(cluster, extra)
    attempt = EcdsaAttempt(cluster, key_id, (2, 3))
    message_hash = ecdsa_input(extra)
    hidden = authorizations(cluster, extra, sig, attempt.signers, hide_history=True)
    honest = authorizations(cluster, extra, sig, attempt.signers)
    assert not hidden[3].coordinator_view and honest[3].coordinator_view
    known = known_to(cluster, 3, "acme", extra, sig)
    attempt.refused(
        3, without_report(hidden[3], 2), "HISTORY_REPORT_MISSING", message_hash=message_hash
    )
    attempt.refused(3, hidden[3], "HISTORY_HIDDEN", message_hash=message_hash)
    attempt.refused(2, hidden[2], "HISTORY_HIDDEN", message_hash=message_hash)
    alone = signing_set(told(without_report(hidden[3], 2), known), [3])
    attempt.refused(3, alone, "LOCAL_MISUSE", status=FAILED, message_hash=message_hash)
    for i in attempt.signers:
        attempt.refused(i, honest[i], "APPROVAL_MISSING", message_hash=message_hash)
    again = resubmitted(extra)  # refused at both nodes: submitted again, and approved
    approved = authorizations(
        cluster,
        again,
        signed(cluster, again),
        attempt.signers,
        approvals=[treasury(cluster, again)],
    )
    attempt.sign(approved, message_hash, public_key)


def test_prefetched_history_reports_cannot_split_the_budget(cluster: LiarCluster) -> None:
    """docs/policy-format.md section 8, "Reports go stale": with n = 3, t = 2, spending
    through {1,2} and {2,3} must be seen by a later request through {1,3}. The coordinator
    asks nodes 1 and 3 for their reports on request r while the budget is untouched, means
    to spend 5 + 5 ETH of globex's 10 ETH budget through {1,2} and {2,3} (approved), then
    to send r (1 ETH, unapproved) through {1,3} with the early reports, so that each of
    nodes 1 and 3 sees only its own half. The reports were given under globex's lease for
    r: while it is held, nodes 1 and 3 give no report for another globex request; once it
    is gone (the coordinator made them refuse r, or it ran out), they never sign r."""
    with cluster.client("globex") as globex:
        key = globex.create_key("ecdsa-secp256k1")
    approver = cluster.approver_key("globex-approver-1")
    r = eth_transfer(key.key_id, to=ADDRESS_A, amount=ETH, tenant="globex")
    r_sig = signed(cluster, r)
    late = EcdsaAttempt(cluster, key.key_id, (1, 3), "globex")
    early = authorizations(cluster, r, r_sig, late.signers)  # asked now, used later
    spends = []
    for _ in range(2):
        spend = eth_transfer(key.key_id, to=ADDRESS_B, amount=5 * ETH, tenant="globex")
        ok = approval(approver, "globex-approver-1", spend, active_id(cluster))
        spends.append((spend, ok))
    for i in late.signers:  # r holds globex's lease at nodes 1 and 3
        with pytest.raises(grpc.RpcError) as err:
            authorizations(cluster, spends[0][0], signed(cluster, spends[0][0]), [i])
        assert refusal(err.value) == (UNAVAILABLE, "HISTORY_LEASE_BUSY")

    late.abandon(early, message_hash=ecdsa_input(r))  # frees the lease, loses r
    for (spend, ok), signers in zip(spends, ((1, 2), (2, 3)), strict=True):
        auths = authorizations(cluster, spend, signed(cluster, spend), signers, approvals=[ok])
        EcdsaAttempt(cluster, key.key_id, signers, "globex").sign(
            auths, ecdsa_input(spend), key.public_key
        )
    assert cluster.history_amounts("globex", "ETH") == 10 * ETH

    message_hash = ecdsa_input(r)
    # The early reports get no share. Node 1 saw only its own half: r's lease is lost.
    # Node 3 already counts both halves: it verified node 2's report, which holds the
    # first spend, when it signed the second (policy/seen.py: each decision builds on
    # everything the node verified before).
    late.refused(1, early[1], "HISTORY_LEASE_LOST", status=FAILED, message_hash=message_hash)
    late.refused(3, early[3], "APPROVAL_MISSING", message_hash=message_hash)
    for i in late.signers:
        with pytest.raises(grpc.RpcError) as err:
            authorizations(cluster, r, r_sig, [i])
        assert refusal(err.value) == (FAILED, "HISTORY_LEASE_LOST")
    # Submitted again, r is refused: the budget is spent, and both nodes now see it.
    again = resubmitted(r)
    fresh = authorizations(cluster, again, signed(cluster, again), late.signers)
    for i in late.signers:
        late.refused(i, fresh[i], "APPROVAL_MISSING", message_hash=message_hash)
