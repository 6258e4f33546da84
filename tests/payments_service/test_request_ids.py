"""API request ids of payment signing requests (no cluster needed)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from custody.payments.grpc_provider import service_request_id
from policy.request import valid_identifier

API_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CHARS = "abcXYZ019._:@/+-"
IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}", fullmatch=True) | st.builds(
    "p".__add__, st.text(alphabet=_CHARS, min_size=20, max_size=127)
)


def test_plain_ids_are_kept_and_retries_are_suffixed() -> None:
    assert service_request_id("acme", "payment:p-1:0") == "payment:p-1:0"
    assert service_request_id("acme", "payment:p-1:0", 2) == "payment:p-1:0.retry2"


def test_ids_outside_the_api_alphabet_or_too_long_are_hashed() -> None:
    for rid in ("payment:a/b:0", "payment:a@b:0", "payment:" + "x" * 120 + ":0", "x.retry1"):
        out = service_request_id("acme", rid)
        assert re.fullmatch(r"h-[0-9a-f]{32}", out), out
        assert out != service_request_id("acme", rid, 1)
    # a long tenant name leaves less room: fewer hex digits, still a valid request id
    long_tenant = "t" * 100
    out = service_request_id(long_tenant, "payment:" + "x" * 30 + ":0")
    assert re.fullmatch(r"h-[0-9a-f]{25}", out) and valid_identifier(f"{long_tenant}:{out}")


@given(tenant=st.sampled_from(["acme", "t" * 100]), a=IDS, b=IDS, i=st.integers(0, 20))
def test_ids_are_valid_and_one_to_one(tenant: str, a: str, b: str, i: int) -> None:
    out = service_request_id(tenant, a, i)
    assert API_ID.fullmatch(out) and valid_identifier(f"{tenant}:{out}")
    assert len(tenant) + 1 + len(out) <= 128
    if (a, i) != (b, 0):
        assert out != service_request_id(tenant, b, 0)
    if a != b:
        assert out != service_request_id(tenant, b, i)
