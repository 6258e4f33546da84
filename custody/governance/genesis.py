"""The development governance profile: officer, initiator and approver keys and a starter
policy signed by the officer quorum, so a fresh cluster enforces a real policy at once.

``init_governance(root, tenants)`` writes (private keys 0600, see :mod:`.keys`)::

    root/officers/officer-{1,2,3}.key        security officers (quorum 2 of 3)
    root/initiators/<tenant>-initiator.key   the tenant's initiator (signs its requests)
    root/initiators/<tenant>-por.key         the service's initiator for the tenant's
                                             proof-of-reserves attestations (nothing else)
    root/approvers/<tenant>-approver-{1,2}.key   the tenant's treasury group (quorum 1)
    root/genesis.json                        policy version 1 (custody-policy/v1)
    root/genesis.bundle                      version 1 signed by officer-1 and officer-2
    root/genesis.sha256                      its document hash (hex), what nodes pin

every ``.key`` with a ``.pub`` (hex) next to it. The intended root is
``<data-dir>/governance``; :meth:`GenesisFiles.install` copies the bundle and the pinned hash
into a node directory (``policy-genesis.bundle``, ``policy-genesis.sha256``), where
:meth:`signer_nodes.node.policy_state.PolicyState.for_node` reads them.

The starter policy, per tenant ``t`` (first match wins, default block):

1. ``t-por``: ``t-por`` may sign ``por_attestation`` requests;
2. ``t-eth-small`` / ``t-btc-small``: ``t-initiator`` may sign transfers up to 1 ETH /
   0.1 BTC each, within 10 ETH / 1 BTC per tenant per 24 h;
3. ``t-transfers-approved``: any other transfer by ``t-initiator`` needs the ``t-treasury``
   group (one of ``t-approver-1``, ``t-approver-2``);
4. ``t-messages``: ``t-initiator`` may sign messages and raw digests, 10 000 per 24 h;
5. ``t-messages-approved``: beyond that budget, the treasury group must approve.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.governance.bundle import encode_bundle
from custody.governance.keys import new_key
from policy._codec import ZERO_HASH, public_bytes
from policy.governance import PolicyVersion, SignedPolicyVersion, document_hash, sign_version
from policy.request import valid_identifier
from signer_nodes.node.policy_state import GENESIS_BUNDLE_FILE, GENESIS_HASH_FILE

GOVERNANCE_DIR = "governance"  # under the cluster data dir
OFFICERS = ("officer-1", "officer-2", "officer-3")
OFFICER_QUORUM = 2
APPROVERS_PER_TENANT = 2
DAY = 86_400
# asset -> (chain, per-transfer limit, per-tenant daily limit), in minor units
DEMO_TRANSFER_LIMITS: Mapping[str, tuple[str, int, int]] = {
    "ETH": ("ethereum", 10**18, 10 * 10**18),
    "BTC": ("bitcoin", 10**7, 10**8),
}
DAILY_MESSAGES = 10_000


class GenesisError(ValueError):
    code = "GOVERNANCE_INIT_INVALID"


def initiator_id(tenant: str) -> str:
    return f"{tenant}-initiator"


def por_initiator_id(tenant: str) -> str:
    return f"{tenant}-por"


def approver_ids(tenant: str) -> tuple[str, ...]:
    return tuple(f"{tenant}-approver-{i}" for i in range(1, APPROVERS_PER_TENANT + 1))


def governance_root(data_dir: Path) -> Path:
    """Where ``custody init`` puts the governance profile: ``<data-dir>/governance``."""
    return data_dir / GOVERNANCE_DIR


def officer_key_path(root: Path, officer: str) -> Path:
    return root / "officers" / f"{officer}.key"


def initiator_key_path(root: Path, initiator: str) -> Path:
    return root / "initiators" / f"{initiator}.key"


def approver_key_path(root: Path, approver: str) -> Path:
    return root / "approvers" / f"{approver}.key"


@dataclass(frozen=True, slots=True)
class GenesisFiles:
    """What :func:`init_governance` wrote (paths) and what nodes pin (hash)."""

    root: Path
    officers: Mapping[str, Path]
    initiators: Mapping[str, Path]  # initiator id -> key file (tenant and por initiators)
    approvers: Mapping[str, Path]
    document: Path
    bundle: Path
    hash_file: Path
    document_hash: bytes
    version_id: bytes

    @classmethod
    def load(cls, root: Path) -> GenesisFiles:
        """The files an earlier :func:`init_governance` wrote into ``root``."""

        def keys(sub: str) -> dict[str, Path]:
            return {p.stem: p for p in sorted((root / sub).glob("*.key"))}

        document = (root / "genesis.json").read_bytes()
        return cls(
            root=root,
            officers=keys("officers"),
            initiators=keys("initiators"),
            approvers=keys("approvers"),
            document=root / "genesis.json",
            bundle=root / "genesis.bundle",
            hash_file=root / "genesis.sha256",
            document_hash=document_hash(document),
            version_id=PolicyVersion(1, ZERO_HASH, document).version_id,
        )

    def install(self, node_dir: Path) -> None:
        """Copy the genesis bundle and pinned hash into a signer node's directory."""
        node_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.bundle, node_dir / GENESIS_BUNDLE_FILE)
        shutil.copyfile(self.hash_file, node_dir / GENESIS_HASH_FILE)


def _hex(key: Ed25519PrivateKey) -> str:
    return public_bytes(key).hex()


def starter_policy(
    tenants: Sequence[str],
    officers: Mapping[str, str],
    initiators: Mapping[str, str],
    approvers: Mapping[str, str],
) -> dict[str, Any]:
    """The starter document (module docstring); keys are hex public keys by id."""
    rules: list[dict[str, Any]] = []
    groups: dict[str, Any] = {}
    inits: dict[str, Any] = {}
    for t in tenants:
        ini, por = initiator_id(t), por_initiator_id(t)
        inits[ini] = {"tenant": t, "public_key": initiators[ini]}
        inits[por] = {"tenant": t, "public_key": initiators[por]}
        treasury = f"{t}-treasury"
        groups[treasury] = {"members": list(approver_ids(t)), "quorum": 1}
        base = {"tenants": [t], "initiators": [ini]}
        rules.append(
            {
                "id": f"{t}-por",
                "description": "the service attests proof of reserves with the tenant's keys",
                "match": {
                    "tenants": [t],
                    "initiators": [por],
                    "request_types": ["por_attestation"],
                },
                "action": "allow",
            }
        )
        for asset, (chain, each, daily) in DEMO_TRANSFER_LIMITS.items():
            rules.append(
                {
                    "id": f"{t}-{asset.lower()}-small",
                    "description": f"small {asset} transfers within a daily budget",
                    "match": {
                        **base,
                        "request_types": ["transfer"],
                        "chains": [chain],
                        "assets": [asset],
                        "amount": {"max": str(each)},
                        "velocity": {
                            "scope": "tenant",
                            "window_seconds": DAY,
                            "max_amount": str(daily),
                        },
                    },
                    "action": "allow",
                }
            )
        rules.append(
            {
                "id": f"{t}-transfers-approved",
                "description": "every other transfer needs the treasury",
                "match": {**base, "request_types": ["transfer"]},
                "action": {"require_approval": {"group": treasury}},
            }
        )
        rules.append(
            {
                "id": f"{t}-messages",
                "description": "messages and raw digests within a daily count",
                "match": {
                    **base,
                    "request_types": ["message", "raw_digest"],
                    "velocity": {
                        "scope": "initiator",
                        "window_seconds": DAY,
                        "max_count": DAILY_MESSAGES,
                    },
                },
                "action": "allow",
            }
        )
        rules.append(
            {
                "id": f"{t}-messages-approved",
                "description": "beyond the daily count, the treasury approves",
                "match": {**base, "request_types": ["message", "raw_digest"]},
                "action": {"require_approval": {"group": treasury}},
            }
        )
    return {
        "format": "custody-policy/v1",
        "name": "starter",
        "description": "Development profile written by custody init.",
        "officers": {
            "quorum": OFFICER_QUORUM,
            "members": {o: {"public_key": k} for o, k in officers.items()},
        },
        "initiators": inits,
        "approvers": {a: {"public_key": k} for a, k in approvers.items()},
        "approver_groups": groups,
        "rules": rules,
    }


def init_governance(root_dir: Path, tenants: Sequence[str]) -> GenesisFiles:
    """Write the development governance profile into ``root_dir`` (new or empty)."""
    tenants = tuple(tenants)
    if not tenants or len(set(tenants)) != len(tenants):
        raise GenesisError("at least one tenant, no duplicates")
    for t in tenants:
        if not valid_identifier(t) or len(t) > 100:
            raise GenesisError(f"tenant {t!r} is not a policy identifier")
    if root_dir.exists() and any(root_dir.iterdir()):
        raise GenesisError(f"{root_dir} exists and is not empty")
    root_dir.mkdir(parents=True, exist_ok=True)
    officer_keys = {o: new_key(officer_key_path(root_dir, o)) for o in OFFICERS}
    initiators: dict[str, Path] = {}
    approvers: dict[str, Path] = {}
    pub_initiators: dict[str, str] = {}
    pub_approvers: dict[str, str] = {}
    for t in tenants:
        for ini in (initiator_id(t), por_initiator_id(t)):
            initiators[ini] = initiator_key_path(root_dir, ini)
            pub_initiators[ini] = _hex(new_key(initiators[ini]))
        for a in approver_ids(t):
            approvers[a] = approver_key_path(root_dir, a)
            pub_approvers[a] = _hex(new_key(approvers[a]))
    doc = starter_policy(
        tenants, {o: _hex(k) for o, k in officer_keys.items()}, pub_initiators, pub_approvers
    )
    document = (json.dumps(doc, indent=2) + "\n").encode()
    version = PolicyVersion(1, ZERO_HASH, document)
    signed = SignedPolicyVersion(
        version,
        tuple(sign_version(officer_keys[o], o, version) for o in OFFICERS[:OFFICER_QUORUM]),
    )
    (root_dir / "genesis.json").write_bytes(document)
    (root_dir / "genesis.bundle").write_bytes(encode_bundle(signed))
    (root_dir / "genesis.sha256").write_text(document_hash(document).hex() + "\n")
    return GenesisFiles(
        root=root_dir,
        officers={o: officer_key_path(root_dir, o) for o in OFFICERS},
        initiators=initiators,
        approvers=approvers,
        document=root_dir / "genesis.json",
        bundle=root_dir / "genesis.bundle",
        hash_file=root_dir / "genesis.sha256",
        document_hash=document_hash(document),
        version_id=version.version_id,
    )
