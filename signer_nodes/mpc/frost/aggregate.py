"""FROST aggregation with cheater detection (RFC 9591 sections 5.3 and 5.4).

The aggregator (the untrusted coordinator) sums the shares, checks the
result with the verification equation, and only when that fails verifies
every share (section 5.4) to name the culprits. The result is the same as
verifying every share first, at a fraction of the cost on the honest path;
no signature that does not verify is ever returned.
"""

from __future__ import annotations

from collections.abc import Iterable

from signer_nodes.mpc.errors import (
    InvalidSignatureShareError,
    LocalMisuseError,
    UnexpectedMessageError,
)
from signer_nodes.mpc.frost.ciphersuite import Ciphersuite, KeyView
from signer_nodes.mpc.frost.keys import PublicKeyPackage
from signer_nodes.mpc.frost.polynomial import derive_interpolating_value
from signer_nodes.mpc.frost.round2 import (
    SignatureShare,
    SigningContext,
    SigningPackage,
    signing_context,
)
from signer_nodes.mpc.groups import Element


def verify_signature_share(
    suite: Ciphersuite,
    ctx: SigningContext,
    package: SigningPackage,
    share: SignatureShare,
    verifying_share: Element,
) -> bool:
    """Section 5.4 ``verify_signature_share``:
    z_i * G == (D_i + rho_i * E_i) + PK_i * (c * lambda_i), with the BIP340
    nonce negation applied to the commitment share."""
    g = suite.group
    lam = derive_interpolating_value(package.participants, share.identifier, g.order)
    comm_share = ctx.commitment_shares[share.identifier] * ctx.nonce_sign
    return g.base_mult(share.share) == comm_share + verifying_share * (
        ctx.challenge * lam % g.order
    )


def tweaked_verifying_share(
    suite: Ciphersuite, public: PublicKeyPackage, identifier: int, tweak: bytes | None
) -> Element:
    view = KeyView(0, public.verifying_shares[identifier], public.group_public_key)
    return suite.tweak_key(view, tweak).verifying_share


def aggregate(
    suite: Ciphersuite,
    package: SigningPackage,
    shares: Iterable[SignatureShare],
    public: PublicKeyPackage,
) -> bytes:
    """Section 5.3 ``aggregate``; raises InvalidSignatureShareError naming
    every participant whose share fails section 5.4."""
    by_id: dict[int, SignatureShare] = {}
    for s in shares:
        if s.identifier in by_id:
            raise UnexpectedMessageError(
                "two signature shares from one participant", [s.identifier]
            )
        by_id[s.identifier] = s
    strangers = set(by_id) - set(package.participants)
    if strangers:
        raise UnexpectedMessageError("signature share from a non-participant", strangers)
    missing = set(package.participants) - set(by_id)
    if missing:
        raise LocalMisuseError(f"missing signature shares from {sorted(missing)}")
    if len(package.participants) < public.min_signers:
        raise LocalMisuseError("fewer participants than the threshold")
    unknown = set(package.participants) - set(public.verifying_shares)
    if unknown:
        raise LocalMisuseError(f"participants {sorted(unknown)} are not in the key package")

    g = suite.group
    group_key = suite.tweak_public_key(public.group_public_key, package.tweak)
    ctx = signing_context(suite, group_key, package)
    z = sum(s.share for s in by_id.values()) % g.order
    if g.base_mult(z) == ctx.group_commitment * ctx.nonce_sign + group_key * ctx.challenge:
        return suite.serialize_signature(ctx.group_commitment, z)
    culprits = [
        i
        for i, s in by_id.items()
        if not verify_signature_share(
            suite, ctx, package, s, tweaked_verifying_share(suite, public, i, package.tweak)
        )
    ]
    raise InvalidSignatureShareError("signature share fails verification", culprits)
