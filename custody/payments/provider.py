"""The boundary between payments and signing: :class:`SignatureProvider`.

Payments build the request; the provider turns it into a threshold signature. In the
service it is the custody API client (initiator signature over the request digest,
approvals, policy on every node); in tests it runs the real threshold protocols in
process. The provider must say *how* a signature was not obtained, because the
payment's next step depends on it:

* :class:`SigningRefused`: definitive; no signature for this request id will ever
  exist (policy refusal, rejected approval, a signing request that FAILED). The
  payment releases its reservation.
* :class:`SigningUnavailable`: unknown outcome (coordinator unreachable, deadline
  passed while the request may still complete). The payment stays reserved and is
  resumed with the same request ids, which the service answers idempotently; a
  release here could free funds whose transaction is signed after all.

A provider that can also withdraw a request waiting for approvals implements
:class:`Cancelling`: ``cancel(request)`` returns only once the signing service has
confirmed that no signature for the request will ever be made; then, and only then,
the payment releases its funds (``docs/payments.md``, "Cancelling").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from policy.request import SigningRequest


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key at a derivation path: its scheme and public key (33-byte compressed
    secp256k1 for ``ecdsa-secp256k1``; 32-byte x-only or 33-byte compressed, untweaked,
    for ``schnorr-bip340``)."""

    key_id: str
    scheme: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class SignedResult:
    """A signature over the digest the nodes derived from the request's payload.

    ``signature``: 64 bytes, ``r || s`` (low s) for ECDSA, the BIP340 signature under
    the Taproot-tweaked key for a Taproot input. ``recovery_id``: ECDSA only (0/1)."""

    signature: bytes = field(repr=False)
    recovery_id: int | None = None


class SigningRefused(Exception):
    """Definitive refusal; ``code`` is the stable reason (e.g. ``BLOCKED_BY_RULE``)."""

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        super().__init__(f"{code}: {message}" if message else code)


class SigningUnavailable(Exception):
    """The outcome is unknown; retry later with the same request."""

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        super().__init__(f"{code}: {message}" if message else code)


class CancelRefused(Exception):
    """The signing service did not cancel, and nothing changed there. ``code``:
    ``REQUEST_SIGNED`` (a signature exists), ``REQUEST_APPROVED`` (approved: signing
    may be under way), ``REQUEST_NOT_PENDING`` (no request waits for approvals)."""

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        super().__init__(f"{code}: {message}" if message else code)


class SignatureProvider(Protocol):
    @property
    def initiator(self) -> str:
        """The initiator id requests are signed as (registered in the policy)."""
        ...

    def key(self, key_id: str, path: str) -> KeyInfo:
        """The key ``key_id`` derived along ``path`` (``m`` or ``m/i/j...``)."""
        ...

    def sign(self, request: SigningRequest) -> SignedResult:
        """Sign ``request`` (idempotent on its request id) or raise
        :class:`SigningRefused` / :class:`SigningUnavailable`."""
        ...


@runtime_checkable
class Waiting(Protocol):
    """A provider that waits for signing and approvals, up to ``timeout`` seconds per
    :meth:`SignatureProvider.sign` (then :class:`SigningUnavailable`)."""

    timeout: float


@runtime_checkable
class Cancelling(Protocol):
    """A provider that can cancel a request while it waits for approvals."""

    def cancel(self, request: SigningRequest) -> None:
        """Cancel every attempt of ``request`` (by its request id). Returns once the
        signing service confirmed no signature for it can be made; raises
        :class:`CancelRefused`, :class:`SigningRefused` (it was refused before: no
        signature can exist either) or :class:`SigningUnavailable` (outcome unknown)."""
        ...
