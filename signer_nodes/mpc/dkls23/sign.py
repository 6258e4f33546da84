"""The message-dependent step of DKLs23 signing (ePrint 2023/765,
Protocol 3.6: the round-3 values ``u_i, w_i`` and step 10), with BIP32
derivation and re-randomised presignatures.

Each signer turns its :class:`~signer_nodes.mpc.dkls23.presign.Presignature`
``(phi_i, u_i, v_i; R)`` and the 32-byte message hash into a
:class:`SignatureShare` ``(u'_i, w_i)`` (:func:`signature_share`); anyone
holding the :class:`~signer_nodes.mpc.dkls23.presign.PresignaturePublic`
combines the shares (:func:`combine`): ``s = sum w_i / sum u'_i``, verifies
the ECDSA signature (step 10, with libsecp256k1 through ``coincurve``),
normalises to low ``s`` and returns the recovery id.

**Additive derivation.**  A BIP32 child key is ``pk + e*G`` (``e`` the
summed ``I_L`` of :func:`signer_nodes.mpc.bip32.derive`).  The presignature
was made for ``sk = sum sk_i`` with ``sum v_i = sk * phi``; the shifted key
needs ``sum v'_i = (sk + e) * phi = sum (v_i + e * phi_i)``, so each signer
sets ``w_i = (h + r_x e) phi_i + r_x v_i``.  The presign consistency checks
(step 8) are about the root key and stay valid; the final verification uses
the derived key.

**Re-randomisation.**  With presignatures ``R`` is known before the message
and the derivation tweak are chosen; Groth and Shoup ("On the Security of
ECDSA with Additive Key Derivation and Presignatures", Eurocrypt 2022,
ePrint 2021/1330) show this combination weakens ECDSA (a three-list,
cube-root attack: one signature on ``(m, e)`` with nonce ``R`` also verifies
for any ``(m', e')`` with ``h + r_x e = h' + r_x e'``) and that
re-randomising the presignature restores it.  We shift the nonce by a
public ``delta = H(presignature id, share epoch, R, derived key Y, e, h)``:
``R' = R + delta*G``, nonce ``r + delta``; since ``sum u_i = r * phi`` each
signer sends ``u'_i = u_i + delta * phi_i``.  ``r_x`` is the x coordinate
of ``R'``.  Because ``delta`` depends on ``(m, e)``, changing either changes
``R'``, which removes the relation the attack needs.  Groth and Shoup model
``delta`` as fresh public randomness revealed after the request; the hash
is the random-oracle stand-in for it (as in NEAR's and DFINITY's threshold
ECDSA, which additionally mix in a beacon value).  What a requester can
still do is grind ``(m, e)`` for a ``delta`` it likes, i.e. choose among
random ``R'`` -- a generic square-root search, no better than against plain
ECDSA (docs/dkls23-review.md, "Re-randomisation").

**Faults.**  A wrong ``u'_i`` or ``w_i`` makes the signature fail step 10;
DKLs23 guarantees abort there, not attribution, so
:class:`~signer_nodes.mpc.errors.SignatureAbortError` has no culprit and no
signature is released.  A share for another presignature is refused naming
its sender (:class:`~signer_nodes.mpc.errors.ForeignSessionError`).

Low-s: ``s > q/2`` is replaced by ``q - s`` (BIP62 / EIP-2), flipping the
recovery id's parity bit.  ``R'.x >= q`` (probability ~2^-128) is refused,
so the recovery id is always 0 or 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from coincurve import PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact

from signer_nodes.mpc.bip32 import ExtendedPublicKey, derive
from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.dkls23.presign import Presignature, PresignaturePublic
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import (
    EncodingError,
    ForeignSessionError,
    InvalidMessageError,
    LocalMisuseError,
    SignatureAbortError,
    UnexpectedMessageError,
)
from signer_nodes.mpc.groups import SECP256K1, Element
from signer_nodes.mpc.groups.secp256k1 import Secp256k1Point
from signer_nodes.mpc.session import Envelope, RoundBasedParty, RoundSpec, decode_from
from signer_nodes.mpc.transcript import Transcript

Q = SECP256K1.order
HALF_Q = Q // 2
_RERANDOMIZE_DOMAIN = b"dkls23/sign/v1/rerandomize"
_SHARE_MAGIC = b"DSS"
SHARE_VERSION = 1


def derivation_tweak(
    group_public_key: Element, chain_code: bytes, path: Sequence[int] | str
) -> tuple[int, ExtendedPublicKey]:
    """BIP32 CKDpub along ``path`` from the group key: ``(tweak e, child)``."""
    root = ExtendedPublicKey(group_public_key, chain_code)
    child, tweak = derive(root, path)
    return tweak, child


def _hash_scalar(message_hash: bytes) -> int:
    if len(message_hash) != 32:
        raise LocalMisuseError("ECDSA signs a 32-byte message hash")
    return int.from_bytes(message_hash, "big") % Q


def rerandomizer(public: PresignaturePublic, tweak: int, message_hash: bytes) -> int:
    """``delta`` of the re-randomised presignature (see the module docstring)."""
    derived = public.group_public_key + SECP256K1.base_mult(tweak)
    t = Transcript(_RERANDOMIZE_DOMAIN).append(b"session", public.session_id)
    t.append(b"share-id", public.share_id)
    t.append(b"R", SECP256K1.serialize_element(public.big_r))
    t.append(b"derived-key", SECP256K1.serialize_element(derived))
    t.append(b"tweak", SECP256K1.serialize_scalar(tweak))
    return t.append(b"message-hash", message_hash).challenge_scalar(Q, b"delta")


def _effective_point(public: PresignaturePublic, delta: int) -> tuple[Element, int]:
    point = public.big_r + SECP256K1.base_mult(delta)
    if point.is_identity:  # pragma: no cover - probability 2^-256
        raise LocalMisuseError("re-randomised instance point is the identity; use another")
    assert isinstance(point, Secp256k1Point)
    x = int.from_bytes(point.x_bytes(), "big")
    if x >= Q:  # pragma: no cover - probability about 2^-128
        raise LocalMisuseError("R'.x >= q (recovery id would exceed 1); use another presignature")
    return point, x


@dataclass(frozen=True, slots=True)
class SignatureShare:
    """Signer ``party``'s message-dependent values ``(u'_i, w_i)`` for the
    presignature ``session_id`` (the paper's round-3 broadcast)."""

    session_id: bytes
    party: int
    u: int
    w: int

    def to_bytes(self) -> bytes:
        g = SECP256K1
        w = Writer().fixed(_SHARE_MAGIC).u8(SHARE_VERSION).fixed(self.session_id).u16(self.party)
        return bytes(w.fixed(g.serialize_scalar(self.u)).fixed(g.serialize_scalar(self.w)))

    @classmethod
    def from_bytes(cls, data: bytes) -> SignatureShare:
        g = SECP256K1
        r = Reader(data)
        if r.fixed(3) != _SHARE_MAGIC or r.u8() != SHARE_VERSION:
            raise EncodingError("not a version-1 DKLs23 signature share")
        sid, party = r.fixed(32), r.u16()
        u, w = g.deserialize_scalar(r.fixed(32)), g.deserialize_scalar(r.fixed(32))
        r.finish()
        return cls(sid, party, u, w)


@dataclass(frozen=True, slots=True)
class EcdsaSignature:
    """A low-s secp256k1 ECDSA signature with its recovery id (0 or 1)."""

    r: int
    s: int
    recovery_id: int

    def __post_init__(self) -> None:
        if not (0 < self.r < Q and 0 < self.s <= HALF_Q and self.recovery_id in (0, 1)):
            raise ValueError("not a low-s signature with recovery id 0/1")

    def to_bytes(self) -> bytes:
        """64 bytes ``r || s``."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big")

    def to_der(self) -> bytes:
        return bytes(cdata_to_der(deserialize_compact(self.to_bytes())))

    def recoverable(self) -> bytes:
        """65 bytes ``r || s || recid`` (libsecp256k1 / coincurve layout)."""
        return self.to_bytes() + bytes([self.recovery_id])

    @property
    def ethereum_v(self) -> int:
        """Pre-EIP-155 ``v`` (27/28); EIP-155 ``v`` is ``recovery_id + 35 + 2 * chain_id``."""
        return 27 + self.recovery_id

    def bitcoin_compact(self) -> bytes:
        """65-byte Bitcoin message-signature format for a compressed key."""
        return bytes([27 + 4 + self.recovery_id]) + self.to_bytes()


def signature_share(
    presignature: Presignature,
    key_share: KeyShare,
    message_hash: bytes,
    *,
    tweak: int = 0,
) -> SignatureShare:
    """The final step for one signer; consumes the presignature.

    Refuses (LocalMisuseError) a presignature made with another key share
    epoch (refreshed away) or by another party, and raises NonceReuseError on
    a consumed one.
    """
    public = presignature.public
    if public.share_id != key_share.share_id:
        raise LocalMisuseError("presignature belongs to another (refreshed) key share")
    if presignature.party != key_share.identifier:
        raise LocalMisuseError("presignature belongs to another party")
    if not 0 <= tweak < Q:
        raise LocalMisuseError("derivation tweak out of range")
    h = _hash_scalar(message_hash)
    delta = rerandomizer(public, tweak, message_hash)
    _, r_x = _effective_point(public, delta)
    phi, u, v = presignature.consume()
    return SignatureShare(
        public.session_id,
        presignature.party,
        (u + delta * phi) % Q,
        ((h + r_x * tweak) * phi + r_x * v) % Q,
    )


def combine(
    public: PresignaturePublic,
    shares: Mapping[int, SignatureShare],
    message_hash: bytes,
    *,
    tweak: int = 0,
) -> EcdsaSignature:
    """Step 10: ``s = sum w_i / sum u'_i``; verify under ``pk + tweak*G``;
    low-s; recovery id.  Raises SignatureAbortError (no culprit) if the
    signature does not verify."""
    if set(shares) != set(public.signers):
        raise LocalMisuseError("need exactly one share from every signer of the presignature")
    for party, share in shares.items():
        if share.party != party:
            raise UnexpectedMessageError("share filed under another party", [party])
        if share.session_id != public.session_id:
            raise ForeignSessionError("share for another presignature", [party])
    delta = rerandomizer(public, tweak, message_hash)
    point, r = _effective_point(public, delta)
    denominator = sum(s.u for s in shares.values()) % Q
    s = sum(s.w for s in shares.values()) * pow(denominator, -1, Q) % Q if denominator else 0
    derived = public.group_public_key + SECP256K1.base_mult(tweak)
    if s == 0 or r == 0 or derived.is_identity:
        raise SignatureAbortError("degenerate signature (DKLs23 step 10; abort only)", [])
    assert isinstance(point, Secp256k1Point) and isinstance(derived, Secp256k1Point)
    recid = 0 if point.has_even_y() else 1
    if s > HALF_Q:
        s, recid = Q - s, recid ^ 1
    sig = EcdsaSignature(r, s, recid)
    if not PublicKey(derived.to_bytes()).verify(sig.to_der(), message_hash, hasher=None):
        raise SignatureAbortError(
            "combined signature does not verify (DKLs23 Protocol 3.6 step 10; abort only)", []
        )
    return sig


class SignParty(RoundBasedParty):
    """The final step as a one-round session among the signers: each
    broadcasts its :class:`SignatureShare` and combines everyone's.

    The session id is the presignature's; the protocol name keeps it apart
    from the presign session.  Output: :class:`EcdsaSignature`.
    """

    protocol = "dkls23-sign"

    def __init__(
        self,
        presignature: Presignature,
        key_share: KeyShare,
        message_hash: bytes,
        *,
        tweak: int = 0,
    ) -> None:
        public = presignature.public
        others = frozenset(public.signers) - {presignature.party}
        super().__init__(public.session_id, presignature.party, [RoundSpec(1, True, others)])
        self._presignature = presignature
        self._key_share = key_share
        self.public = public
        self.message_hash = message_hash
        self.tweak = tweak
        self._own: SignatureShare | None = None

    def __repr__(self) -> str:
        return f"SignParty(id={self.self_id}, signers={self.public.signers}, <redacted>)"

    def _first_messages(self) -> list[Envelope]:
        self._own = signature_share(
            self._presignature, self._key_share, self.message_hash, tweak=self.tweak
        )
        return [self._envelope(1, self._own.to_bytes())]

    def _on_round(self, round_: int, messages: dict[int, Envelope]) -> list[Envelope]:
        assert self._own is not None
        shares = {self.self_id: self._own}
        for sender, env in messages.items():
            share: SignatureShare = decode_from(sender, SignatureShare.from_bytes, env.payload)
            if share.party != sender:
                raise InvalidMessageError("share names another party", [sender])
            shares[sender] = share
        self._finish(combine(self.public, shares, self.message_hash, tweak=self.tweak))
        return []
