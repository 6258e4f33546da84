"""FROST round two: the signing package and signature shares (RFC 9591
sections 4.3-4.6 and 5.2).

The same binding-factor and group-commitment code serves the signers here and
the aggregator in :mod:`signer_nodes.mpc.frost.aggregate`, so both sides
compute exactly the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EncodingError, LocalMisuseError
from signer_nodes.mpc.frost.ciphersuite import Ciphersuite, KeyView
from signer_nodes.mpc.frost.keys import KeyPackage
from signer_nodes.mpc.frost.polynomial import derive_interpolating_value
from signer_nodes.mpc.frost.round1 import SigningCommitments, SigningNonces
from signer_nodes.mpc.groups import Element

MAX_MESSAGE = 1 << 20


@dataclass(frozen=True, slots=True)
class SigningPackage:
    """What the coordinator sends every signer: the message, the commitment
    list (sorted by identifier, section 5.2) and an optional key tweak
    (BIP341 Taproot merkle root for the BIP340 suite)."""

    commitments: tuple[SigningCommitments, ...]
    message: bytes
    tweak: bytes | None = field(default=None)

    def __post_init__(self) -> None:
        ids = [c.identifier for c in self.commitments]
        if not ids:
            raise ValueError("empty commitment list")
        if any(i <= 0 for i in ids) or ids != sorted(set(ids)):
            raise ValueError("commitment list must be sorted by unique, non-zero identifier")
        if len(self.message) > MAX_MESSAGE:
            raise ValueError("message too long")

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(c.identifier for c in self.commitments)

    def commitment_of(self, identifier: int) -> SigningCommitments:
        for c in self.commitments:
            if c.identifier == identifier:
                return c
        raise LocalMisuseError(f"participant {identifier} is not in the signing package")

    def encode(self, suite: Ciphersuite) -> bytes:
        w = Writer().fixed(b"FSP").u8(1).var(self.message)
        w.u8(0 if self.tweak is None else 1).var(self.tweak or b"")
        w.u16(len(self.commitments))
        for c in self.commitments:
            w.var(c.encode(suite))
        return bytes(w)

    @classmethod
    def decode(cls, suite: Ciphersuite, data: bytes) -> SigningPackage:
        r = Reader(data)
        if r.fixed(3) != b"FSP" or r.u8() != 1:
            raise EncodingError("not a version-1 signing package")
        message = r.var(MAX_MESSAGE)
        has_tweak = r.u8()
        tweak_bytes = r.var(64)
        if has_tweak not in (0, 1):
            raise EncodingError("bad tweak flag")
        count = r.u16()
        commitments = tuple(SigningCommitments.decode(suite, r.var(256)) for _ in range(count))
        r.finish()
        try:
            return cls(commitments, message, tweak_bytes if has_tweak else None)
        except ValueError as exc:
            raise EncodingError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class SignatureShare:
    identifier: int
    share: int

    def encode(self, suite: Ciphersuite) -> bytes:
        return bytes(Writer().u16(self.identifier).fixed(suite.group.serialize_scalar(self.share)))

    @classmethod
    def decode(cls, suite: Ciphersuite, data: bytes) -> SignatureShare:
        r = Reader(data)
        identifier = r.u16()
        share = suite.group.deserialize_scalar(r.fixed(suite.group.scalar_len))
        r.finish()
        return cls(identifier, share)


def encode_group_commitment_list(suite: Ciphersuite, package: SigningPackage) -> bytes:
    """Section 4.3 ``encode_group_commitment_list``."""
    g = suite.group
    return b"".join(
        g.serialize_scalar(c.identifier)
        + g.serialize_element(c.hiding)
        + g.serialize_element(c.binding)
        for c in package.commitments
    )


def compute_binding_factors(
    suite: Ciphersuite, group_public_key: Element, package: SigningPackage
) -> dict[int, int]:
    """Section 4.4 ``compute_binding_factors``: rho_i for every participant."""
    g = suite.group
    prefix = (
        g.serialize_element(group_public_key)
        + suite.h4(package.message)
        + suite.h5(encode_group_commitment_list(suite, package))
    )
    return {
        c.identifier: suite.h1(prefix + g.serialize_scalar(c.identifier))
        for c in package.commitments
    }


def commitment_shares(
    package: SigningPackage, binding_factors: dict[int, int]
) -> dict[int, Element]:
    """D_i + rho_i * E_i for each participant: the summands of section 4.5."""
    return {
        c.identifier: c.hiding + c.binding * binding_factors[c.identifier]
        for c in package.commitments
    }


def compute_group_commitment(suite: Ciphersuite, shares: dict[int, Element]) -> Element:
    """Section 4.5 ``compute_group_commitment`` from the per-participant summands."""
    acc = suite.group.identity
    for element in shares.values():
        acc = acc + element
    return acc


@dataclass(frozen=True, slots=True)
class SigningContext:
    """Everything derived from a signing package that signers and the
    aggregator must agree on."""

    group_public_key: Element
    binding_factors: dict[int, int]
    commitment_shares: dict[int, Element]
    group_commitment: Element
    challenge: int
    nonce_sign: int


def signing_context(
    suite: Ciphersuite, group_public_key: Element, package: SigningPackage
) -> SigningContext:
    rhos = compute_binding_factors(suite, group_public_key, package)
    shares = commitment_shares(package, rhos)
    r = compute_group_commitment(suite, shares)
    if r.is_identity:
        # SerializeElement(R) would fail in compute_challenge (section 4.6).
        raise LocalMisuseError("group commitment is the identity")
    return SigningContext(
        group_public_key,
        rhos,
        shares,
        r,
        suite.challenge(r, group_public_key, package.message),
        suite.nonce_sign(r),
    )


def sign(
    suite: Ciphersuite,
    package: SigningPackage,
    nonces: SigningNonces,
    key_package: KeyPackage,
    *,
    min_signers: int | None = None,
) -> SignatureShare:
    """Section 5.2 ``sign``: z_i = d_i + e_i * rho_i + lambda_i * s_i * c.

    Before touching the nonces it checks what the RFC requires of the
    coordinator's input: the signer's own commitment is in the list and equal
    to the one it made, and there are at least ``min_signers`` participants.
    The nonces are consumed even if a later step fails, so they can never be
    used with a second package.
    """
    own = package.commitment_of(key_package.identifier)
    if own != nonces.commitments:
        raise LocalMisuseError("the signing package carries other commitments for this signer")
    needed = key_package.min_signers if min_signers is None else min_signers
    if len(package.commitments) < needed:
        raise LocalMisuseError("fewer participants than the threshold")
    hiding, binding = nonces.consume()
    key: KeyView = suite.tweak_key(key_package.view(), package.tweak)
    ctx = signing_context(suite, key.group_public_key, package)
    order = suite.group.order
    lam = derive_interpolating_value(package.participants, key_package.identifier, order)
    rho = ctx.binding_factors[key_package.identifier]
    z = (
        ctx.nonce_sign * (hiding + binding * rho) + lam * key.signing_share * ctx.challenge
    ) % order
    return SignatureShare(key_package.identifier, z)
