"""One entry point for nodes: payload -> :class:`Interpretation`, and the check that the
request claims exactly what the payload says.

The request an initiator signs names ``request_type, chain, asset, destination,
amount`` *and* carries the payload; policy rules match on the named fields. A node
must therefore (1) derive what it signs from the payload alone, and (2) refuse when
the named fields differ from the decoded ones (``PAYLOAD_MISMATCH``); otherwise a
request could name a whitelisted destination while its transaction pays another.
:func:`interpret_request` does both.
"""

from __future__ import annotations

from policy.payloads import bitcoin, ethereum, messages
from policy.payloads.chains import chain as chain_params
from policy.payloads.errors import PayloadCode, PayloadError
from policy.payloads.interpretation import KEY_SCHEMES, Interpretation, Signing
from policy.request import RequestType, SigningRequest

_TRANSACTION_SIGNING: dict[str, Signing] = {"ethereum": "ecdsa", "bitcoin": "schnorr"}


def _signing_of(key_scheme: str | None) -> Signing:
    if key_scheme not in KEY_SCHEMES:
        raise PayloadError(
            PayloadCode.KEY_SCHEME_MISMATCH, f"unknown key scheme {key_scheme!r}", field="key"
        )
    return KEY_SCHEMES[key_scheme]


def interpret(
    request_type: RequestType | str,
    chain: str,
    asset: str,
    payload: bytes,
    *,
    key_scheme: str | None = None,
    signer_key: bytes | None = None,
) -> Interpretation:
    """Decode ``payload`` for a request of ``request_type`` on ``chain``.

    ``key_scheme`` (``ecdsa-secp256k1``, ``schnorr-bip340``, ``eddsa-ed25519``) is
    required for messages, raw digests and attestations, whose signing input depends
    on it; for transactions it is checked against the chain (Ethereum needs ECDSA,
    Taproot BIP340). ``signer_key`` (the derived, untweaked public key) lets a Taproot
    payload be checked to spend the key's own output. ``asset`` is only used where the
    payload cannot name one (messages); transactions report the decoded asset, and
    :func:`check_claims` compares.
    """
    try:
        kind = RequestType(request_type)
    except ValueError:
        raise PayloadError(
            PayloadCode.PAYLOAD_INVALID, f"unknown request type {request_type!r}", field="type"
        ) from None
    if kind in (RequestType.TRANSFER, RequestType.CONTRACT_CALL):
        params = chain_params(chain)
        needed = _TRANSACTION_SIGNING[params.family]
        if key_scheme is not None and _signing_of(key_scheme) != needed:
            raise PayloadError(
                PayloadCode.KEY_SCHEME_MISMATCH,
                f"{params.family} transactions need a {needed} key, not {key_scheme}",
                field="key",
            )
        if params.family == "ethereum":
            return ethereum.interpret_ethereum(params, payload)
        return bitcoin.interpret_bitcoin(params, payload, signer_key)
    signing = _signing_of(key_scheme)
    if kind is RequestType.MESSAGE:
        digest = messages.message_digest(payload)
    elif kind is RequestType.RAW_DIGEST:
        digest = messages.raw_digest(payload)
    else:
        digest = messages.por_signing_input(payload, signing)
    return Interpretation(
        request_type=kind,
        chain=chain,
        asset=asset,
        destination="",
        amount=0,
        digest=digest,
        signing=signing,
    )


def _mismatch(field: str, claimed: object, decoded: object) -> PayloadError:
    return PayloadError(
        PayloadCode.PAYLOAD_MISMATCH,
        f"request says {claimed!r}, payload says {decoded!r}",
        field=field,
    )


def check_claims(request: SigningRequest, found: Interpretation) -> None:
    """Refuse (``PAYLOAD_MISMATCH``) unless the request's type, chain, asset, destination
    and amount are those decoded. Ethereum destinations compare as addresses (case is
    only a checksum); Bitcoin destinations must be the canonical lowercase address,
    because policy compares them as strings."""
    if request.request_type != found.request_type:
        raise _mismatch("request_type", request.request_type.value, found.request_type.value)
    if request.chain != found.chain:
        raise _mismatch("chain", request.chain, found.chain)
    if request.asset != found.asset:
        raise _mismatch("asset", request.asset, found.asset)
    if request.amount != found.amount:
        raise _mismatch("amount", request.amount, found.amount)
    if found.destination and chain_params(found.chain).family == "ethereum":
        same = ethereum.destinations_equal(request.destination, found.destination)
    else:
        same = request.destination == found.destination
    if not same:
        raise _mismatch("destination", request.destination, found.destination)


def interpret_request(
    request: SigningRequest, *, key_scheme: str, signer_key: bytes | None = None
) -> Interpretation:
    """What a node calls before it evaluates policy: decode, then check the claims."""
    found = interpret(
        request.request_type,
        request.chain,
        request.asset,
        request.payload,
        key_scheme=key_scheme,
        signer_key=signer_key,
    )
    check_claims(request, found)
    return found
