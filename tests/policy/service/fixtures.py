"""Signed policy versions over the deterministic keys of ``tests.policy.helpers``."""

from __future__ import annotations

import copy
from typing import Any

from custody.governance.bundle import encode_bundle
from policy._codec import ZERO_HASH
from policy.governance import PolicyVersion, SignedPolicyVersion, sign_version
from signer_nodes.node.policy_state import GenesisPin
from tests.policy.helpers import base_doc, encode, key, pub

QUORUM = ("off-a", "off-b")


def signed(version: PolicyVersion, *officers: str) -> SignedPolicyVersion:
    return SignedPolicyVersion(version, tuple(sign_version(key(o), o, version) for o in officers))


def bundle(version: PolicyVersion, *officers: str) -> bytes:
    return encode_bundle(signed(version, *officers))


def doc_named(name: str, doc: dict[str, Any] | None = None) -> bytes:
    d = copy.deepcopy(doc or base_doc())
    d["name"] = name
    return encode(d)


def with_officers(*officers: str, quorum: int = 2) -> dict[str, Any]:
    d = base_doc()
    d["officers"] = {"quorum": quorum, "members": {o: {"public_key": pub(o)} for o in officers}}
    return d


GENESIS_DOC = encode(base_doc())
GENESIS = PolicyVersion(1, ZERO_HASH, GENESIS_DOC)
GENESIS_BUNDLE = bundle(GENESIS, *QUORUM)


def genesis_pin() -> GenesisPin:
    return GenesisPin(GENESIS_BUNDLE, GENESIS.document_hash)


def next_version(parent: PolicyVersion, document: bytes) -> PolicyVersion:
    return PolicyVersion(parent.number + 1, parent.version_id, document)


class FakeClock:
    """A settable clock (unix seconds) injected into the stores."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now
