"""Structured payloads: what a signer node signs, derived from what it is asked to sign.

Pure (no database, no network): signer nodes import it. ``interpret`` turns a
request's payload into an :class:`Interpretation` (the digest to sign, the signature
algorithm, and the destination / amount / asset the policy must see);
``interpret_request`` also refuses a request whose named fields differ from the
payload's (``PAYLOAD_MISMATCH``). Chains: Ethereum EIP-1559 (:mod:`.ethereum`),
Bitcoin Taproot key-path spends (:mod:`.bitcoin`); plus messages, raw digests and
Proof-of-Reserves attestations (:mod:`.messages`). Format: ``docs/payments.md``.
"""

from policy.payloads.chains import CHAINS, Chain, chain
from policy.payloads.errors import PayloadCode, PayloadError
from policy.payloads.interpret import check_claims, interpret, interpret_request
from policy.payloads.interpretation import KEY_SCHEMES, Interpretation, Signing

__all__ = [
    "CHAINS",
    "KEY_SCHEMES",
    "Chain",
    "Interpretation",
    "PayloadCode",
    "PayloadError",
    "Signing",
    "chain",
    "check_claims",
    "interpret",
    "interpret_request",
]
