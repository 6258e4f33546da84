"""The development governance profile (custody/governance/genesis.py): files and modes,
and a starter policy that nodes accept and that keeps the demo working."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custody.governance.genesis import GenesisError, GenesisFiles, init_governance
from custody.governance.keys import load_private_key
from policy.authorize import Authorization, Refusal, authorize
from policy.history import History
from policy.request import RequestType, SigningRequest, sign_request
from signer_nodes.node.policy_state import PolicyState
from tests.policy.helpers import T0


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> GenesisFiles:
    return init_governance(tmp_path_factory.mktemp("g") / "governance", ["acme", "globex"])


def test_layout_and_private_key_modes(files: GenesisFiles) -> None:
    assert sorted(files.officers) == ["officer-1", "officer-2", "officer-3"]
    assert sorted(files.initiators) == [
        "acme-initiator",
        "acme-por",
        "globex-initiator",
        "globex-por",
    ]
    assert sorted(files.approvers) == [
        f"{t}-approver-{i}" for t in ("acme", "globex") for i in (1, 2)
    ]
    for path in [*files.officers.values(), *files.initiators.values(), *files.approvers.values()]:
        assert path.stat().st_mode & 0o777 == 0o600
        assert len(bytes.fromhex(path.with_suffix(".pub").read_text())) == 32
    assert GenesisFiles.load(files.root) == files
    doc = json.loads(files.document.read_bytes())
    assert doc["officers"]["quorum"] == 2 and len(doc["officers"]["members"]) == 3


def test_init_refuses_bad_input(tmp_path: Path, files: GenesisFiles) -> None:
    with pytest.raises(GenesisError):
        init_governance(files.root, ["acme"])  # not empty
    with pytest.raises(GenesisError):
        init_governance(tmp_path / "x", ["-bad"])
    with pytest.raises(GenesisError):
        init_governance(tmp_path / "y", [])


def decide(files: GenesisFiles, node: PolicyState, initiator: str, **kw: object) -> object:
    fields: dict[str, object] = {
        "request_id": "r-1",
        "tenant": "acme",
        "initiator": initiator,
        "key_id": "acme-key",
        "request_type": RequestType.MESSAGE,
        "chain": "generic",
        "asset": "NONE",
        "payload": b"hello",
        "created_at": T0,
    }
    fields.update(kw)
    r = SigningRequest(**fields)  # type: ignore[arg-type]
    key = load_private_key(files.initiators[initiator])
    result = authorize(
        node.active(),
        request=r,
        initiator_signature=sign_request(key, initiator, r),
        approvals=(),
        policy_version_id=node.active().version_id,
        key_tenant=r.tenant,
        history=History(),
        now=T0,
    )
    if isinstance(result, Authorization):
        return "allow"
    assert isinstance(result, Refusal)
    return result.code


def test_starter_policy_on_a_node(tmp_path: Path, files: GenesisFiles) -> None:
    files.install(tmp_path / "node-1")
    node = PolicyState.for_node(f"sqlite:///{tmp_path / 'n.db'}", tmp_path / "node-1")
    assert node.active().version_id == files.version_id
    ini = "acme-initiator"
    assert decide(files, node, ini) == "allow"
    assert (
        decide(files, node, ini, request_type=RequestType.RAW_DIGEST, payload=b"\x11" * 32)
        == "allow"
    )
    eth = {
        "request_type": RequestType.TRANSFER,
        "chain": "ethereum",
        "asset": "ETH",
        "destination": "0x" + "aa" * 20,
    }
    assert decide(files, node, ini, amount=10**18, **eth) == "allow"
    assert decide(files, node, ini, amount=10**18 + 1, **eth) == "APPROVAL_MISSING"
    assert decide(files, node, ini, request_type=RequestType.CONTRACT_CALL) == "BLOCKED_BY_DEFAULT"
    assert (
        decide(files, node, ini, request_type=RequestType.POR_ATTESTATION) == "BLOCKED_BY_DEFAULT"
    )
    assert decide(files, node, "acme-por", request_type=RequestType.POR_ATTESTATION) == "allow"
    assert decide(files, node, "acme-por") == "BLOCKED_BY_DEFAULT"  # the service signs only PoR
    assert decide(files, node, ini, tenant="globex") == "INITIATOR_TENANT_MISMATCH"
