"""Two-party multiplication of DKLs23: the OT-based random vector OLE
pi_RVOLE (ePrint 2023/765, Protocol 5.2) realising F_RVOLE
(Functionality 3.5) with Bob's input chosen at random ("forced reuse":
one batch of Bob's OTs serves Alice's whole vector).

Alice inputs ``a`` in ``Z_q^ELL``; Bob obtains a uniformly random ``b``;
Alice outputs ``c`` and Bob ``d`` with ``c_i + d_i = a_i * b (mod q)``.

Round structure (matching the three-round signing protocol):

* **Round 1, Bob** (:func:`bob_round1`): sample ``beta`` in ``{0,1}^XI``,
  ``b = <g, beta>`` for the public random gadget vector ``g``
  (:func:`gadget_vector`); run the OT-extension receiver with choices
  ``beta`` (:mod:`.ot_extension`, steps 1-2) and send its message.  Bob keeps
  a :class:`BobRound1State` (serialisable, for stored presignatures).
* **Round 2, Alice** (:func:`alice_round2`): check Bob's extension message
  (KOS15 Fig. 10 check); with random-OT pads ``(v0_j, v1_j)`` over
  ``Z_q^{ELL+RHO}``, sample the check mask ``a^ in Z_q^RHO`` and send
  (Protocol 5.2, Alice's steps)

  - the correlation ``a~_j = v0_j - v1_j + (a || a^)`` for every ``j``;
  - ``theta in Z_q^{RHO x ELL}`` = Fiat-Shamir hash of the transcript and
    ``a~``;
  - ``eta = a^ + theta * a`` (one scalar per check column);
  - ``mu = H({ v0_{j,ELL+k} + sum_i theta_{k,i} v0_{j,i} }_{j,k})``;

  and output ``c_i = -sum_j g_j v0_{j,i}``.
* **Round 3, Bob** (:meth:`BobRound1State.finish`): with his pads
  ``v_{beta_j}``: ``d~_j = v_{beta_j} + beta_j * a~_j`` (``= v0_j + beta_j
  (a || a^)``); the check ``mu = H({ d~_{j,ELL+k} + sum_i theta_{k,i}
  d~_{j,i} - beta_j eta_k }_{j,k})`` (Protocol 5.2, Bob's consistency check);
  output ``d_i = sum_j g_j d~_{j,i}``.

A failed check names Alice (:class:`~signer_nodes.mpc.errors.MultiplicationCheckError`);
a failed OT-extension check names Bob
(:class:`~signer_nodes.mpc.errors.OtConsistencyError`).  Bob's abort may
reveal one choice bit ``beta_j`` per inconsistent row to a cheating Alice;
``XI = KAPPA + 2 LAMBDA_S`` is sized so that ``b`` stays
``2^-LAMBDA_S``-close to uniform nonetheless, which is why the paper can
allow the abort.  Those bits are fresh per instance, so this abort, unlike
the OT-extension one, obliges no exclusion (:mod:`.faults`).

Protocol 5.2 as printed has two index typos, recorded by Trail of Bits'
review of the Silence Laboratories implementation (2024, appendix F): the
``mu`` formula writes ``theta_{k,k}`` for ``theta_{k,i}`` and the ``a~``
formula writes ``a^_i`` for ``a^_k``.  The formulas above are the intended
ones (the only ones under which honest parties pass the check).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from functools import lru_cache
from operator import mul

from signer_nodes.mpc.dkls23.context import (
    FORMAT_VERSION,
    PairContext,
    RandomSource,
    parse_message,
    random_scalar,
    scalars_from_bytes,
    system_random,
)
from signer_nodes.mpc.dkls23.ot_extension import (
    OteReceiverBatch,
    OtExtensionMessage,
    ote_receiver_extend,
    ote_sender_extend,
)
from signer_nodes.mpc.dkls23.params import ELL, NONCE_BYTES, OT_WIDTH, RHO, ROW_BYTES, XI
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import (
    EncodingError,
    LocalMisuseError,
    MultiplicationCheckError,
    NonceReuseError,
)
from signer_nodes.mpc.groups.secp256k1 import ORDER
from signer_nodes.mpc.transcript import Transcript

_GADGET_DOMAIN = b"dkls23/rvole/v1/gadget-vector"
_THETA_DOMAIN = b"dkls23/rvole/v1/theta"
_MU_DOMAIN = b"dkls23/rvole/v1/mu"
_MSG_ALICE = b"rvole/alice-message"
_STATE_KIND = 0xB1
_SCALAR = 32
assert (ELL, RHO) == (2, 1), "the loops below are written for ELL = 2, RHO = 1"

#: Bob's round-1 message is exactly the OT-extension receiver's message.
MulRound1Message = OtExtensionMessage


@lru_cache(maxsize=1)
def gadget_vector() -> tuple[int, ...]:
    """The public gadget vector ``g in Z_q^XI`` (nothing-up-my-sleeve: a
    transcript hash of a fixed domain tag and the index)."""
    base = Transcript(_GADGET_DOMAIN)
    return tuple(
        base.fork().append_int(b"index", j, 2).challenge_scalar(ORDER, b"g") for j in range(XI)
    )


def _encode_scalars(values: Sequence[int]) -> bytes:
    return b"".join(v.to_bytes(_SCALAR, "big") for v in values)


def _theta(ctx: PairContext, ote_digest: bytes, nonce: bytes, a_tilde: bytes) -> list[list[int]]:
    """Fiat-Shamir ``theta in Z_q^{RHO x ELL}`` over the transcript and ``a~``."""
    t = ctx.transcript(_THETA_DOMAIN).append(b"ote-transcript", ote_digest)
    t.append(b"alice-nonce", nonce).append(b"a-tilde", a_tilde)
    return [
        [t.challenge_scalar(ORDER, b"theta-%d-%d" % (k, i)) for i in range(ELL)] for k in range(RHO)
    ]


def _mu_digest(ctx: PairContext, ote_digest: bytes, nonce: bytes, values: Sequence[int]) -> bytes:
    t = ctx.transcript(_MU_DOMAIN).append(b"ote-transcript", ote_digest)
    return t.append(b"alice-nonce", nonce).append(b"mu", _encode_scalars(values)).digest(b"mu")


class MulRound2Message:
    """Alice -> Bob (signing round 2): ``a~``, ``eta`` and the hash ``mu``."""

    __slots__ = ("_a_tilde_bytes", "a_tilde", "eta", "mu", "nonce", "tag")

    def __init__(
        self,
        *,
        tag: bytes,
        nonce: bytes,
        a_tilde: Sequence[int],
        eta: Sequence[int],
        mu: bytes,
    ) -> None:
        self.tag = bytes(tag)
        self.nonce = bytes(nonce)
        self.a_tilde = tuple(a_tilde)
        self.eta = tuple(eta)
        self.mu = bytes(mu)
        self._a_tilde_bytes: bytes | None = None
        if (
            len(self.tag) != 32
            or len(self.nonce) != NONCE_BYTES
            or len(self.a_tilde) != XI * OT_WIDTH
            or len(self.eta) != RHO
            or len(self.mu) != 32
        ):
            raise EncodingError("multiplication message has the wrong shape")
        values = (*self.a_tilde, *self.eta)
        try:
            in_range = min(values) >= 0 and max(values) < ORDER
        except TypeError:
            in_range = False
        if not in_range or any(type(v) is not int for v in self.eta):
            raise EncodingError("multiplication message: scalar out of range")

    @property
    def a_tilde_bytes(self) -> bytes:
        """The encoding of ``a~`` (32-byte big-endian scalars, row-major)."""
        if self._a_tilde_bytes is None:
            self._a_tilde_bytes = _encode_scalars(self.a_tilde)
        return self._a_tilde_bytes

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MulRound2Message):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MulRound2Message(tag={self.tag.hex()[:16]}..., {len(self.to_bytes())} bytes)"

    def to_bytes(self) -> bytes:
        w = Writer().u8(FORMAT_VERSION).fixed(self.tag).fixed(self.nonce)
        w.fixed(self.a_tilde_bytes).fixed(_encode_scalars(self.eta))
        return bytes(w.fixed(self.mu))

    @classmethod
    def from_bytes(cls, data: bytes, *, sender: int) -> MulRound2Message:
        def body(r: Reader) -> MulRound2Message:
            tag, nonce = r.fixed(32), r.fixed(NONCE_BYTES)
            raw = r.fixed(XI * OT_WIDTH * _SCALAR)
            eta = scalars_from_bytes(r.fixed(RHO * _SCALAR), _SCALAR)
            out = cls(
                tag=tag,
                nonce=nonce,
                a_tilde=scalars_from_bytes(raw, _SCALAR),
                eta=eta,
                mu=r.fixed(32),
            )
            out._a_tilde_bytes = raw  # canonical: fixed width and range-checked
            return out

        return parse_message(data, sender, "multiplication message", body)


class BobRound1State:
    """Bob's secret state from round 1 until Alice's reply arrives.

    Holds his choice bits ``beta``, the OT-extension rows and his random
    input ``b``.  Single use: :meth:`finish` refuses a second call, and a
    stored copy (:meth:`to_bytes`) must be deleted by its store when used.
    """

    __slots__ = ("_batch", "_used", "b")

    def __init__(self, batch: OteReceiverBatch) -> None:
        self._batch = batch
        self._used = False
        g = gadget_vector()
        bits = batch.choice_bits()
        #: Bob's random input of F_RVOLE, ``<g, beta> mod q``.
        self.b = sum(g[j] for j in range(XI) if bits[j]) % ORDER

    @property
    def ctx(self) -> PairContext:
        return self._batch.ctx

    def __repr__(self) -> str:
        return f"BobRound1State(alice={self.ctx.alice}, bob={self.ctx.bob}, <redacted>)"

    def to_bytes(self) -> bytes:
        if self._used:
            raise NonceReuseError("multiplication state already used")
        bt = self._batch
        w = Writer().u8(FORMAT_VERSION).u8(_STATE_KIND).var(bt.ctx.session_id)
        w.u32(bt.ctx.alice).u32(bt.ctx.bob).fixed(bt.nonce).fixed(bt.ote_digest)
        return bytes(w.fixed(bt.choices).fixed(bt.rows))

    @classmethod
    def from_bytes(cls, data: bytes) -> BobRound1State:
        r = Reader(data)
        if r.u8() != FORMAT_VERSION or r.u8() != _STATE_KIND:
            raise EncodingError("multiplication state: unknown version or kind")
        sid = r.var(256)
        try:
            ctx = PairContext(session_id=sid, alice=r.u32(), bob=r.u32())
        except LocalMisuseError as exc:
            raise EncodingError(f"multiplication state: {exc}") from exc
        batch = OteReceiverBatch(
            ctx=ctx,
            nonce=r.fixed(NONCE_BYTES),
            ote_digest=r.fixed(32),
            choices=r.fixed(XI // 8),
            rows=r.fixed(XI * ROW_BYTES),
        )
        r.finish()
        return cls(batch)

    def finish(self, msg: MulRound2Message) -> tuple[int, ...]:
        """Round 3 (Bob): verify Alice's reply and return his shares ``d``.

        Raises :class:`~signer_nodes.mpc.errors.ForeignSessionError` or
        :class:`~signer_nodes.mpc.errors.MultiplicationCheckError` naming
        Alice; nothing is output then.  After a failed check the state is
        consumed (the abort is final); a foreign message leaves it usable.
        """
        if self._used:
            raise NonceReuseError("multiplication state already used")
        bt = self._batch
        ctx = bt.ctx
        ctx.check_binding(msg.tag, _MSG_ALICE, ctx.alice)
        self._used = True
        va, vb, vh = bt.raw_pads(msg.nonce)
        bits = bt.choice_bits().tolist()
        a_tilde = msg.a_tilde
        ((th0, th1),) = _theta(ctx, bt.ote_digest, msg.nonce, msg.a_tilde_bytes)
        (eta,) = msg.eta
        q = ORDER
        # d~_j = v_{beta_j} + beta_j * a~_j, per column of Alice's vector
        da = [v + t if x else v for v, t, x in zip(va, a_tilde[0::3], bits, strict=True)]
        db = [v + t if x else v for v, t, x in zip(vb, a_tilde[1::3], bits, strict=True)]
        dh = [v + t if x else v for v, t, x in zip(vh, a_tilde[2::3], bits, strict=True)]
        mu_values = [
            (h + th0 * u + th1 * w - (eta if x else 0)) % q
            for u, w, h, x in zip(da, db, dh, bits, strict=True)
        ]
        expected = _mu_digest(ctx, bt.ote_digest, msg.nonce, mu_values)
        if not hmac.compare_digest(expected, msg.mu):
            raise MultiplicationCheckError(
                "pi_RVOLE consistency check (DKLs23 Protocol 5.2) failed", [ctx.alice]
            )
        g = gadget_vector()
        return (sum(map(mul, g, da)) % q, sum(map(mul, g, db)) % q)


def bob_round1(
    setup: BobSetup, ctx: PairContext, *, rand: RandomSource = system_random
) -> tuple[BobRound1State, MulRound1Message]:
    """Round 1 (Bob): sample ``beta``, start the OT extension.

    Returns the state to keep (its ``b`` is Bob's random input) and the
    message for Alice.
    """
    batch, msg = ote_receiver_extend(setup, ctx, rand(XI // 8), rand=rand)
    return BobRound1State(batch), msg


def alice_round2(
    setup: AliceSetup,
    ctx: PairContext,
    a: Sequence[int],
    msg: MulRound1Message,
    *,
    rand: RandomSource = system_random,
) -> tuple[tuple[int, ...], MulRound2Message]:
    """Round 2 (Alice): check Bob's message, return her shares ``c`` and the
    reply.  Stateless: Alice's part ends here."""
    if len(a) != ELL or any(not isinstance(v, int) or not 0 <= v < ORDER for v in a):
        raise LocalMisuseError(f"Alice's input must be {ELL} scalars in [0, q)")
    batch = ote_sender_extend(setup, ctx, msg)
    nonce = rand(NONCE_BYTES)
    (p0a, p0b, p0h), (p1a, p1b, p1h) = batch.raw_pads(nonce)
    a0, a1 = a
    a_hat = random_scalar(rand)
    q = ORDER
    # a~_j = v0_j - v1_j + (a || a^)
    a_tilde: list[int] = [0] * (XI * OT_WIDTH)
    a_tilde[0::3] = [(x - y + a0) % q for x, y in zip(p0a, p1a, strict=True)]
    a_tilde[1::3] = [(x - y + a1) % q for x, y in zip(p0b, p1b, strict=True)]
    a_tilde[2::3] = [(x - y + a_hat) % q for x, y in zip(p0h, p1h, strict=True)]
    a_tilde_bytes = _encode_scalars(a_tilde)
    # theta = H(transcript, a~); eta = a^ + theta . a; mu = H(v0_{j,h} + theta . v0_j)
    ((th0, th1),) = _theta(ctx, batch.ote_digest, nonce, a_tilde_bytes)
    eta = (a_hat + th0 * a0 + th1 * a1) % q
    mu_values = [(h + th0 * u + th1 * w) % q for u, w, h in zip(p0a, p0b, p0h, strict=True)]
    reply = MulRound2Message(
        tag=ctx.binding_tag(_MSG_ALICE),
        nonce=nonce,
        a_tilde=a_tilde,
        eta=[eta],
        mu=_mu_digest(ctx, batch.ote_digest, nonce, mu_values),
    )
    reply._a_tilde_bytes = a_tilde_bytes
    g = gadget_vector()
    c = (-sum(map(mul, g, p0a)) % q, -sum(map(mul, g, p0b)) % q)
    return c, reply
