"""Polynomial and Lagrange helpers of RFC 9591 section 4.2 and Appendix C.

Scalars are integers modulo the group order; inversion is Python's modular
``pow``. Identifiers are non-zero scalars (this service uses 1..n).
"""

from __future__ import annotations

from collections.abc import Sequence

from signer_nodes.mpc.errors import LocalMisuseError
from signer_nodes.mpc.groups import Element, Group


def polynomial_evaluate(x: int, coefficients: Sequence[int], order: int) -> int:
    """Appendix C.1 ``polynomial_evaluate`` (Horner); ``coefficients[0]`` is the constant."""
    value = 0
    for coeff in reversed(coefficients):
        value = (value * x + coeff) % order
    return value


def derive_interpolating_value(participants: Sequence[int], x_i: int, order: int) -> int:
    """Section 4.2 ``derive_interpolating_value``: the Lagrange coefficient of
    ``x_i`` for interpolation at zero over ``participants``."""
    if x_i not in participants:
        raise LocalMisuseError("invalid parameters: identifier not among participants")
    if len(set(participants)) != len(participants):
        raise LocalMisuseError("invalid parameters: duplicate identifiers")
    numerator, denominator = 1, 1
    for x_j in participants:
        if x_j == x_i:
            continue
        numerator = numerator * x_j % order
        denominator = denominator * (x_j - x_i) % order
    return numerator * pow(denominator, -1, order) % order


def commitment_evaluate(group: Group, commitment: Sequence[Element], x: int) -> Element:
    """sum_k commitment[k] * x^k: the public image of a VSS polynomial at ``x``
    (Appendix C.2 ``vss_verify``, and Komlo-Goldberg Figure 1 round 2 step 2)."""
    acc = group.identity
    power = 1
    for c in commitment:
        acc = acc + c * power
        power = power * x % group.order
    return acc


def vss_commit(group: Group, coefficients: Sequence[int]) -> tuple[Element, ...]:
    """Appendix C.2 ``vss_commit``: the coefficients times the generator."""
    return tuple(group.base_mult(a) for a in coefficients)
