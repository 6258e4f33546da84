"""Deterministic keys, a base policy document and request builders for the policy tests."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy._codec import public_bytes
from policy.governance import ChainState, document_hash, genesis
from policy.request import (
    Approval,
    ApprovalDecision,
    InitiatorSignature,
    RequestType,
    SigningRequest,
    sign_approval,
    sign_request,
)

T0 = 1_718_000_000  # a Monday? no matter: tests that need weekdays compute them


def key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def pub(label: str) -> str:
    return public_bytes(key(label)).hex()


OFFICERS = ("off-a", "off-b", "off-c")
APPROVERS = ("alice", "bob", "carol", "dave", "erin")


def base_doc() -> dict[str, Any]:
    return {
        "format": "custody-policy/v1",
        "name": "test-policy",
        "description": "fixture",
        "officers": {"quorum": 2, "members": {o: {"public_key": pub(o)} for o in OFFICERS}},
        "initiators": {
            "acme-bot": {"tenant": "acme", "public_key": pub("acme-bot")},
            "acme-ops": {"tenant": "acme", "public_key": pub("acme-ops")},
            "globex-bot": {"tenant": "globex", "public_key": pub("globex-bot")},
        },
        "approvers": {a: {"public_key": pub(a)} for a in (*APPROVERS, "acme-ops")},
        "approver_groups": {
            "treasury": {"members": ["alice", "bob", "carol"], "quorum": 2},
            "risk": {"members": ["dave", "erin"], "quorum": 1},
            "ops": {"members": ["acme-ops", "alice"], "quorum": 1},
        },
        "key_groups": {"hot": ["key-hot-1", "key-hot-2"]},
        "whitelists": {
            "eth-cold": {"chain": "ethereum", "addresses": ["0x" + "11" * 20]},
            "btc-cold": {"chain": "bitcoin", "addresses": ["bc1qcold"]},
        },
        "rules": [
            {"id": "allow-all", "match": {}, "action": "allow"},
        ],
    }


def with_rules(*rules: dict[str, Any], doc: dict[str, Any] | None = None) -> dict[str, Any]:
    d = copy.deepcopy(doc or base_doc())
    d["rules"] = list(rules)
    return d


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1).encode()


def state_for(doc: dict[str, Any]) -> ChainState:
    data = encode(doc)
    return genesis(data, expected_document_hash=document_hash(data))


def req(**kw: Any) -> SigningRequest:
    fields: dict[str, Any] = {
        "request_id": "req-1",
        "tenant": "acme",
        "initiator": "acme-bot",
        "key_id": "key-hot-1",
        "request_type": RequestType.TRANSFER,
        "chain": "ethereum",
        "asset": "ETH",
        "destination": "0x" + "22" * 20,
        "amount": 1000,
        "payload": b"\x02tx",
        "created_at": T0,
    }
    fields.update(kw)
    return SigningRequest(**fields)


def isig(request: SigningRequest, signer: str | None = None) -> InitiatorSignature:
    name = signer or request.initiator
    return sign_request(key(name), request.initiator, request)


def approve(
    who: str,
    request: SigningRequest,
    state: ChainState,
    *,
    expires_at: int = T0 + 3600,
    decision: ApprovalDecision = ApprovalDecision.APPROVE,
    version_id: bytes | None = None,
) -> Approval:
    return sign_approval(
        key(who),
        approver=who,
        request=request,
        decision=decision,
        expires_at=expires_at,
        policy_version_id=version_id or state.version_id,
    )
