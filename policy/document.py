"""Policy documents: the strict JSON format ``custody-policy/v1`` parsed into frozen values.

The parser is the runtime authority (nodes do not need ``jsonschema``); the JSON Schema in
``docs/policy.schema.json`` describes the same format for authors and tooling, and the
tests check that both accept and reject the same documents. Strictness is a security
property: an unknown or misspelt field (``"ammount"``) must not silently widen a rule, so
every object rejects unknown keys, duplicate keys, floats and cross-references to ids that
do not exist, and every error carries the JSON pointer of the bad field
(``/rules/3/match/amount/max: ...``). The format is described in ``docs/policy-format.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

from policy.errors import DocumentError
from policy.request import RequestType, normalize_address, valid_identifier

FORMAT = "custody-policy/v1"
MAX_DOCUMENT_BYTES = 1 << 20
MAX_RULES = 10_000
MAX_APPROVAL_DEPTH = 4
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,77}")
_HEX32 = re.compile(r"[0-9a-f]{64}")

T = TypeVar("T")


class VelocityScope(StrEnum):
    """Which requests share one velocity budget with the request being evaluated."""

    KEY = "key"
    INITIATOR = "initiator"
    TENANT = "tenant"


class ActionKind(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    REQUIRE_APPROVAL = "require_approval"


@dataclass(frozen=True, slots=True)
class OfficerSet:
    """Security officers (id -> Ed25519 public key) and how many must sign a policy change."""

    quorum: int
    members: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class Initiator:
    id: str
    tenant: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class ApproverGroup:
    id: str
    members: tuple[str, ...]
    quorum: int


@dataclass(frozen=True, slots=True)
class Whitelist:
    id: str
    chain: str
    addresses: frozenset[str]


@dataclass(frozen=True, slots=True)
class AmountRange:
    """Inclusive bounds in integer minor units of the rule's single asset."""

    min: int | None
    max: int | None


@dataclass(frozen=True, slots=True)
class VelocityLimit:
    """The rule applies only while, counting this request, the requests in the same
    ``scope`` during the last ``window_seconds`` stay within ``max_amount``/``max_count``."""

    scope: VelocityScope
    window_seconds: int
    max_amount: int | None
    max_count: int | None


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Minutes of the day ``[start, end)`` at a fixed UTC offset; wraps midnight when
    ``start > end``. ``days`` (0 = Monday) restricts the day on which the window starts."""

    start_minute: int
    end_minute: int
    utc_offset_minutes: int
    days: frozenset[int] | None


@dataclass(frozen=True, slots=True)
class GroupRequirement:
    group: str
    quorum: int


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[ApprovalExpr, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[ApprovalExpr, ...]


ApprovalExpr = GroupRequirement | AllOf | AnyOf


def describe_requirement(expr: ApprovalExpr) -> str:
    """A stable, human-readable form: ``all_of(treasury>=2, any_of(risk>=1, cfo>=1))``."""
    if isinstance(expr, GroupRequirement):
        return f"{expr.group}>={expr.quorum}"
    name = "all_of" if isinstance(expr, AllOf) else "any_of"
    return f"{name}({', '.join(describe_requirement(i) for i in expr.items)})"


@dataclass(frozen=True, slots=True)
class Match:
    """Conditions of a rule; ``None`` means "any". All present conditions must hold."""

    tenants: frozenset[str] | None = None
    initiators: frozenset[str] | None = None
    keys: frozenset[str] | None = None
    key_groups: frozenset[str] | None = None
    assets: frozenset[str] | None = None
    chains: frozenset[str] | None = None
    request_types: frozenset[RequestType] | None = None
    destination_addresses: frozenset[str] | None = None
    destination_whitelists: frozenset[str] | None = None
    amount: AmountRange | None = None
    velocity: VelocityLimit | None = None
    time_of_day: TimeWindow | None = None


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    approvals: ApprovalExpr | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    match: Match
    action: Action


@dataclass(frozen=True, slots=True)
class Limits:
    """Request freshness: a request older than ``request_max_age_seconds`` or dated more
    than ``clock_skew_seconds`` in the future is refused (bounds replay by a coordinator
    that kept an old signed request)."""

    request_max_age_seconds: int = 86_400
    clock_skew_seconds: int = 300


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    format: str
    name: str
    description: str
    officers: OfficerSet
    initiators: Mapping[str, Initiator]
    approvers: Mapping[str, bytes]
    approver_groups: Mapping[str, ApproverGroup]
    key_groups: Mapping[str, frozenset[str]]
    whitelists: Mapping[str, Whitelist]
    limits: Limits
    rules: tuple[Rule, ...]

    @property
    def max_velocity_window(self) -> int:
        """The longest velocity window of any rule: how much history a node must keep and
        report to its signing peers (0 when no rule has a velocity condition)."""
        return max(
            (r.match.velocity.window_seconds for r in self.rules if r.match.velocity), default=0
        )


# --------------------------------------------------------------------------- parsing


class _Obj(dict[str, Any]):
    """A JSON object remembering keys that occurred more than once."""

    __slots__ = ("dups",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.dups: list[str] = []
        for k, v in pairs:
            if k in self:
                self.dups.append(k)
            self[k] = v


class _NonInteger:
    """Placeholder for a float or NaN/Infinity literal, rejected with its path."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _ptr(path: str, key: str | int) -> str:
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _obj(value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> _Obj:
    if not isinstance(value, _Obj):
        raise DocumentError(path, "expected an object")
    if value.dups:
        raise DocumentError(_ptr(path, value.dups[0]), "duplicate key")
    allowed = set(required) | set(optional)
    for key in value:
        if key not in allowed:
            raise DocumentError(_ptr(path, key), "unknown field")
    for key in required:
        if key not in value:
            raise DocumentError(_ptr(path, key), "missing required field")
    return value


def _str(value: Any, path: str, max_len: int = 1024) -> str:
    if not isinstance(value, str):
        raise DocumentError(path, "expected a string")
    if len(value) > max_len:
        raise DocumentError(path, f"longer than {max_len} characters")
    return value


def _ident(value: Any, path: str) -> str:
    s = _str(value, path)
    if not valid_identifier(s):
        raise DocumentError(path, "not a valid identifier ([A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127})")
    return s


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, _NonInteger):
        raise DocumentError(path, f"expected an integer, got {value.text}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise DocumentError(path, "expected an integer")
    if not lo <= value <= hi:
        raise DocumentError(path, f"must be in [{lo}, {hi}]")
    return value


def _amount(value: Any, path: str) -> int:
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise DocumentError(path, 'expected a decimal string of minor units (e.g. "1500")')
    n = int(value)
    if n >= 1 << 256:
        raise DocumentError(path, "must be below 2^256")
    return n


def _pubkey(value: Any, path: str) -> bytes:
    s = _str(value, path)
    if not _HEX32.fullmatch(s):
        raise DocumentError(path, "expected 64 lower-case hex characters (Ed25519 public key)")
    return bytes.fromhex(s)


def _list(value: Any, path: str, item: Callable[[Any, str], T], max_items: int = 10_000) -> list[T]:
    if not isinstance(value, list):
        raise DocumentError(path, "expected an array")
    if not value:
        raise DocumentError(path, "must not be empty")
    if len(value) > max_items:
        raise DocumentError(path, f"more than {max_items} items")
    out = [item(v, _ptr(path, i)) for i, v in enumerate(value)]
    seen: set[Any] = set()
    for i, v in enumerate(out):
        if v in seen:
            raise DocumentError(_ptr(path, i), "duplicate item")
        seen.add(v)
    return out


def _map(value: Any, path: str, item: Callable[[str, Any, str], T]) -> dict[str, T]:
    if not isinstance(value, _Obj):
        raise DocumentError(path, "expected an object")
    if value.dups:
        raise DocumentError(_ptr(path, value.dups[0]), "duplicate key")
    out: dict[str, T] = {}
    for key, v in value.items():
        p = _ptr(path, key)
        if not valid_identifier(key):
            raise DocumentError(p, "key is not a valid identifier")
        out[key] = item(key, v, p)
    return out


def _frozen(d: dict[str, T]) -> Mapping[str, T]:
    return MappingProxyType(dict(sorted(d.items())))


def _officers(value: Any, path: str) -> OfficerSet:
    o = _obj(value, path, ("quorum", "members"))
    members = _map(
        o["members"],
        _ptr(path, "members"),
        lambda _k, v, p: _pubkey(_obj(v, p, ("public_key",))["public_key"], _ptr(p, "public_key")),
    )
    if not members:
        raise DocumentError(_ptr(path, "members"), "at least one officer")
    quorum = _int(o["quorum"], _ptr(path, "quorum"), 1, len(members))
    return OfficerSet(quorum=quorum, members=_frozen(members))


def _initiator(key: str, value: Any, path: str) -> Initiator:
    o = _obj(value, path, ("tenant", "public_key"))
    return Initiator(
        id=key,
        tenant=_ident(o["tenant"], _ptr(path, "tenant")),
        public_key=_pubkey(o["public_key"], _ptr(path, "public_key")),
    )


def _time_window(value: Any, path: str) -> TimeWindow:
    o = _obj(value, path, ("start", "end"), ("utc_offset_minutes", "days"))

    def minute(v: Any, p: str) -> int:
        s = _str(v, p)
        if not _HHMM.fullmatch(s):
            raise DocumentError(p, "expected HH:MM (00:00 to 24:00)")
        return int(s[:2]) * 60 + int(s[3:])

    start = minute(o["start"], _ptr(path, "start"))
    end = minute(o["end"], _ptr(path, "end"))
    if start == 1440:
        raise DocumentError(_ptr(path, "start"), "24:00 is only valid as an end")
    if start == end % 1440 and end != 1440:
        raise DocumentError(_ptr(path, "end"), "empty window (start == end)")
    offset = _int(o.get("utc_offset_minutes", 0), _ptr(path, "utc_offset_minutes"), -1440, 1440)
    days = None
    if "days" in o:

        def day(v: Any, p: str) -> int:
            if v not in DAYS:
                raise DocumentError(p, f"expected one of {', '.join(DAYS)}")
            return DAYS.index(v)

        days = frozenset(_list(o["days"], _ptr(path, "days"), day, 7))
    return TimeWindow(start, end, offset, days)


_MATCH_LISTS = ("tenants", "initiators", "keys", "key_groups", "assets", "chains")


def _match(value: Any, path: str, doc: dict[str, Any]) -> Match:
    o = _obj(
        value,
        path,
        (),
        (*_MATCH_LISTS, "request_types", "destination", "amount", "velocity", "time_of_day"),
    )
    sets: dict[str, frozenset[str] | None] = {}
    for name in _MATCH_LISTS:
        sets[name] = frozenset(_list(o[name], _ptr(path, name), _ident)) if name in o else None
    refs = (
        ("initiators", doc["initiators"], "initiator"),
        ("key_groups", doc["key_groups"], "key group"),
        ("tenants", {i.tenant for i in doc["initiators"].values()}, "tenant of any initiator"),
    )
    for name, known, what in refs:
        for i, v in enumerate(o.get(name, ())):
            if v not in known:
                raise DocumentError(_ptr(_ptr(path, name), i), f"not a known {what}")
    request_types = None
    if "request_types" in o:

        def rtype(v: Any, p: str) -> RequestType:
            try:
                return RequestType(_str(v, p))
            except ValueError:
                names = ", ".join(t.value for t in RequestType)
                raise DocumentError(p, f"expected one of {names}") from None

        request_types = frozenset(_list(o["request_types"], _ptr(path, "request_types"), rtype))
    addresses = whitelists = None
    if "destination" in o:
        dp = _ptr(path, "destination")
        d = _obj(o["destination"], dp, (), ("addresses", "whitelists"))
        if not d:
            raise DocumentError(dp, "give addresses, whitelists or both")
        if "addresses" in d:
            addresses = frozenset(
                normalize_address(a) for a in _list(d["addresses"], _ptr(dp, "addresses"), _address)
            )
        if "whitelists" in d:
            wp = _ptr(dp, "whitelists")
            whitelists = frozenset(_list(d["whitelists"], wp, _ident))
            for i, w in enumerate(d["whitelists"]):
                if w not in doc["whitelists"]:
                    raise DocumentError(_ptr(wp, i), "not a known whitelist")
    single_asset_needed: str | None = None
    amount = None
    if "amount" in o:
        ap = _ptr(path, "amount")
        a = _obj(o["amount"], ap, (), ("min", "max"))
        if not a:
            raise DocumentError(ap, "give min, max or both")
        lo = _amount(a["min"], _ptr(ap, "min")) if "min" in a else None
        hi = _amount(a["max"], _ptr(ap, "max")) if "max" in a else None
        if lo is not None and hi is not None and lo > hi:
            raise DocumentError(_ptr(ap, "max"), "max is below min")
        amount = AmountRange(lo, hi)
        single_asset_needed = ap
    velocity = None
    if "velocity" in o:
        vp = _ptr(path, "velocity")
        v = _obj(o["velocity"], vp, ("scope", "window_seconds"), ("max_amount", "max_count"))
        try:
            scope = VelocityScope(_str(v["scope"], _ptr(vp, "scope")))
        except ValueError:
            raise DocumentError(_ptr(vp, "scope"), "expected key, initiator or tenant") from None
        window = _int(v["window_seconds"], _ptr(vp, "window_seconds"), 1, 366 * 86_400)
        max_amount = _amount(v["max_amount"], _ptr(vp, "max_amount")) if "max_amount" in v else None
        max_count = (
            _int(v["max_count"], _ptr(vp, "max_count"), 1, 1 << 32) if "max_count" in v else None
        )
        if max_amount is None and max_count is None:
            raise DocumentError(vp, "give max_amount, max_count or both")
        velocity = VelocityLimit(scope, window, max_amount, max_count)
        if max_amount is not None and single_asset_needed is None:
            single_asset_needed = _ptr(vp, "max_amount")
    if single_asset_needed is not None and (sets["assets"] is None or len(sets["assets"]) != 1):
        raise DocumentError(
            single_asset_needed,
            "amounts are minor units of one asset: the rule must match exactly one asset "
            "(match.assets with one item)",
        )
    tod = _time_window(o["time_of_day"], _ptr(path, "time_of_day")) if "time_of_day" in o else None
    return Match(
        tenants=sets["tenants"],
        initiators=sets["initiators"],
        keys=sets["keys"],
        key_groups=sets["key_groups"],
        assets=sets["assets"],
        chains=sets["chains"],
        request_types=request_types,
        destination_addresses=addresses,
        destination_whitelists=whitelists,
        amount=amount,
        velocity=velocity,
        time_of_day=tod,
    )


def _address(value: Any, path: str) -> str:
    s = _str(value, path, 256)
    if not s or any(c.isspace() for c in s):
        raise DocumentError(path, "expected a non-empty address without whitespace")
    return normalize_address(s)


def _approval_expr(
    value: Any, path: str, groups: Mapping[str, ApproverGroup], depth: int
) -> ApprovalExpr:
    if depth > MAX_APPROVAL_DEPTH:
        raise DocumentError(path, f"nested deeper than {MAX_APPROVAL_DEPTH}")
    if not isinstance(value, _Obj):
        raise DocumentError(path, "expected an object")
    if "group" in value:
        o = _obj(value, path, ("group",), ("quorum",))
        gid = _ident(o["group"], _ptr(path, "group"))
        if gid not in groups:
            raise DocumentError(_ptr(path, "group"), "not a known approver group")
        group = groups[gid]
        q = group.quorum
        if "quorum" in o:
            q = _int(o["quorum"], _ptr(path, "quorum"), group.quorum, len(group.members))
        return GroupRequirement(gid, q)
    for name, ctor in (("all_of", AllOf), ("any_of", AnyOf)):
        if name in value:
            o = _obj(value, path, (name,))
            lp_ = _ptr(path, name)
            raw = o[name]
            if not isinstance(raw, list) or not raw:
                raise DocumentError(lp_, "expected a non-empty array")
            if len(raw) > 32:
                raise DocumentError(lp_, "more than 32 items")
            items = tuple(
                _approval_expr(v, _ptr(lp_, i), groups, depth + 1) for i, v in enumerate(raw)
            )
            return ctor(items)
    raise DocumentError(path, "expected one of group, all_of, any_of")


def _action(value: Any, path: str, groups: Mapping[str, ApproverGroup]) -> Action:
    if value in ("allow", "block"):
        return Action(ActionKind(value))
    if isinstance(value, _Obj):
        o = _obj(value, path, ("require_approval",))
        expr = _approval_expr(o["require_approval"], _ptr(path, "require_approval"), groups, 1)
        return Action(ActionKind.REQUIRE_APPROVAL, expr)
    raise DocumentError(path, 'expected "allow", "block" or {"require_approval": ...}')


def _decode(data: bytes) -> Any:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError("", f"document larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DocumentError("", f"not UTF-8 (byte {e.start})") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_Obj,
            parse_float=_NonInteger,
            parse_constant=_NonInteger,
        )
    except json.JSONDecodeError as e:
        raise DocumentError("", f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise DocumentError("", "nested too deeply") from None


def parse_policy(data: bytes) -> PolicyDocument:
    """Parse and validate a policy document; raise :class:`DocumentError` naming the field.

    The bytes are what officers hash and sign (:mod:`policy.governance`); this function is
    deterministic, so every node derives the same :class:`PolicyDocument` from them.
    """
    root = _obj(
        _decode(data),
        "",
        ("format", "name", "officers", "initiators", "rules"),
        ("description", "approvers", "approver_groups", "key_groups", "whitelists", "limits"),
    )
    if root["format"] != FORMAT:
        raise DocumentError("/format", f'expected "{FORMAT}"')
    name = _ident(root["name"], "/name")
    description = _str(root.get("description", ""), "/description", 4096)
    officers = _officers(root["officers"], "/officers")
    initiators = _map(root["initiators"], "/initiators", _initiator)
    approvers = _map(
        root.get("approvers", _Obj([])),
        "/approvers",
        lambda _k, v, p: _pubkey(_obj(v, p, ("public_key",))["public_key"], _ptr(p, "public_key")),
    )

    def group(key: str, value: Any, path: str) -> ApproverGroup:
        o = _obj(value, path, ("members", "quorum"))
        members = _list(o["members"], _ptr(path, "members"), _ident, 1000)
        for i, m in enumerate(members):
            if m not in approvers:
                raise DocumentError(_ptr(_ptr(path, "members"), i), "not a known approver")
        quorum = _int(o["quorum"], _ptr(path, "quorum"), 1, len(members))
        return ApproverGroup(key, tuple(sorted(members)), quorum)

    groups = _map(root.get("approver_groups", _Obj([])), "/approver_groups", group)
    key_groups = _map(
        root.get("key_groups", _Obj([])),
        "/key_groups",
        lambda _k, v, p: frozenset(_list(v, p, _ident, 100_000)),
    )

    def whitelist(key: str, value: Any, path: str) -> Whitelist:
        o = _obj(value, path, ("chain", "addresses"))
        return Whitelist(
            key,
            _ident(o["chain"], _ptr(path, "chain")),
            frozenset(_list(o["addresses"], _ptr(path, "addresses"), _address, 100_000)),
        )

    whitelists = _map(root.get("whitelists", _Obj([])), "/whitelists", whitelist)
    limits = Limits()
    if "limits" in root:
        lo = _obj(root["limits"], "/limits", (), ("request_max_age_seconds", "clock_skew_seconds"))
        limits = Limits(
            _int(
                lo.get("request_max_age_seconds", limits.request_max_age_seconds),
                "/limits/request_max_age_seconds",
                1,
                366 * 86_400,
            ),
            _int(
                lo.get("clock_skew_seconds", limits.clock_skew_seconds),
                "/limits/clock_skew_seconds",
                0,
                86_400,
            ),
        )
    refs = {"initiators": initiators, "key_groups": key_groups, "whitelists": whitelists}
    raw_rules = root["rules"]
    if not isinstance(raw_rules, list):
        raise DocumentError("/rules", "expected an array")
    if len(raw_rules) > MAX_RULES:
        raise DocumentError("/rules", f"more than {MAX_RULES} rules")
    rules: list[Rule] = []
    rule_ids: set[str] = set()
    for i, raw in enumerate(raw_rules):
        p = _ptr("/rules", i)
        r = _obj(raw, p, ("id", "match", "action"), ("description",))
        rid = _ident(r["id"], _ptr(p, "id"))
        if rid in rule_ids:
            raise DocumentError(_ptr(p, "id"), "duplicate rule id")
        rule_ids.add(rid)
        rules.append(
            Rule(
                id=rid,
                description=_str(r.get("description", ""), _ptr(p, "description"), 4096),
                match=_match(r["match"], _ptr(p, "match"), refs),
                action=_action(r["action"], _ptr(p, "action"), groups),
            )
        )
    return PolicyDocument(
        format=FORMAT,
        name=name,
        description=description,
        officers=officers,
        initiators=_frozen(initiators),
        approvers=_frozen(approvers),
        approver_groups=_frozen(groups),
        key_groups=_frozen(key_groups),
        whitelists=_frozen(whitelists),
        limits=limits,
        rules=tuple(rules),
    )
