"""Customer ids namespaced by tenant: ``<tenant>/<account>``.

One cluster serves several institutions (tenants), each with its own customers,
and all of them are in one snapshot (one tree, one set of totals). A customer id
in the tree is therefore the tenant name, a slash, and the tenant's own account
id, e.g. ``acme/alice``. Tenant names are ``[A-Za-z0-9_-]{1,64}`` (``custody init``)
and contain no slash, so the split at the first slash is unambiguous and two
tenants' accounts can never share an id.

The ProofService authorises by this prefix alone: a caller whose client
certificate names tenant ``T`` may fetch exactly the proofs of ids beginning with
``T/``. The decision needs no lookup, so a refusal reveals nothing about which
ids exist.
"""

from __future__ import annotations

import re
from collections.abc import Collection

SEPARATOR = "/"
TENANT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def customer_id(tenant: str, account: str) -> str:
    """The tree's id of ``account`` of ``tenant``."""
    if not TENANT_RE.fullmatch(tenant):
        raise ValueError(f"bad tenant name {tenant!r}")
    if not account:
        raise ValueError("empty account id")
    return f"{tenant}{SEPARATOR}{account}"


def tenant_of(cid: str) -> str | None:
    """The tenant of a namespaced customer id, or ``None`` if ``cid`` is not namespaced."""
    tenant, sep, account = cid.partition(SEPARATOR)
    if not sep or not account or not TENANT_RE.fullmatch(tenant):
        return None
    return tenant


def namespace_problem(cid: str, tenants: Collection[str]) -> str | None:
    """Why ``cid`` is not an id of one of ``tenants`` (``None`` if it is)."""
    tenant = tenant_of(cid)
    if tenant is None:
        return f"customer id {cid[:60]!r} is not <tenant>/<account>"
    if tenant not in tenants:
        return f"customer id {cid[:60]!r} names tenant {tenant!r}, which this cluster does not have"
    return None
