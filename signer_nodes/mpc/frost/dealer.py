"""Trusted-dealer key splitting (RFC 9591 Appendix C), used to import an
existing key into the threshold setting.

The dealer sees the whole key, so this is only for migration of keys that
already exist; new keys come from the DKG in :mod:`signer_nodes.mpc.dkg`.
"""

from __future__ import annotations

from collections.abc import Sequence

from signer_nodes.mpc.errors import LocalMisuseError
from signer_nodes.mpc.frost.ciphersuite import Ciphersuite
from signer_nodes.mpc.frost.keys import KeyPackage, PublicKeyPackage
from signer_nodes.mpc.frost.polynomial import commitment_evaluate, polynomial_evaluate, vss_commit
from signer_nodes.mpc.groups import Element, Group


def secret_share_shard(
    group: Group, secret: int, coefficients: Sequence[int], max_participants: int
) -> dict[int, int]:
    """Appendix C.1 ``secret_share_shard``: shares f(1..n) of f with f(0) = secret."""
    if len(coefficients) + 1 > max_participants:
        raise LocalMisuseError("invalid parameters: threshold above participant count")
    poly = [secret, *coefficients]
    return {i: polynomial_evaluate(i, poly, group.order) for i in range(1, max_participants + 1)}


def vss_verify(group: Group, identifier: int, share: int, commitment: Sequence[Element]) -> bool:
    """Appendix C.2 ``vss_verify``: share * G == sum_k commitment[k] * i^k."""
    return group.base_mult(share) == commitment_evaluate(group, commitment, identifier)


def derive_group_info(
    group: Group, max_participants: int, commitment: Sequence[Element]
) -> tuple[Element, dict[int, Element]]:
    """Appendix C.2 ``derive_group_info``: group key and every verifying share."""
    shares = {i: commitment_evaluate(group, commitment, i) for i in range(1, max_participants + 1)}
    return commitment[0], shares


def trusted_dealer_keygen(
    suite: Ciphersuite,
    secret_key: int,
    max_participants: int,
    min_participants: int,
    *,
    _coefficients: Sequence[int] | None = None,
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    """Appendix C ``trusted_dealer_keygen``, returning ready key packages.

    ``_coefficients`` is the test seam for the RFC vectors' polynomial.
    """
    g = suite.group
    if not 1 <= min_participants <= max_participants < 2**16:
        raise LocalMisuseError("invalid parameters: need 1 <= t <= n")
    if not 0 < secret_key < g.order:
        raise LocalMisuseError("secret key out of range")
    coefficients = (
        list(_coefficients)
        if _coefficients is not None
        else [g.random_scalar() for _ in range(min_participants - 1)]
    )
    if len(coefficients) != min_participants - 1:
        raise LocalMisuseError("need exactly t-1 random coefficients")
    shares = secret_share_shard(g, secret_key, coefficients, max_participants)
    commitment = vss_commit(g, [secret_key, *coefficients])
    group_key, verifying = derive_group_info(g, max_participants, commitment)
    packages = {}
    for i, s in shares.items():
        if not vss_verify(g, i, s, commitment):  # the participant-side check of C.2
            raise AssertionError("dealer produced a share that fails VSS")
        packages[i] = KeyPackage(suite, i, s, verifying[i], group_key, min_participants)
    return packages, PublicKeyPackage(suite, group_key, verifying, min_participants)
