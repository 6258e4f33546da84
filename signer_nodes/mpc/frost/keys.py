"""Key material of a FROST participant and the group's public key package.

``KeyPackage`` is what one signer node keeps (secret share, its own
verifying share, the group key); ``PublicKeyPackage`` is what any coordinator
or verifier may know (every verifying share and the group key). Both have a
versioned binary format: a magic, a version byte, the suite id, then the
fields. ``KeyPackage`` redacts its secret from ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EncodingError
from signer_nodes.mpc.frost.ciphersuite import Ciphersuite, KeyView
from signer_nodes.mpc.groups import Element

_KEY_MAGIC = b"FKP"
_PUB_MAGIC = b"FPK"
FORMAT_VERSION = 1


def suite_by_id(suite_id: str) -> Ciphersuite:
    from signer_nodes.mpc.frost.suites import SUITES

    try:
        return SUITES[suite_id]
    except KeyError:
        raise EncodingError(f"unknown ciphersuite id {suite_id!r}") from None


def suite_id(suite: Ciphersuite) -> str:
    from signer_nodes.mpc.frost.suites import SUITES

    for key, value in SUITES.items():
        if value is suite:
            return key
    raise EncodingError(f"unregistered ciphersuite {suite.name}")


@dataclass(frozen=True, slots=True, repr=False)
class KeyPackage:
    """One participant's long-lived FROST key share."""

    suite: Ciphersuite
    identifier: int
    signing_share: int
    verifying_share: Element
    group_public_key: Element
    min_signers: int
    chain_code: bytes = field(default=b"")

    def __post_init__(self) -> None:
        g = self.suite.group
        if not 0 < self.identifier < 2**16:
            raise ValueError("identifier out of range")
        if not 0 < self.signing_share < g.order:
            raise ValueError("signing share out of range")
        if g.base_mult(self.signing_share) != self.verifying_share:
            raise ValueError("verifying share does not match the signing share")

    def view(self) -> KeyView:
        return KeyView(self.signing_share, self.verifying_share, self.group_public_key)

    def __repr__(self) -> str:
        return (
            f"KeyPackage(suite={suite_id(self.suite)}, identifier={self.identifier}, "
            f"group_public_key={self.group_public_key!r}, signing_share=<redacted>)"
        )

    def to_bytes(self) -> bytes:
        g = self.suite.group
        return bytes(
            Writer()
            .fixed(_KEY_MAGIC)
            .u8(FORMAT_VERSION)
            .var(suite_id(self.suite).encode())
            .u16(self.identifier)
            .u16(self.min_signers)
            .fixed(g.serialize_scalar(self.signing_share))
            .fixed(g.serialize_element(self.verifying_share))
            .fixed(g.serialize_element(self.group_public_key))
            .var(self.chain_code)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyPackage:
        r = Reader(data)
        if r.fixed(3) != _KEY_MAGIC:
            raise EncodingError("not a FROST key package")
        if (version := r.u8()) != FORMAT_VERSION:
            raise EncodingError(f"unsupported key package version {version}")
        suite = suite_by_id(r.var(64).decode())
        g = suite.group
        identifier, min_signers = r.u16(), r.u16()
        share = g.deserialize_scalar(r.fixed(g.scalar_len))
        verifying = g.deserialize_element(r.fixed(g.element_len))
        group_key = g.deserialize_element(r.fixed(g.element_len))
        chain_code = r.var(64)
        r.finish()
        try:
            return cls(suite, identifier, share, verifying, group_key, min_signers, chain_code)
        except ValueError as exc:
            raise EncodingError(f"inconsistent key package: {exc}") from exc


@dataclass(frozen=True, slots=True)
class PublicKeyPackage:
    """The group's public key and every participant's verifying share."""

    suite: Ciphersuite
    group_public_key: Element
    verifying_shares: dict[int, Element]
    min_signers: int
    chain_code: bytes = field(default=b"")

    def to_bytes(self) -> bytes:
        g = self.suite.group
        w = (
            Writer()
            .fixed(_PUB_MAGIC)
            .u8(FORMAT_VERSION)
            .var(suite_id(self.suite).encode())
            .u16(self.min_signers)
            .fixed(g.serialize_element(self.group_public_key))
            .var(self.chain_code)
            .u16(len(self.verifying_shares))
        )
        for identifier in sorted(self.verifying_shares):
            w.u16(identifier).fixed(g.serialize_element(self.verifying_shares[identifier]))
        return bytes(w)

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKeyPackage:
        r = Reader(data)
        if r.fixed(3) != _PUB_MAGIC:
            raise EncodingError("not a FROST public key package")
        if (version := r.u8()) != FORMAT_VERSION:
            raise EncodingError(f"unsupported public key package version {version}")
        suite = suite_by_id(r.var(64).decode())
        g = suite.group
        min_signers = r.u16()
        group_key = g.deserialize_element(r.fixed(g.element_len))
        chain_code = r.var(64)
        shares: dict[int, Element] = {}
        for _ in range(r.u16()):
            identifier = r.u16()
            if identifier in shares or identifier == 0:
                raise EncodingError("duplicate or zero identifier")
            shares[identifier] = g.deserialize_element(r.fixed(g.element_len))
        r.finish()
        return cls(suite, group_key, shares, min_signers, chain_code)


def derive_key_package(key: KeyPackage, tweak: int, chain_code: bytes) -> KeyPackage:
    """The key package of a BIP32-derived child: every share moves by the same
    additive ``tweak`` (Lagrange coefficients sum to one), so the child's
    shares interpolate to the child's private key."""
    g = key.suite.group
    offset = g.base_mult(tweak)
    return KeyPackage(
        key.suite,
        key.identifier,
        (key.signing_share + tweak) % g.order,
        key.verifying_share + offset,
        key.group_public_key + offset,
        key.min_signers,
        chain_code,
    )


def derive_public_key_package(
    public: PublicKeyPackage, tweak: int, chain_code: bytes
) -> PublicKeyPackage:
    offset = public.suite.group.base_mult(tweak)
    return PublicKeyPackage(
        public.suite,
        public.group_public_key + offset,
        {i: share + offset for i, share in public.verifying_shares.items()},
        public.min_signers,
        chain_code,
    )
