"""Base OTs of the DKLs23 key setup: the "endemic" OT of Masny and Rindal
("Endemic Oblivious Transfer", CCS 2019, ePrint 2019/706), instantiated with
Diffie-Hellman key agreement over secp256k1 and the random-oracle
programmable-once public function, batched for ``BASE_OT_COUNT`` OTs.

They run once per ordered pair at key generation; their outputs seed
every later SoftSpokenOT extension of that pair (DKLs23 Section 5.1 makes
that extension non-interactive with Fiat-Shamir, so the per-signature
rounds carry no base-OT traffic).

**Deviation from the paper's suggestion.**  Where DKLs23 instantiates the
base OTs (the OT paragraph of its Section 5, p. 30 of the ePrint version) it
points to the endemic OT of Zhou, Zhang, Zhou and Ren ("Endemic Oblivious
Transfer via Random Oracles, Revisited", EUROCRYPT 2023, ePrint 2022/1525,
Section 3: one round, DDH in the random-oracle model, with the sender's
proof of knowledge and the receiver's proof of a well-formed encryption).
This module keeps the earlier Masny-Rindal construction, whose one-round
form Zhou et al. show rests on a non-standard assumption (MR19's
"Choose-and-Open DDH").  Both are endemic, which is all the extension
needs (a corrupt party may fix its own outputs; the consequences are caught
as described below), so the deviation changes the assumption, not the
protocol's guarantees; moving to Zhou et al. would change only the keygen
messages, not the stored :class:`~signer_nodes.mpc.dkls23.setup.AliceSetup`
/ ``BobSetup`` (docs/dkls23-review.md, "Base OT").

Protocol, for OT index ``i`` (``H_0, H_1`` hash to the curve, ``KDF`` hashes
to a 32-byte seed; both are :class:`~signer_nodes.mpc.transcript.Transcript`
hashes bound to session id, both party ids and ``i``):

* Receiver (Alice, choice bit ``c``): sample ``t``, a uniformly random point
  ``r_{1-c}``, and set ``r_c = t*G - H_c(r_{1-c})``; send ``(r_0, r_1)``.
* Sender (Bob): sample ``y``; send ``z = y*G``.
* Sender: ``m_0 = r_0 + H_0(r_1)``, ``m_1 = r_1 + H_1(r_0)``,
  ``seed_j = KDF(i, z, y*m_j)``.
* Receiver: ``seed_c = KDF(i, z, t*z)`` (since ``m_c = t*G``).

The two messages do not depend on each other, so both may travel in the
same round.  Verification steps: every point is decoded with the group's
validating decoder (on the curve, canonical, not the identity), the message
must carry this session's binding tag and exactly ``BASE_OT_COUNT`` entries.

Endemic OT guarantees privacy, not correctness, against a malicious party:
a party may choose its own outputs, and nothing in the base OT detects that.
A base-OT sender (Bob) who deviates makes Alice's seeds disagree with his,
which the first OT extension of the pair detects with overwhelming
probability (:class:`~signer_nodes.mpc.errors.OtConsistencyError` naming
Bob); a base-OT receiver (Alice) who deviates only garbles her own seeds,
which Bob's multiplication check then catches
(:class:`~signer_nodes.mpc.errors.MultiplicationCheckError` naming Alice).
"""

from __future__ import annotations

from dataclasses import dataclass

from signer_nodes.mpc.dkls23.context import (
    FORMAT_VERSION,
    PairContext,
    RandomSource,
    parse_message,
    random_scalar,
    system_random,
)
from signer_nodes.mpc.dkls23.ot_extension import unpack_bits
from signer_nodes.mpc.dkls23.params import BASE_OT_COUNT
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EncodingError, NonceReuseError
from signer_nodes.mpc.groups.base import Element
from signer_nodes.mpc.groups.secp256k1 import SECP256K1
from signer_nodes.mpc.transcript import Transcript

_H2C_DOMAIN = b"dkls23/base-ot/mr19-endemic/v1/hash-to-curve"
_KDF_DOMAIN = b"dkls23/base-ot/mr19-endemic/v1/seed"
_MSG_RECEIVER = b"base-ot/receiver-message"
_MSG_SENDER = b"base-ot/sender-message"
_POINT = SECP256K1.element_len


def _hash_to_point(base: Transcript, index: int, which: int, point: bytes) -> Element:
    """H_which(point) for OT ``index``: try-and-increment onto the curve.

    Inputs are public, so the data-dependent loop leaks nothing.
    """
    t = base.fork().append_int(b"index", index, 2).append_int(b"which", which, 1)
    t.append(b"point", point)
    parity = t.digest(b"y-parity")[0] & 1
    for ctr in range(1 << 16):
        x = t.digest(b"x-candidate-" + ctr.to_bytes(2, "big"))
        try:
            return SECP256K1.deserialize_element(bytes([0x02 | parity]) + x)
        except EncodingError:
            continue
    raise AssertionError("unreachable: no curve point in 2^16 candidates")


def _kdf(base: Transcript, index: int, z: bytes, shared: Element) -> bytes:
    t = base.fork().append_int(b"index", index, 2).append(b"z", z)
    return t.append(b"shared", shared.to_bytes()).digest(b"seed")


def _read_header(r: Reader) -> bytes:
    """The binding tag and the OT count that both base-OT messages start with."""
    tag = r.fixed(32)
    if r.u16() != BASE_OT_COUNT:
        raise EncodingError("wrong number of base OTs")
    return tag


def _read_points(r: Reader, count: int) -> list[Element]:
    return [SECP256K1.deserialize_element(r.fixed(_POINT)) for _ in range(count)]


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseOtReceiverMessage:
    """Alice -> Bob at key setup: ``(r_0, r_1)`` for every base OT."""

    tag: bytes
    r0: tuple[Element, ...]
    r1: tuple[Element, ...]

    def __post_init__(self) -> None:
        if len(self.tag) != 32 or not len(self.r0) == len(self.r1) == BASE_OT_COUNT:
            raise EncodingError("base-OT receiver message has the wrong shape")

    def to_bytes(self) -> bytes:
        w = Writer().u8(FORMAT_VERSION).fixed(self.tag).u16(BASE_OT_COUNT)
        for a, b in zip(self.r0, self.r1, strict=True):
            w.fixed(SECP256K1.serialize_element(a)).fixed(SECP256K1.serialize_element(b))
        return bytes(w)

    @classmethod
    def from_bytes(cls, data: bytes, *, sender: int) -> BaseOtReceiverMessage:
        def body(r: Reader) -> BaseOtReceiverMessage:
            tag = _read_header(r)
            pts = _read_points(r, 2 * BASE_OT_COUNT)
            return cls(tag=tag, r0=tuple(pts[0::2]), r1=tuple(pts[1::2]))

        return parse_message(data, sender, "base-OT receiver message", body)


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseOtSenderMessage:
    """Bob -> Alice at key setup: the key-agreement message ``z`` of every base OT."""

    tag: bytes
    z: tuple[Element, ...]

    def __post_init__(self) -> None:
        if len(self.tag) != 32 or len(self.z) != BASE_OT_COUNT:
            raise EncodingError("base-OT sender message has the wrong shape")

    def to_bytes(self) -> bytes:
        w = Writer().u8(FORMAT_VERSION).fixed(self.tag).u16(BASE_OT_COUNT)
        for p in self.z:
            w.fixed(SECP256K1.serialize_element(p))
        return bytes(w)

    @classmethod
    def from_bytes(cls, data: bytes, *, sender: int) -> BaseOtSenderMessage:
        def body(r: Reader) -> BaseOtSenderMessage:
            tag = _read_header(r)
            return cls(tag=tag, z=tuple(_read_points(r, BASE_OT_COUNT)))

        return parse_message(data, sender, "base-OT sender message", body)


class BaseOtReceiverState:
    """Alice's secret state between sending ``(r_0, r_1)`` and receiving ``z``.

    Single use: :meth:`finish` refuses a second call.
    """

    __slots__ = ("_choices", "_ctx", "_done", "_t")

    def __init__(self, ctx: PairContext, choices: bytes, t: list[int]) -> None:
        self._ctx = ctx
        self._choices = choices
        self._t = t
        self._done = False

    def __repr__(self) -> str:
        return f"BaseOtReceiverState(alice={self._ctx.alice}, bob={self._ctx.bob}, <redacted>)"

    def finish(self, msg: BaseOtSenderMessage) -> AliceSetup:
        """Derive the chosen seeds; the result is Alice's extension setup."""
        if self._done:
            raise NonceReuseError("base-OT receiver state already used")
        ctx = self._ctx
        ctx.check_binding(msg.tag, _MSG_SENDER, ctx.bob)
        self._done = True
        kdf = ctx.transcript(_KDF_DOMAIN)
        pairs = enumerate(zip(msg.z, self._t, strict=True))
        seeds = [_kdf(kdf, i, z.to_bytes(), z * t) for i, (z, t) in pairs]
        self._t = []
        return AliceSetup(alice=ctx.alice, bob=ctx.bob, delta=self._choices, seeds=seeds)


class BaseOtSenderState:
    """Bob's secret state between sending ``z`` and receiving ``(r_0, r_1)``.

    Single use: :meth:`finish` refuses a second call.
    """

    __slots__ = ("_ctx", "_done", "_y", "_z")

    def __init__(self, ctx: PairContext, y: list[int], z: list[bytes]) -> None:
        self._ctx = ctx
        self._y = y
        self._z = z
        self._done = False

    def __repr__(self) -> str:
        return f"BaseOtSenderState(alice={self._ctx.alice}, bob={self._ctx.bob}, <redacted>)"

    def finish(self, msg: BaseOtReceiverMessage) -> BobSetup:
        """Derive both seeds of every OT; the result is Bob's extension setup."""
        if self._done:
            raise NonceReuseError("base-OT sender state already used")
        ctx = self._ctx
        ctx.check_binding(msg.tag, _MSG_RECEIVER, ctx.alice)
        self._done = True
        h2c = ctx.transcript(_H2C_DOMAIN)
        kdf = ctx.transcript(_KDF_DOMAIN)
        seeds0: list[bytes] = []
        seeds1: list[bytes] = []
        for i, (r0, r1) in enumerate(zip(msg.r0, msg.r1, strict=True)):
            m0 = r0 + _hash_to_point(h2c, i, 0, r1.to_bytes())
            m1 = r1 + _hash_to_point(h2c, i, 1, r0.to_bytes())
            seeds0.append(_kdf(kdf, i, self._z[i], m0 * self._y[i]))
            seeds1.append(_kdf(kdf, i, self._z[i], m1 * self._y[i]))
        self._y = []
        return BobSetup(alice=ctx.alice, bob=ctx.bob, seeds0=seeds0, seeds1=seeds1)


def base_ot_receiver_round1(
    ctx: PairContext, *, rand: RandomSource = system_random
) -> tuple[BaseOtReceiverState, BaseOtReceiverMessage]:
    """Alice's only message of the key setup (MR19 endemic OT, receiver side).

    Her uniformly random choice bits become the extension's Delta.
    """
    choices = rand(BASE_OT_COUNT // 8)
    bits = unpack_bits(choices, BASE_OT_COUNT).tolist()
    h2c = ctx.transcript(_H2C_DOMAIN)
    ts: list[int] = []
    r0: list[Element] = []
    r1: list[Element] = []
    for i, c in enumerate(bits):
        while True:
            t = random_scalar(rand)
            other = SECP256K1.base_mult(random_scalar(rand))
            mine = SECP256K1.base_mult(t) - _hash_to_point(h2c, i, c, other.to_bytes())
            if not mine.is_identity:
                break
        ts.append(t)
        pair = (mine, other) if c == 0 else (other, mine)
        r0.append(pair[0])
        r1.append(pair[1])
    msg = BaseOtReceiverMessage(tag=ctx.binding_tag(_MSG_RECEIVER), r0=tuple(r0), r1=tuple(r1))
    return BaseOtReceiverState(ctx, choices, ts), msg


def base_ot_sender_round1(
    ctx: PairContext, *, rand: RandomSource = system_random
) -> tuple[BaseOtSenderState, BaseOtSenderMessage]:
    """Bob's only message of the key setup (MR19 endemic OT, sender side)."""
    ys = [random_scalar(rand) for _ in range(BASE_OT_COUNT)]
    zs = [SECP256K1.base_mult(y) for y in ys]
    msg = BaseOtSenderMessage(tag=ctx.binding_tag(_MSG_SENDER), z=tuple(zs))
    return BaseOtSenderState(ctx, ys, [z.to_bytes() for z in zs]), msg
