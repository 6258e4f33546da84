"""DKLs23 presigning: the message-independent rounds of the threshold ECDSA
signing protocol (Doerner, Kondi, Lee, shelat, "Threshold ECDSA in Three
Rounds", IEEE S&P 2024, ePrint 2023/765, Protocol 3.6, steps 4-9) over a
fixed signer set ``S`` (``|S| >= t``; step 4's check of the signer set is
:class:`PresignParty`'s constructor, step 5 samples ``r_i, phi_i``).

Notation of the paper: instance key ``r_i`` with ``R_i = r_i * G``,
inversion mask ``phi_i``; ``sk_i = lambda_i(S) * p(i) + zeta_i`` (Lagrange-
weighted Shamir share plus the F_Zero share of Functionality 3.4), ``pk_i =
sk_i * G``.  For each other signer ``j`` two pi_RVOLE instances run
(Protocol 5.2, :mod:`.multiplication`): in ``(alice=i, bob=j)`` party ``i``
inputs ``(r_i, sk_i)`` and ``j`` receives a random ``chi_{j,i}``; in
``(alice=j, bob=i)`` the roles swap.

Round 1 (point to point, ``i -> j``; step 6):
    ``Com(R_i)`` (a salted, session- and pair-bound hash; F_Com) and the
    multiplication's first message, ``i`` as Bob of ``(alice=j, bob=i)``
    (sampling ``chi_{i,j}``).
Round 2 (point to point, ``i -> j``; step 7):
    Alice's pi_RVOLE reply for ``(alice=i, bob=j)`` with input ``(r_i, sk_i)``
    giving ``c^u_{i,j}, c^v_{i,j}``; the decommitment of ``R_i``; ``pk_i``;
    ``Gamma^u_{i,j} = c^u_{i,j} * G``, ``Gamma^v_{i,j} = c^v_{i,j} * G``;
    ``psi_{i,j} = phi_i - chi_{i,j}``.
After round 2 (step 8), for every ``j``, party ``i`` checks
    * the decommitment of ``R_j`` (:class:`InvalidCommitmentError`, names j);
    * pi_RVOLE's check as Bob of ``(alice=j, bob=i)`` giving ``d^u_{i,j},
      d^v_{i,j}`` (:class:`MultiplicationCheckError`, names j);
    * ``chi_{i,j} * R_j == Gamma^u_{j,i} + d^u_{i,j} * G`` and
      ``chi_{i,j} * pk_j == Gamma^v_{j,i} + d^v_{i,j} * G``
      (:class:`Dkls23ConsistencyError`, names j: j's multiplication input
      differs from the ``R_j`` / ``pk_j`` it announced).  The paper prints
      the second check with ``Lagrange(P, j, 0) * p(j)`` (a value no party
      but j knows) where ``pk_j`` is meant -- a typo other implementers have
      confirmed with the authors; the check must be against the announced
      ``pk_j`` for the sum check below to bind it;
    * ``sum_j pk_j == pk`` (:class:`Dkls23ConsistencyError` without culprit:
      the F_Zero shares hide which ``pk_j`` is wrong, so the paper only
      guarantees abort here).
    ``psi_{j,i}`` is *not* checked, in the paper or here: it is masked by
    j's secret ``chi_{j,i}``, so there is nothing to check it against.  A
    wrong ``psi`` shifts ``u_i, v_i`` by ``r_i e, sk_i e`` (as if j used
    another ``phi_j`` towards i); the signature then fails step 10 except
    with negligible probability, and the shifts are discrete logarithms of
    ``e R_i, e pk_i`` that the adversary cannot cancel: abort only;
and computes (step 9) ``R = sum_j R_j``,
``u_i = r_i (phi_i + sum_j psi_{j,i}) + sum_j (c^u_{i,j} + d^u_{i,j})``,
``v_i = sk_i (phi_i + sum_j psi_{j,i}) + sum_j (c^v_{i,j} + d^v_{i,j})``,
so that ``sum u_i = r * phi`` and ``sum v_i = sk * phi``.
Round 3 (broadcast; the echo check of the broadcast values ``R_j, pk_j``
that reached each signer point to point): a digest per signer of the
``(R_j, pk_j)`` the sender accepted.  A mismatch raises
:class:`EquivocationError` naming the echoing party when it contradicts its
own values or ours, and nobody when it concerns a third party (who may have
equivocated, or be framed by a lying echo: :mod:`.echo`).  This round is
not in the paper (whose ``R_j`` are opened pairwise); it makes the honest
signers agree on ``R`` before the presignature is stored, as the service's
broadcast rule requires.

The output :class:`Presignature` keeps ``(phi_i, u_i, v_i)`` and the public
``R``; the message-dependent remainder (the paper's round-3 values ``u_i,
w_i`` and step 10) is :mod:`.sign`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from signer_nodes.mpc.dkls23.context import (
    PairContext,
    RandomSource,
    random_scalar,
    system_random,
)
from signer_nodes.mpc.dkls23.echo import check_echoes
from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.dkls23.multiplication import (
    BobRound1State,
    MulRound1Message,
    MulRound2Message,
    alice_round2,
    bob_round1,
)
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import (
    Dkls23ConsistencyError,
    EncodingError,
    InvalidCommitmentError,
    LocalMisuseError,
    NonceReuseError,
)
from signer_nodes.mpc.frost.polynomial import derive_interpolating_value
from signer_nodes.mpc.groups import SECP256K1, Element
from signer_nodes.mpc.session import (
    MAX_PAYLOAD,
    Envelope,
    RoundBasedParty,
    RoundSpec,
    decode_from,
)
from signer_nodes.mpc.transcript import Transcript

Q = SECP256K1.order
_POINT = SECP256K1.element_len
_SCALAR = SECP256K1.scalar_len
_MUL_DOMAIN = b"dkls23/presign/v1/multiplication:"
_COMMIT_DOMAIN = b"dkls23/presign/v1/commit-instance-point"
_ZERO_DOMAIN = b"dkls23/f-zero/v1/share"
_ECHO_DOMAIN = b"dkls23/presign/v1/echo"
_PRESIG_MAGIC = b"DPS"
_PUBLIC_MAGIC = b"DPP"
PRESIGNATURE_VERSION = 1


def multiplication_context(session_id: bytes, share_id: bytes, alice: int, bob: int) -> PairContext:
    """The pi_RVOLE context of ``(alice, bob)`` in a presign session."""
    return PairContext(session_id=_MUL_DOMAIN + session_id + share_id, alice=alice, bob=bob)


def commit_instance_point(
    session_id: bytes, sender: int, recipient: int, point: Element, salt: bytes
) -> bytes:
    """F_Com of step 6: ``H(session, i, j, R_i, salt)``, binding and hiding."""
    t = Transcript(_COMMIT_DOMAIN).append(b"session", session_id)
    t.append_int(b"sender", sender).append_int(b"recipient", recipient)
    return t.append(b"R", SECP256K1.serialize_element(point)).append(b"salt", salt).digest()


def zero_share(share: KeyShare, signers: Sequence[int], session_id: bytes) -> int:
    """F_Zero (DKLs23 Functionality 3.4) by the paper's seed-based
    realisation: ``zeta_i = sum_j +-PRF(seed_ij, session)`` with ``+`` when
    ``i < j``; the shares of ``S`` sum to zero."""
    me = share.identifier
    zeta = 0
    for j in signers:
        if j == me:
            continue
        t = Transcript(_ZERO_DOMAIN).append(b"seed", share.zero_seeds[j])
        value = t.append(b"session", session_id).challenge_scalar(Q, b"zeta")
        zeta += value if me < j else -value
    return zeta % Q


def _echo_digest(session_id: bytes, party: int, big_r: Element, pk: Element) -> bytes:
    t = Transcript(_ECHO_DOMAIN).append(b"session", session_id).append_int(b"party", party)
    t.append(b"R", SECP256K1.serialize_element(big_r))
    return t.append(b"pk", SECP256K1.serialize_element(pk)).digest()


# ------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class PresignRound1Message:
    commitment: bytes
    mul: MulRound1Message

    def to_bytes(self) -> bytes:
        return bytes(Writer().fixed(self.commitment).var(self.mul.to_bytes()))

    @classmethod
    def from_bytes(cls, data: bytes, *, sender: int) -> PresignRound1Message:
        r = Reader(data)
        commitment = r.fixed(32)
        mul = MulRound1Message.from_bytes(r.var(MAX_PAYLOAD), sender=sender)
        r.finish()
        return cls(commitment, mul)


@dataclass(frozen=True, slots=True)
class PresignRound2Message:
    instance_point: Element
    salt: bytes
    public_share: Element
    gamma_u: Element
    gamma_v: Element
    psi: int
    mul: MulRound2Message

    def to_bytes(self) -> bytes:
        g = SECP256K1
        w = Writer().fixed(g.serialize_element(self.instance_point)).fixed(self.salt)
        w.fixed(g.serialize_element(self.public_share))
        w.var(self.gamma_u.to_bytes()).var(self.gamma_v.to_bytes())
        return bytes(w.fixed(g.serialize_scalar(self.psi)).var(self.mul.to_bytes()))

    @classmethod
    def from_bytes(cls, data: bytes, *, sender: int) -> PresignRound2Message:
        g = SECP256K1
        r = Reader(data)
        big_r = g.deserialize_element(r.fixed(_POINT))
        salt = r.fixed(32)
        pk = g.deserialize_element(r.fixed(_POINT))
        gamma_u = g.element_from_bytes(r.var(_POINT))
        gamma_v = g.element_from_bytes(r.var(_POINT))
        psi = g.deserialize_scalar(r.fixed(_SCALAR))
        mul = MulRound2Message.from_bytes(r.var(MAX_PAYLOAD), sender=sender)
        r.finish()
        return cls(big_r, salt, pk, gamma_u, gamma_v, psi, mul)


# ------------------------------------------------------------------ output


@dataclass(frozen=True, slots=True)
class PresignaturePublic:
    """The public part of a presignature, the same at every signer: what a
    combiner needs besides the signature shares."""

    session_id: bytes
    share_id: bytes
    signers: tuple[int, ...]
    big_r: Element
    group_public_key: Element

    def to_bytes(self) -> bytes:
        g = SECP256K1
        w = Writer().fixed(_PUBLIC_MAGIC).u8(PRESIGNATURE_VERSION)
        w.fixed(self.session_id).fixed(self.share_id).u16(len(self.signers))
        for s in self.signers:
            w.u16(s)
        w.fixed(g.serialize_element(self.big_r))
        return bytes(w.fixed(g.serialize_element(self.group_public_key)))

    @classmethod
    def from_bytes(cls, data: bytes) -> PresignaturePublic:
        r = Reader(data)
        if r.fixed(3) != _PUBLIC_MAGIC:
            raise EncodingError("not a DKLs23 presignature record")
        if (version := r.u8()) != PRESIGNATURE_VERSION:
            raise EncodingError(f"unsupported presignature version {version}")
        out = _read_public(r)
        r.finish()
        return out


def _read_public(r: Reader) -> PresignaturePublic:
    g = SECP256K1
    sid, share_id = r.fixed(32), r.fixed(32)
    signers = tuple(r.u16() for _ in range(r.u16()))
    if len(signers) < 2 or list(signers) != sorted(set(signers)) or signers[0] < 1:
        raise EncodingError("presignature: bad signer set")
    big_r = g.deserialize_element(r.fixed(_POINT))
    pk = g.deserialize_element(r.fixed(_POINT))
    return PresignaturePublic(sid, share_id, signers, big_r, pk)


class Presignature:
    """One signer's presignature: ``(phi_i, u_i, v_i)`` and the public ``R``.

    Strictly single use: :meth:`consume` hands the secrets out once and
    raises :class:`~signer_nodes.mpc.errors.NonceReuseError` afterwards;
    :meth:`to_bytes` refuses a consumed presignature.  A serialised copy is a
    second handle on the same nonce: the store that keeps it must delete it
    atomically with its use (the node layer does), since two signatures from
    one presignature reveal the key.
    """

    __slots__ = ("_consumed", "_phi", "_u", "_v", "party", "public")

    def __init__(self, public: PresignaturePublic, party: int, phi: int, u: int, v: int) -> None:
        if party not in public.signers:
            raise ValueError("the party is not among the presignature's signers")
        if not all(0 <= x < Q for x in (phi, u, v)) or phi == 0:
            raise ValueError("presignature scalars out of range")
        self.public = public
        self.party = party
        self._phi, self._u, self._v = phi, u, v
        self._consumed = False

    @property
    def session_id(self) -> bytes:
        return self.public.session_id

    @property
    def consumed(self) -> bool:
        return self._consumed

    def __repr__(self) -> str:
        state = "consumed" if self._consumed else "unused"
        return (
            f"Presignature(party={self.party}, signers={self.public.signers}, "
            f"session={self.session_id.hex()[:16]}..., {state}, <redacted>)"
        )

    def consume(self) -> tuple[int, int, int]:
        """``(phi_i, u_i, v_i)``, once."""
        if self._consumed:
            raise NonceReuseError("presignature already used")
        self._consumed = True
        out = (self._phi, self._u, self._v)
        self._phi = self._u = self._v = 0
        return out

    def to_bytes(self) -> bytes:
        if self._consumed:
            raise NonceReuseError("presignature already used")
        g = SECP256K1
        w = Writer().fixed(_PRESIG_MAGIC).u8(PRESIGNATURE_VERSION)
        w.fixed(self.public.to_bytes()[4:]).u16(self.party)
        for x in (self._phi, self._u, self._v):
            w.fixed(g.serialize_scalar(x))
        return bytes(w)

    @classmethod
    def from_bytes(cls, data: bytes) -> Presignature:
        g = SECP256K1
        r = Reader(data)
        if r.fixed(3) != _PRESIG_MAGIC:
            raise EncodingError("not a DKLs23 presignature")
        if (version := r.u8()) != PRESIGNATURE_VERSION:
            raise EncodingError(f"unsupported presignature version {version}")
        public = _read_public(r)
        party = r.u16()
        phi, u, v = (g.deserialize_scalar(r.fixed(_SCALAR)) for _ in range(3))
        r.finish()
        try:
            return cls(public, party, phi, u, v)
        except ValueError as exc:
            raise EncodingError(f"inconsistent presignature: {exc}") from exc


# ------------------------------------------------------------------ the party


class PresignParty(RoundBasedParty):
    """One signer of a DKLs23 presign session; output: :class:`Presignature`."""

    protocol = "dkls23-presign"

    def __init__(
        self,
        session_id: bytes,
        key_share: KeyShare,
        signers: Sequence[int],
        *,
        rand: RandomSource = system_random,
    ) -> None:
        me = key_share.identifier
        ids = tuple(sorted(set(signers)))
        if len(ids) != len(signers) or me not in ids:
            raise LocalMisuseError("signers must be distinct and include this party")
        if not set(ids) <= set(key_share.parties):
            raise LocalMisuseError("every signer must hold a share of this key")
        if len(ids) < key_share.threshold:
            raise LocalMisuseError(
                f"{len(ids)} signers cannot sign for a {key_share.threshold}-of-n key"
            )
        others = frozenset(ids) - {me}
        super().__init__(
            session_id,
            me,
            [RoundSpec(1, False, others), RoundSpec(2, False, others), RoundSpec(3, True, others)],
        )
        self.share = key_share
        self.signers = ids
        self._rand = rand
        self._peers = tuple(sorted(others))
        # step 5: instance key and inversion mask
        self._r = random_scalar(rand)
        self._phi = random_scalar(rand)
        self._big_r = SECP256K1.base_mult(self._r)
        self._salts: dict[int, bytes] = {}
        self._bob: dict[int, BobRound1State] = {}
        self._commitments: dict[int, bytes] = {}
        self._c: dict[int, tuple[int, int]] = {}
        self._sk = 0
        self._pk: Element = SECP256K1.identity
        self._seen: dict[int, tuple[Element, Element]] = {}
        self._result: tuple[int, int, Element] | None = None

    def __repr__(self) -> str:
        return f"PresignParty(id={self.self_id}, signers={self.signers}, <redacted>)"

    def _ctx(self, alice: int, bob: int) -> PairContext:
        return multiplication_context(self.session_id, self.share.share_id, alice, bob)

    # -- round 1 (step 6) --------------------------------------------------------

    def _first_messages(self) -> list[Envelope]:
        out = []
        me = self.self_id
        for j in self._peers:
            salt = self._rand(32)
            self._salts[j] = salt
            state, mul = bob_round1(self.share.bob_setups[j], self._ctx(j, me), rand=self._rand)
            self._bob[j] = state
            msg = PresignRound1Message(
                commit_instance_point(self.session_id, me, j, self._big_r, salt), mul
            )
            out.append(self._envelope(1, msg.to_bytes(), j))
        return out

    def _on_round(self, round_: int, messages: dict[int, Envelope]) -> list[Envelope]:
        if round_ == 1:
            return self._on_round1(messages)
        if round_ == 2:
            return self._on_round2(messages)
        self._on_round3(messages)
        return []

    # -- round 2 (step 7) --------------------------------------------------------

    def _on_round1(self, messages: dict[int, Envelope]) -> list[Envelope]:
        me = self.self_id
        parsed = {
            j: decode_from(
                j, lambda p, j=j: PresignRound1Message.from_bytes(p, sender=j), e.payload
            )
            for j, e in messages.items()
        }
        lam = derive_interpolating_value(list(self.signers), me, Q)
        self._sk = (
            lam * self.share.key_package.signing_share
            + zero_share(self.share, self.signers, self.session_id)
        ) % Q
        self._pk = SECP256K1.base_mult(self._sk)
        out = []
        for j in self._peers:
            msg1: PresignRound1Message = parsed[j]
            self._commitments[j] = msg1.commitment
            c, reply = alice_round2(
                self.share.alice_setups[j],
                self._ctx(me, j),
                (self._r, self._sk),
                msg1.mul,
                rand=self._rand,
            )
            self._c[j] = (c[0], c[1])
            msg2 = PresignRound2Message(
                self._big_r,
                self._salts[j],
                self._pk,
                SECP256K1.base_mult(c[0]),
                SECP256K1.base_mult(c[1]),
                (self._phi - self._bob[j].b) % Q,
                reply,
            )
            out.append(self._envelope(2, msg2.to_bytes(), j))
        return out

    # -- after round 2 (steps 8, 9) and round 3 --------------------------------

    def _on_round2(self, messages: dict[int, Envelope]) -> list[Envelope]:
        g = SECP256K1
        me = self.self_id
        parsed = {
            j: decode_from(
                j, lambda p, j=j: PresignRound2Message.from_bytes(p, sender=j), e.payload
            )
            for j, e in messages.items()
        }
        total_pk = self._pk
        big_r = self._big_r
        mask = self._phi
        sum_u = sum_v = 0
        self._seen[me] = (self._big_r, self._pk)
        for j in self._peers:
            m: PresignRound2Message = parsed[j]
            if (
                commit_instance_point(self.session_id, j, me, m.instance_point, m.salt)
                != self._commitments[j]
            ):
                raise InvalidCommitmentError("R_j does not open its round-1 commitment", [j])
            bob = self._bob.pop(j)
            chi = bob.b
            d_u, d_v = bob.finish(m.mul)
            if m.instance_point * chi != m.gamma_u + g.base_mult(d_u):
                raise Dkls23ConsistencyError(
                    "chi * R_j != Gamma^u + d^u * G (Protocol 3.6 step 8)", [j]
                )
            if m.public_share * chi != m.gamma_v + g.base_mult(d_v):
                raise Dkls23ConsistencyError(
                    "chi * pk_j != Gamma^v + d^v * G (Protocol 3.6 step 8)", [j]
                )
            self._seen[j] = (m.instance_point, m.public_share)
            total_pk = total_pk + m.public_share
            big_r = big_r + m.instance_point
            mask += m.psi
            c_u, c_v = self._c[j]
            sum_u += c_u + d_u
            sum_v += c_v + d_v
        if total_pk != self.share.group_public_key:
            raise Dkls23ConsistencyError(
                "sum of pk_j is not the public key (Protocol 3.6 step 8; abort only)", []
            )
        if big_r.is_identity:  # pragma: no cover - probability 2^-256
            raise Dkls23ConsistencyError("the instance point is the identity", [])
        mask %= Q
        u = (self._r * mask + sum_u) % Q
        v = (self._sk * mask + sum_v) % Q
        self._result = (u, v, big_r)
        self._r = self._sk = 0
        self._c.clear()
        echo = self._echo()
        w = Writer().u16(len(echo))
        for digest in echo:
            w.fixed(digest)
        return [self._envelope(3, bytes(w))]

    def _echo(self) -> tuple[bytes, ...]:
        return tuple(_echo_digest(self.session_id, p, *self._seen[p]) for p in self.signers)

    def _on_round3(self, messages: dict[int, Envelope]) -> None:
        mine = self._echo()

        def parse(data: bytes) -> tuple[bytes, ...]:
            r = Reader(data)
            if r.u16() != len(self.signers):
                raise EncodingError("echo has the wrong number of digests")
            out = tuple(r.fixed(32) for _ in self.signers)
            r.finish()
            return out

        echoes = {
            sender: decode_from(sender, parse, env.payload) for sender, env in messages.items()
        }
        check_echoes(self.self_id, self.signers, mine, echoes, "R_j / pk_j")
        assert self._result is not None
        u, v, big_r = self._result
        public = PresignaturePublic(
            self.session_id, self.share.share_id, self.signers, big_r, self.share.group_public_key
        )
        self._finish(Presignature(public, self.self_id, self._phi, u, v))
        self._phi = 0
        self._result = None
