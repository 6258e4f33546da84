"""Rule evaluation: every match field, first match wins, default block, exact velocity and
time-of-day edges, and the compiled evaluator against a naive reference."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.document import PolicyDocument, Rule, parse_policy
from policy.errors import ReasonCode
from policy.evaluate import Outcome, Policy, Reason, evaluate
from policy.history import History, HistoryEntry
from policy.request import RequestType, SigningRequest, normalize_address, request_digest
from tests.policy.helpers import T0, encode, req, with_rules

NOW = T0 + 100


def policy_of(*rules: dict[str, Any]) -> Policy:
    return Policy(parse_policy(encode(with_rules(*rules))))


def decide(policy: Policy, request: SigningRequest, history: History | None = None, now: int = NOW):
    return evaluate(policy, request, history or History(), now)


def only(match: dict[str, Any]) -> Policy:
    return policy_of({"id": "r", "match": match, "action": "allow"})


FIELD_CASES = [
    ({"tenants": ["acme"]}, {}, {"tenant": "globex", "initiator": "globex-bot"}),
    ({"initiators": ["acme-ops"]}, {"initiator": "acme-ops"}, {}),
    ({"keys": ["key-9"]}, {"key_id": "key-9"}, {}),
    ({"key_groups": ["hot"]}, {"key_id": "key-hot-2"}, {"key_id": "key-cold"}),
    ({"keys": ["key-9"], "key_groups": ["hot"]}, {"key_id": "key-9"}, {"key_id": "key-8"}),
    ({"assets": ["ETH"]}, {}, {"asset": "USDC"}),
    ({"chains": ["ethereum"]}, {}, {"chain": "polygon"}),
    ({"request_types": ["raw_digest"]}, {"request_type": RequestType.RAW_DIGEST}, {}),
    ({"request_types": ["por_attestation", "message"]}, {"request_type": RequestType.MESSAGE}, {}),
    ({"destination": {"addresses": ["0x" + "22" * 20]}}, {}, {"destination": "0x" + "23" * 20}),
    (  # EIP-55 mixed case compares equal
        {"destination": {"addresses": ["0x" + "aB" * 20]}},
        {"destination": "0x" + "Ab" * 20},
        {"destination": "0x" + "aC" * 20},
    ),
    (  # a whitelist applies on its own chain only
        {"destination": {"whitelists": ["eth-cold"]}},
        {"destination": "0x" + "11" * 20},
        {"destination": "0x" + "11" * 20, "chain": "polygon"},
    ),
    (
        {"destination": {"whitelists": ["btc-cold"]}},
        {"chain": "bitcoin", "asset": "BTC", "destination": "bc1qcold"},
        {"chain": "bitcoin", "destination": "bc1QCOLD"},
    ),
    ({"assets": ["ETH"], "amount": {"max": "1000"}}, {"amount": 1000}, {"amount": 1001}),
    ({"assets": ["ETH"], "amount": {"min": "1000"}}, {"amount": 1000}, {"amount": 999}),
    ({"assets": ["ETH"], "amount": {"min": "5", "max": "5"}}, {"amount": 5}, {"amount": 6}),
]


@pytest.mark.parametrize(("match", "hit", "miss"), FIELD_CASES)
def test_each_rule_field(match: dict[str, Any], hit: dict[str, Any], miss: dict[str, Any]) -> None:
    policy = only(match)
    assert decide(policy, req(**hit)).outcome is Outcome.ALLOW
    d = decide(policy, req(**miss))
    assert d.outcome is Outcome.BLOCK and d.rule_id is None
    assert d.reasons == (Reason(ReasonCode.DEFAULT_BLOCK),)


def test_first_match_wins_and_default_block() -> None:
    policy = policy_of(
        {"id": "block-usdc", "match": {"assets": ["USDC"]}, "action": "block"},
        {
            "id": "approve-big",
            "match": {"assets": ["ETH"], "amount": {"min": "1000"}},
            "action": {"require_approval": {"group": "treasury"}},
        },
        {"id": "allow-eth", "match": {"assets": ["ETH"]}, "action": "allow"},
        {"id": "allow-everything-usdc", "match": {"assets": ["USDC"]}, "action": "allow"},
    )
    d = decide(policy, req(asset="USDC"))
    assert (d.outcome, d.rule_id, d.reasons) == (
        Outcome.BLOCK,
        "block-usdc",
        (Reason(ReasonCode.RULE_BLOCK, "block-usdc"),),
    )
    d = decide(policy, req(amount=1000))
    assert d.outcome is Outcome.NEEDS_APPROVAL and d.rule_id == "approve-big"
    assert d.approvals_description == "treasury>=2"
    assert decide(policy, req(amount=999)).rule_id == "allow-eth"
    d = decide(policy, req(asset="BTC"))
    assert d.outcome is Outcome.BLOCK and d.rule_id is None


def test_empty_policy_blocks_everything() -> None:
    assert decide(policy_of(), req()).outcome is Outcome.BLOCK


def _entry(i: int, ts: int, amount: int = 100, **kw: Any) -> HistoryEntry:
    fields: dict[str, Any] = {
        "request_id": f"old-{i}",
        "request_digest": bytes([i % 256]) * 32,
        "key_id": "key-hot-1",
        "initiator": "acme-bot",
        "tenant": "acme",
        "asset": "ETH",
        "amount": amount,
        "timestamp": ts,
    }
    fields.update(kw)
    return HistoryEntry(**fields)


VELOCITY_THEN_APPROVAL = (
    {
        "id": "daily",
        "match": {
            "assets": ["ETH"],
            "velocity": {"scope": "key", "window_seconds": 3600, "max_amount": "1000"},
        },
        "action": "allow",
    },
    {"id": "over", "match": {}, "action": {"require_approval": {"group": "treasury"}}},
)


def test_velocity_window_edges() -> None:
    policy = policy_of(*VELOCITY_THEN_APPROVAL)
    r = req(amount=100)
    # 900 already spent, entry exactly at the window start (now - 3600) has left the window
    at_edge = History([_entry(1, NOW - 3600, 900)])
    assert decide(policy, r, at_edge).rule_id == "daily"
    inside = History([_entry(1, NOW - 3599, 900)])
    assert decide(policy, r, inside).rule_id == "daily"  # 900 + 100 == 1000: at the limit
    over = History([_entry(1, NOW - 3599, 901)])
    d = decide(policy, r, over)
    assert d.rule_id == "over" and d.reasons[0] == Reason(ReasonCode.VELOCITY_EXCEEDED, "daily")
    assert d.velocity_exceeded
    future = History([_entry(1, NOW + 50, 901)])  # a peer's clock ahead of ours still counts
    assert decide(policy, r, future).rule_id == "over"


@pytest.mark.parametrize(
    ("scope", "other", "counts"),
    [
        ("key", {"key_id": "key-hot-2"}, False),
        ("key", {"initiator": "acme-ops"}, True),
        ("initiator", {"key_id": "key-hot-2"}, True),
        ("initiator", {"initiator": "acme-ops"}, False),
        ("tenant", {"key_id": "key-hot-2", "initiator": "acme-ops"}, True),
        ("tenant", {"tenant": "globex", "initiator": "globex-bot"}, False),
        ("key", {"asset": "WETH"}, False),
    ],
)
def test_velocity_scopes(scope: str, other: dict[str, Any], counts: bool) -> None:
    policy = policy_of(
        {
            "id": "v",
            "match": {
                "assets": ["ETH"],
                "velocity": {"scope": scope, "window_seconds": 60, "max_amount": "150"},
            },
            "action": "allow",
        }
    )
    h = History([_entry(1, NOW - 10, 100, **other)])
    expected = Outcome.BLOCK if counts else Outcome.ALLOW
    assert decide(policy, req(amount=100), h).outcome is expected


def test_velocity_count() -> None:
    policy = policy_of(
        {
            "id": "v",
            "match": {"velocity": {"scope": "initiator", "window_seconds": 60, "max_count": 2}},
            "action": "allow",
        }
    )
    one = History([_entry(1, NOW - 59, 10**30, asset="BTC")])  # count spans all assets
    assert decide(policy, req(), one).outcome is Outcome.ALLOW
    two = History([_entry(1, NOW - 59), _entry(2, NOW - 1)])
    assert decide(policy, req(), two).outcome is Outcome.BLOCK
    expired = History([_entry(1, NOW - 60), _entry(2, NOW - 1)])
    assert decide(policy, req(), expired).outcome is Outcome.ALLOW


def _at(day: int, hh: int, mm: int, offset_min: int = 0) -> int:
    """Unix time of weekday ``day`` (0 = Monday) hh:mm at the given UTC offset, in 2024."""
    monday = 1_704_067_200  # 2024-01-01 00:00 UTC, a Monday
    return monday + day * 86_400 + hh * 3600 + mm * 60 - offset_min * 60


def test_time_of_day_edges_wrap_and_days() -> None:
    office = only({"time_of_day": {"start": "09:00", "end": "17:30", "days": ["mon", "tue"]}})
    assert decide(office, req(), now=_at(0, 9, 0)).outcome is Outcome.ALLOW
    assert decide(office, req(), now=_at(0, 17, 29)).outcome is Outcome.ALLOW
    assert decide(office, req(), now=_at(0, 17, 30)).outcome is Outcome.BLOCK
    assert decide(office, req(), now=_at(0, 8, 59)).outcome is Outcome.BLOCK
    assert decide(office, req(), now=_at(2, 10, 0)).outcome is Outcome.BLOCK  # Wednesday
    night = only(
        {
            "time_of_day": {
                "start": "22:00",
                "end": "06:00",
                "utc_offset_minutes": 120,
                "days": ["fri"],
            }
        }
    )
    assert decide(night, req(), now=_at(4, 23, 0, 120)).outcome is Outcome.ALLOW  # Fri 23:00
    assert (
        decide(night, req(), now=_at(5, 5, 59, 120)).outcome is Outcome.ALLOW
    )  # Sat 05:59, opened Fri
    assert decide(night, req(), now=_at(5, 6, 0, 120)).outcome is Outcome.BLOCK
    assert decide(night, req(), now=_at(5, 23, 0, 120)).outcome is Outcome.BLOCK  # Sat night
    assert decide(night, req(), now=_at(4, 21, 0, 0)).outcome is Outcome.ALLOW  # Fri 23:00 at +2h
    assert decide(night, req(), now=_at(4, 19, 59, 0)).outcome is Outcome.BLOCK  # Fri 21:59 at +2h
    allday = only({"time_of_day": {"start": "00:00", "end": "24:00", "days": ["sun"]}})
    assert decide(allday, req(), now=_at(6, 23, 59)).outcome is Outcome.ALLOW
    assert decide(allday, req(), now=_at(0, 0, 0)).outcome is Outcome.BLOCK


# ------------------------------------------------------------- reference implementation


def _naive(
    doc: PolicyDocument, r: SigningRequest, h: History, now: int
) -> tuple[str | None, list[str]]:
    """Straight from the spec in docs/policy-format.md, without compilation."""
    skipped: list[str] = []

    def static_ok(rule: Rule) -> bool:
        m = rule.match
        keys = None
        if m.keys is not None or m.key_groups is not None:
            keys = set(m.keys or ())
            for g in m.key_groups or ():
                keys |= doc.key_groups[g]
        dest = normalize_address(r.destination)
        dest_ok = True
        if m.destination_addresses is not None or m.destination_whitelists is not None:
            dest_ok = dest in (m.destination_addresses or ()) or any(
                doc.whitelists[w].chain == r.chain and dest in doc.whitelists[w].addresses
                for w in m.destination_whitelists or ()
            )
        return (
            (m.tenants is None or r.tenant in m.tenants)
            and (m.initiators is None or r.initiator in m.initiators)
            and (keys is None or r.key_id in keys)
            and (m.assets is None or r.asset in m.assets)
            and (m.chains is None or r.chain in m.chains)
            and (m.request_types is None or r.request_type in m.request_types)
            and dest_ok
            and (
                m.amount is None
                or (m.amount.min or 0)
                <= r.amount
                <= (m.amount.max if m.amount.max is not None else r.amount)
            )
        )

    for rule in doc.rules:
        if not static_ok(rule):
            continue
        v = rule.match.velocity
        if v is not None:
            rel = [
                e
                for e in h
                if e.scope_value(v.scope)
                == {"key": r.key_id, "initiator": r.initiator, "tenant": r.tenant}[v.scope]
                and (
                    rule.match.assets is None
                    or len(rule.match.assets) != 1
                    or e.asset in rule.match.assets
                )
                and e.timestamp > now - v.window_seconds
            ]
            if (v.max_count is not None and len(rel) + 1 > v.max_count) or (
                v.max_amount is not None and sum(e.amount for e in rel) + r.amount > v.max_amount
            ):
                skipped.append(rule.id)
                continue
        return rule.id, skipped
    return None, skipped


SMALL = st.sampled_from
rule_strategy = st.fixed_dictionaries(
    {},
    optional={
        "tenants": st.just(["acme"]),
        "initiators": SMALL([["acme-bot"], ["acme-ops"], ["acme-bot", "globex-bot"]]),
        "keys": SMALL([["key-hot-1"], ["key-9"]]),
        "key_groups": st.just(["hot"]),
        "chains": SMALL([["ethereum"], ["bitcoin", "ethereum"]]),
        "request_types": SMALL([["transfer"], ["message", "raw_digest"]]),
        "destination": SMALL([{"whitelists": ["eth-cold"]}, {"addresses": ["0x" + "22" * 20]}]),
        "velocity": st.builds(
            lambda scope, w, c: {"scope": scope, "window_seconds": w, "max_count": c},
            SMALL(["key", "initiator", "tenant"]),
            st.integers(1, 100),
            st.integers(1, 4),
        ),
    },
).flatmap(
    lambda m: st.one_of(
        st.just(m),
        st.builds(
            lambda lo, span, vel: {
                **m,
                "assets": ["ETH"],
                "amount": {"min": str(lo), "max": str(lo + span)},
                **(
                    {"velocity": {"scope": "key", "window_seconds": 50, "max_amount": str(vel)}}
                    if vel
                    else {}
                ),
            },
            st.integers(0, 50),
            st.integers(0, 100),
            st.integers(0, 150),
        ),
    )
)


@settings(max_examples=150, deadline=None)
@given(
    rules=st.lists(rule_strategy, max_size=12),
    actions=st.lists(SMALL(["allow", "block"]), min_size=12, max_size=12),
    request=st.builds(
        lambda ini, key, chain, rtype, dest, amount: req(
            initiator=ini,
            tenant="globex" if ini == "globex-bot" else "acme",
            key_id=key,
            chain=chain,
            request_type=rtype,
            destination=dest,
            amount=amount,
        ),
        SMALL(["acme-bot", "acme-ops", "globex-bot"]),
        SMALL(["key-hot-1", "key-9", "key-x"]),
        SMALL(["ethereum", "bitcoin"]),
        st.sampled_from(list(RequestType)),
        SMALL(["0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20]),
        st.integers(0, 160),
    ),
    past=st.lists(
        st.tuples(
            SMALL(["key-hot-1", "key-9"]),
            SMALL(["acme-bot", "acme-ops"]),
            st.integers(0, 120),
            st.integers(0, 60),
        ),
        max_size=8,
    ),
)
def test_compiled_evaluation_equals_reference(rules, actions, request, past) -> None:
    doc_rules = [{"id": f"r{i}", "match": m, "action": actions[i]} for i, m in enumerate(rules)]
    doc = parse_policy(encode(with_rules(*doc_rules)))
    history = History(
        _entry(i, NOW - age, amount, key_id=k, initiator=ini)
        for i, (k, ini, age, amount) in enumerate(past)
    )
    d = evaluate(Policy(doc), request, history, NOW)
    rule_id, skipped = _naive(doc, request, history, NOW)
    assert d.rule_id == rule_id
    assert [r.rule_id for r in d.reasons if r.code is ReasonCode.VELOCITY_EXCEEDED] == skipped
    assert d == evaluate(
        Policy(parse_policy(encode(with_rules(*doc_rules)))), request, history, NOW
    )


def test_history_rejects_conflicting_ids_and_keeps_latest_duplicate() -> None:
    a = _entry(1, NOW - 5)
    with pytest.raises(ValueError):
        History([a, _entry(1, NOW, request_digest=b"\x09" * 32)])
    h = History([a, _entry(1, NOW - 1)])
    assert len(h) == 1 and h.get("old-1") == _entry(1, NOW - 1)
    assert request_digest(req()) != request_digest(req(amount=1001))
