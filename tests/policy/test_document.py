"""Strict parsing of policy documents: every invalid document is rejected with the JSON
pointer of the bad field, and the JSON Schema in docs/ agrees with the parser."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.document import ActionKind, AllOf, AnyOf, GroupRequirement, VelocityScope, parse_policy
from policy.errors import DocumentError, ReasonCode
from policy.request import RequestType
from tests.policy.helpers import base_doc, encode, with_rules

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs/policy.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

FULL_RULE: dict[str, Any] = {
    "id": "r-full",
    "description": "every condition",
    "match": {
        "tenants": ["acme"],
        "initiators": ["acme-bot"],
        "keys": ["key-9"],
        "key_groups": ["hot"],
        "assets": ["ETH"],
        "chains": ["ethereum"],
        "request_types": ["transfer", "contract_call"],
        "destination": {"addresses": ["0x" + "AB" * 20], "whitelists": ["eth-cold"]},
        "amount": {"min": "1", "max": "1000000000000000000000"},
        "velocity": {"scope": "key", "window_seconds": 86400, "max_amount": "5", "max_count": 3},
        "time_of_day": {
            "start": "22:00",
            "end": "06:00",
            "utc_offset_minutes": 60,
            "days": ["mon"],
        },
    },
    "action": {
        "require_approval": {
            "all_of": [{"group": "treasury", "quorum": 3}, {"any_of": [{"group": "risk"}]}]
        }
    },
}


def full_doc() -> dict[str, Any]:
    d = base_doc()
    d["rules"] = [copy.deepcopy(FULL_RULE), {"id": "catch-all", "match": {}, "action": "block"}]
    d["limits"] = {"request_max_age_seconds": 600, "clock_skew_seconds": 30}
    return d


def test_full_document_parses_into_values() -> None:
    doc = parse_policy(encode(full_doc()))
    VALIDATOR.validate(full_doc())
    r = doc.rules[0]
    m = r.match
    assert m.tenants == {"acme"} and m.keys == {"key-9"} and m.key_groups == {"hot"}
    assert m.request_types == {RequestType.TRANSFER, RequestType.CONTRACT_CALL}
    assert m.destination_addresses == {"0x" + "ab" * 20}  # EVM addresses compare lower-case
    assert m.amount is not None and m.amount.max == 10**21 and m.amount.min == 1
    assert m.velocity is not None and m.velocity.scope is VelocityScope.KEY
    assert m.velocity.max_amount == 5 and m.velocity.max_count == 3
    assert m.time_of_day is not None and m.time_of_day.start_minute == 22 * 60
    assert m.time_of_day.days == {0}
    assert r.action.kind is ActionKind.REQUIRE_APPROVAL
    assert r.action.approvals == AllOf(
        (GroupRequirement("treasury", 3), AnyOf((GroupRequirement("risk", 1),)))
    )
    assert doc.limits.request_max_age_seconds == 600
    assert doc.max_velocity_window == 86400
    assert doc.officers.quorum == 2 and len(doc.officers.members) == 3


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        *parents, last = path.strip("/").split("/")
        node: Any = d
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        *parents, last = path.strip("/").split("/")
        node: Any = d
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[last]

    return apply


M = "/rules/0/match"
# (mutation, pointer in the error, does the JSON Schema alone also reject it?)
INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str, bool]] = [
    ("unknown top field", _set("/colour", "red"), "/colour", True),
    ("wrong format", _set("/format", "custody-policy/v2"), "/format", True),
    ("missing officers", _del("/officers"), "/officers", True),
    ("officer quorum zero", _set("/officers/quorum", 0), "/officers/quorum", True),
    ("officer quorum above members", _set("/officers/quorum", 4), "/officers/quorum", False),
    (
        "officer bad key",
        _set("/officers/members/off-a/public_key", "zz"),
        "/officers/members/off-a/public_key",
        True,
    ),
    (
        "initiator unknown field",
        _set("/initiators/acme-bot/role", "x"),
        "/initiators/acme-bot/role",
        True,
    ),
    (
        "initiator bad id",
        _set("/initiators/bad id", {"tenant": "a", "public_key": "00" * 32}),
        "/initiators/bad id",
        True,
    ),
    (
        "group unknown approver",
        _set("/approver_groups/risk/members", ["zed"]),
        "/approver_groups/risk/members/0",
        False,
    ),
    (
        "group quorum float",
        _set("/approver_groups/risk/quorum", 1.5),
        "/approver_groups/risk/quorum",
        True,
    ),
    (
        "group quorum bool",
        _set("/approver_groups/risk/quorum", True),
        "/approver_groups/risk/quorum",
        True,
    ),
    (
        "whitelist empty",
        _set("/whitelists/eth-cold/addresses", []),
        "/whitelists/eth-cold/addresses",
        True,
    ),
    ("limits unknown", _set("/limits", {"max_age": 3}), "/limits/max_age", True),
    ("rules not array", _set("/rules", {}), "/rules", True),
    ("rule missing action", _del("/rules/0/action"), "/rules/0/action", True),
    ("rule unknown field", _set("/rules/0/priority", 1), "/rules/0/priority", True),
    ("match unknown field", _set(f"{M}/asset", ["ETH"]), f"{M}/asset", True),
    ("amount max typo", _set(f"{M}/amount", {"maxx": "1"}), f"{M}/amount/maxx", True),
    ("amount max number", _set(f"{M}/amount/max", 5), f"{M}/amount/max", True),
    ("amount max float", _set(f"{M}/amount/max", "1.5"), f"{M}/amount/max", True),
    ("amount max leading zero", _set(f"{M}/amount/max", "01"), f"{M}/amount/max", True),
    (
        "amount min above max",
        _set(f"{M}/amount/min", "2000000000000000000000"),
        f"{M}/amount/max",
        False,
    ),
    ("amount needs one asset", _set(f"{M}/assets", ["ETH", "WETH"]), f"{M}/amount", False),
    ("tenant unknown", _set(f"{M}/tenants", ["initech"]), f"{M}/tenants/0", False),
    (
        "initiator unknown",
        _set(f"{M}/initiators", ["acme-bot", "mallory"]),
        f"{M}/initiators/1",
        False,
    ),
    ("key group unknown", _set(f"{M}/key_groups", ["cold"]), f"{M}/key_groups/0", False),
    (
        "whitelist unknown",
        _set(f"{M}/destination/whitelists", ["nope"]),
        f"{M}/destination/whitelists/0",
        False,
    ),
    ("empty list", _set(f"{M}/chains", []), f"{M}/chains", True),
    ("duplicate item", _set(f"{M}/chains", ["a", "a"]), f"{M}/chains/1", True),
    ("bad request type", _set(f"{M}/request_types", ["swap"]), f"{M}/request_types/0", True),
    ("destination empty", _set(f"{M}/destination", {}), f"{M}/destination", True),
    ("velocity bad scope", _set(f"{M}/velocity/scope", "asset"), f"{M}/velocity/scope", True),
    (
        "velocity no limit",
        _set(f"{M}/velocity", {"scope": "key", "window_seconds": 5}),
        f"{M}/velocity",
        True,
    ),
    (
        "velocity window zero",
        _set(f"{M}/velocity/window_seconds", 0),
        f"{M}/velocity/window_seconds",
        True,
    ),
    ("time bad", _set(f"{M}/time_of_day/start", "25:00"), f"{M}/time_of_day/start", True),
    ("time empty window", _set(f"{M}/time_of_day/end", "22:00"), f"{M}/time_of_day/end", False),
    ("time bad day", _set(f"{M}/time_of_day/days", ["monday"]), f"{M}/time_of_day/days/0", True),
    ("action unknown", _set("/rules/0/action", "permit"), "/rules/0/action", True),
    (
        "approval unknown group",
        _set("/rules/0/action/require_approval/all_of/0/group", "board"),
        "/rules/0/action/require_approval/all_of/0/group",
        False,
    ),
    (
        "approval quorum above members",
        _set("/rules/0/action/require_approval/all_of/0/quorum", 4),
        "/rules/0/action/require_approval/all_of/0/quorum",
        False,
    ),
    (
        "approval both keys",
        _set("/rules/0/action/require_approval/all_of/1/group", "risk"),
        "/rules/0/action/require_approval/all_of/1/any_of",
        True,
    ),
    (
        "approval empty any_of",
        _set("/rules/0/action/require_approval/all_of/1/any_of", []),
        "/rules/0/action/require_approval/all_of/1/any_of",
        True,
    ),
    ("duplicate rule id", _set("/rules/1/id", "r-full"), "/rules/1/id", False),
]


@pytest.mark.parametrize(
    ("mutate", "path", "schema_rejects"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_documents_name_the_field(
    mutate: Callable[[dict[str, Any]], None], path: str, schema_rejects: bool
) -> None:
    d = full_doc()
    mutate(d)
    with pytest.raises(DocumentError) as err:
        parse_policy(encode(d))
    assert err.value.path == path
    assert err.value.code is ReasonCode.POLICY_DOCUMENT_INVALID
    assert str(err.value).startswith(f"POLICY_DOCUMENT_INVALID: {path}: ")
    assert VALIDATOR.is_valid(d) is not schema_rejects


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"\xff", "/"),
        (b"{", "/"),
        (b"[]", "/"),
        (b'{"format": "custody-policy/v1", "format": "custody-policy/v1"}', "/format"),
        (encode(base_doc()).replace(b'"quorum": 2', b'"quorum": NaN', 1), "/officers/quorum"),
        (encode(base_doc()).replace(b'"quorum": 2', b'"quorum": 2.0', 1), "/officers/quorum"),
    ],
)
def test_malformed_bytes(raw: bytes, path: str) -> None:
    with pytest.raises(DocumentError) as err:
        parse_policy(raw)
    assert err.value.path == path


def test_duplicate_keys_inside_rules_are_rejected() -> None:
    text = encode(with_rules({"id": "a", "match": {}, "action": "allow"})).decode()
    text = text.replace('"id": "a"', '"id": "a", "id": "b"')
    with pytest.raises(DocumentError) as err:
        parse_policy(text.encode())
    assert err.value.path == "/rules/0/id"


def test_pointer_escapes_slash_and_tilde() -> None:
    d = full_doc()
    d["rules"][0]["match"]["a/b~c"] = 1
    with pytest.raises(DocumentError) as err:
        parse_policy(encode(d))
    assert err.value.path == "/rules/0/match/a~1b~0c"


def test_parsing_is_deterministic_and_order_independent() -> None:
    d = full_doc()
    shuffled = json.loads(json.dumps(d))
    shuffled["initiators"] = dict(reversed(list(d["initiators"].items())))
    assert parse_policy(encode(d)) == parse_policy(encode(shuffled))


def test_the_example_in_the_docs_parses_and_validates() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs/policy-format.md").read_text()
    begin = text.index("<!-- example:begin -->\n```json\n") + len(
        "<!-- example:begin -->\n```json\n"
    )
    example = text[begin : text.index("```\n<!-- example:end -->")]
    VALIDATOR.validate(json.loads(example))
    doc = parse_policy(example.encode())
    assert [r.id for r in doc.rules] == ["no-raw-digests", "small-to-cold", "eth-with-approval"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from(
        [
            "/rules/0",
            "/rules/0/match",
            "/rules/0/match/velocity",
            "/officers",
            "/approver_groups/risk",
            "/rules/0/action",
        ]
    ),
    value=json_values,
)
def test_any_mutation_parses_or_names_a_field(path: str, value: Any) -> None:
    """Like h11's fuzzer: any document either parses or raises DocumentError, never
    anything else, and the schema never accepts what the parser rejects for shape."""
    d = full_doc()
    _set(path, value)(d)
    try:
        parse_policy(encode(d))
    except DocumentError as e:
        assert e.path.startswith("/")
    else:
        assert VALIDATOR.is_valid(d)
