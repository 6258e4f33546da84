"""The long-lived key share of one DKLs23 signer (ePrint 2023/765, Protocol
3.6 "Setup" output plus the per-pair state of Section 5.1).

A :class:`KeyShare` bundles

* the Shamir share ``p(i)`` of the secp256k1 key with every party's verifying
  share, the group key and the BIP32 chain code -- the FROST
  :class:`~signer_nodes.mpc.frost.keys.KeyPackage` /
  :class:`~signer_nodes.mpc.frost.keys.PublicKeyPackage` produced by the
  Komlo-Goldberg DKG over ``FROST_SECP256K1``;
* for every other party ``j`` the base-OT setup of both ordered pairs: the
  :class:`~signer_nodes.mpc.dkls23.setup.AliceSetup` of the instance
  ``(alice=i, bob=j)`` and the :class:`~signer_nodes.mpc.dkls23.setup.BobSetup`
  of ``(alice=j, bob=i)``;
* for every other party ``j`` the seed of the zero-sharing functionality
  F_Zero (DKLs23 Functionality 3.4) shared by ``i`` and ``j``;
* ``share_id``: a 32-byte epoch identifier (a transcript digest over the
  session that produced the share and its public package).  Presignatures
  record it, and the final signing step refuses a presignature whose
  ``share_id`` differs from the key share it is given, so a refresh retires
  every older presignature.

Versioned binary format (``DKS`` magic, version byte); ``repr`` is redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EncodingError, LocalMisuseError
from signer_nodes.mpc.frost import FROST_SECP256K1
from signer_nodes.mpc.frost.keys import KeyPackage, PublicKeyPackage
from signer_nodes.mpc.groups import Element
from signer_nodes.mpc.transcript import Transcript

_MAGIC = b"DKS"
KEY_SHARE_VERSION = 1
ZERO_SEED_BYTES = 32
_MAX_RECORD = 1 << 20


def share_epoch_id(session_id: bytes, public: PublicKeyPackage) -> bytes:
    """The ``share_id`` of the shares a keygen/refresh/reshare session produced."""
    t = Transcript(b"dkls23/key-share/epoch").append(b"session", session_id)
    return t.append(b"public", public.to_bytes()).digest()


@dataclass(frozen=True, slots=True, repr=False)
class KeyShare:
    """One party's DKLs23 key share; long-term secret, redacted in ``repr``."""

    key_package: KeyPackage
    public: PublicKeyPackage
    share_id: bytes
    alice_setups: Mapping[int, AliceSetup]
    bob_setups: Mapping[int, BobSetup]
    zero_seeds: Mapping[int, bytes]

    def __post_init__(self) -> None:
        me = self.key_package.identifier
        others = set(self.public.verifying_shares) - {me}
        if self.key_package.suite is not FROST_SECP256K1 or self.public.suite is not (
            FROST_SECP256K1
        ):
            raise ValueError("a DKLs23 key share is a secp256k1 key")
        if me not in self.public.verifying_shares:
            raise ValueError("the party is not in its public key package")
        if self.public.verifying_shares[me] != self.key_package.verifying_share:
            raise ValueError("verifying share differs from the public package")
        if self.public.group_public_key != self.key_package.group_public_key:
            raise ValueError("group key differs from the public package")
        if len(self.share_id) != 32:
            raise ValueError("share_id is 32 bytes")
        if not set(self.alice_setups) == set(self.bob_setups) == set(self.zero_seeds) == others:
            raise ValueError("need the pairwise setup with every other party")
        for j in others:
            a, b = self.alice_setups[j], self.bob_setups[j]
            if (a.alice, a.bob, b.alice, b.bob) != (me, j, j, me):
                raise ValueError(f"pairwise setup with {j} has the wrong roles")
            if len(self.zero_seeds[j]) != ZERO_SEED_BYTES:
                raise ValueError("zero-sharing seeds are 32 bytes")

    # -- views -----------------------------------------------------------------

    @property
    def identifier(self) -> int:
        return self.key_package.identifier

    @property
    def threshold(self) -> int:
        return self.public.min_signers

    @property
    def parties(self) -> tuple[int, ...]:
        return tuple(sorted(self.public.verifying_shares))

    @property
    def group_public_key(self) -> Element:
        return self.public.group_public_key

    @property
    def chain_code(self) -> bytes:
        return self.public.chain_code

    def __repr__(self) -> str:
        return (
            f"KeyShare(identifier={self.identifier}, t={self.threshold}, "
            f"parties={self.parties}, group_public_key={self.group_public_key!r}, "
            f"share_id={self.share_id.hex()[:16]}..., <redacted>)"
        )

    # -- encoding --------------------------------------------------------------

    def to_bytes(self) -> bytes:
        w = Writer().fixed(_MAGIC).u8(KEY_SHARE_VERSION)
        w.var(self.key_package.to_bytes()).var(self.public.to_bytes()).fixed(self.share_id)
        others = sorted(self.alice_setups)
        w.u16(len(others))
        for j in others:
            w.u16(j).var(self.alice_setups[j].to_bytes()).var(self.bob_setups[j].to_bytes())
            w.fixed(self.zero_seeds[j])
        return bytes(w)

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyShare:
        r = Reader(data)
        if r.fixed(3) != _MAGIC:
            raise EncodingError("not a DKLs23 key share")
        if (version := r.u8()) != KEY_SHARE_VERSION:
            raise EncodingError(f"unsupported DKLs23 key share version {version}")
        key = KeyPackage.from_bytes(r.var(_MAX_RECORD))
        public = PublicKeyPackage.from_bytes(r.var(_MAX_RECORD))
        share_id = r.fixed(32)
        alice: dict[int, AliceSetup] = {}
        bob: dict[int, BobSetup] = {}
        seeds: dict[int, bytes] = {}
        for _ in range(r.u16()):
            j = r.u16()
            if j in alice:
                raise EncodingError("duplicate pairwise setup")
            try:
                alice[j] = AliceSetup.from_bytes(r.var(_MAX_RECORD))
                bob[j] = BobSetup.from_bytes(r.var(_MAX_RECORD))
            except LocalMisuseError as exc:
                raise EncodingError(f"bad pairwise setup: {exc}") from exc
            seeds[j] = r.fixed(ZERO_SEED_BYTES)
        r.finish()
        try:
            return cls(key, public, share_id, alice, bob, seeds)
        except ValueError as exc:
            raise EncodingError(f"inconsistent DKLs23 key share: {exc}") from exc
