"""Correlated OT extension F_COTe (DKLs23 Functionality 5.1) by SoftSpokenOT
(Roy, "SoftSpokenOT: Quieter OT Extension from Small-Field Silent VOLE in
the Minicrypt Model", CRYPTO 2022) with subfield dimension ``k = 1``, which
is the IKNP/KOS extension with the consistency check of Keller-Orsini-Scholl
("Actively Secure OT Extension with Optimal Overhead", CRYPTO 2015, revised
ePrint 2015/546, Fig. 10), made non-interactive by Fiat-Shamir as DKLs23
Section 5.1 prescribes.

Roles: Bob is the extension *receiver* (choice bits ``x``), Alice the
*sender* (global correlation ``Delta`` = her base-OT choice bits).  Bob
sends the one message; Alice checks it and both derive random-OT pads.

Notation (``LAMBDA_C`` base OTs, ``m' = XI + CHECK_BITS`` extended OTs):

1. Bob (``ote_receiver_extend``): fresh nonce; ``x = beta || x_pad`` with
   ``CHECK_BITS`` random padding bits; for every base OT ``i``
   ``t_i = G(k0_i)``, ``u_i = t_i XOR G(k1_i) XOR x`` (columns of ``m'``
   bits; ``G`` is keyed by a transcript digest over session, pair and
   nonce).
2. Bob, consistency check (KOS15 Fig. 10 "Check correlation", SoftSpokenOT
   Fig. "subspace VOLE consistency check"): challenges ``chi_0..chi_3`` in
   GF(2^128) from the transcript of ``u`` (Fiat-Shamir); the universal hash
   ``h(y) = sum_b chi_b * y_b + y_4`` over the 128-bit blocks ``y_b`` of a
   column; Bob sends ``x~ = h(x)`` and ``t~_i = h(t_i)``.
3. Alice (``ote_sender_extend``): ``q_i = G(k_{Delta_i}) XOR Delta_i * u_i``
   (``= t_i XOR Delta_i * x``); she checks ``h(q_i) = t~_i XOR Delta_i * x~``
   for every ``i`` and aborts naming Bob otherwise.  The padding bits make
   ``x~`` reveal nothing about ``beta``.
4. Transpose: row ``j`` of ``q`` is ``q_j = t_j XOR x_j * Delta``.  Random-OT
   pads (correlation-robust hash = random oracle): Alice
   ``v0_j = H(j, q_j)``, ``v1_j = H(j, q_j XOR Delta)``; Bob
   ``v_{x_j} = H(j, t_j)``, each expanded to ``OT_WIDTH`` scalars mod q.
   ``G`` and ``H`` are SHAKE-128 (security level LAMBDA_C = 128) keyed by
   transcript digests over fixed-length inputs.
   ``H`` is keyed by the session, both nonces (Alice's travels with her
   reply) and the digest of Bob's message, so pads never repeat even if a
   caller reuses a session id.

A receiver who fails the check has deviated (or its base OTs did): the
error names Bob.  Whether a corrupted column passes reveals the matching bit
of Delta, so the node must refuse every later session with Bob
(:func:`~signer_nodes.mpc.dkls23.faults.peers_to_exclude`); re-running the
base OTs with him (a refresh) would only let him start over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from signer_nodes.mpc.dkls23.context import (
    FORMAT_VERSION,
    PairContext,
    RandomSource,
    parse_message,
    system_random,
)
from signer_nodes.mpc.dkls23.params import (
    BASE_OT_COUNT,
    CHECK_BITS,
    CHECK_BLOCKS,
    COLUMN_BYTES,
    NONCE_BYTES,
    OT_WIDTH,
    PAD_SCALAR_BYTES,
    ROW_BYTES,
    XI,
)
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EncodingError, LocalMisuseError, OtConsistencyError
from signer_nodes.mpc.groups.secp256k1 import ORDER

U8Array = npt.NDArray[np.uint8]

_PRG_DOMAIN = b"dkls23/softspoken-k1/v1/prg"
_CHI_DOMAIN = b"dkls23/softspoken-k1/v1/check"
_PAD_DOMAIN = b"dkls23/softspoken-k1/v1/randomize"
MSG_OTE = b"ote/receiver-message"

_GF128_REDUCTION = (1 << 128) | 0x87  # X^128 + X^7 + X^2 + X + 1
_CHECK_BYTES = CHECK_BITS // 8
_PAD_BYTES = OT_WIDTH * PAD_SCALAR_BYTES
_PAD_SHIFT1 = 8 * PAD_SCALAR_BYTES
_PAD_SHIFT2 = 16 * PAD_SCALAR_BYTES
_PAD_MASK = (1 << _PAD_SHIFT1) - 1
assert OT_WIDTH == 3, "raw_pads is written for ELL = 2, RHO = 1"


# ---------------------------------------------------------------- bit tools


def unpack_bits(data: bytes, count: int) -> U8Array:
    """Bits of ``data``, little-endian within each byte (bit ``j`` is
    ``data[j // 8] >> (j % 8) & 1``)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    return np.unpackbits(arr, bitorder="little")[:count]


def _prg(prefix: bytes, seeds: Sequence[bytes]) -> U8Array:
    """Columns ``G(seed_i)`` of ``m'`` bits: SHAKE-128 keyed by ``prefix``
    (a transcript digest) over the fixed-length ``(i, seed_i)``."""
    base = hashlib.shake_128(prefix)
    out = bytearray()
    for i, seed in enumerate(seeds):
        h = base.copy()
        h.update(i.to_bytes(2, "big") + seed)
        out += h.digest(COLUMN_BYTES)
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(len(seeds), COLUMN_BYTES)


def _gf128_mul_rows(chi: int) -> list[int]:
    """``chi * X^i`` for ``i < 128``: the matrix of ``y -> y * chi`` in GF(2^128)."""
    rows = []
    v = chi
    for _ in range(CHECK_BITS):
        rows.append(v)
        v <<= 1
        if v >> CHECK_BITS:
            v ^= _GF128_REDUCTION
    return rows


def _hash_tables(chis: Sequence[int]) -> npt.NDArray[np.uint64]:
    """The universal hash ``h`` of step 2 as byte-indexed lookup tables.

    ``h`` is GF(2)-linear: bit ``p`` of a column contributes row ``R_p`` of
    its matrix (``R_{128b+i} = chi_b * X^i``; the last block is the identity).
    Grouping the rows by column byte gives ``COLUMN_BYTES`` tables of 256
    XOR-combinations, so hashing a column is one lookup per byte.
    """
    ints: list[int] = []
    for chi in chis:
        ints.extend(_gf128_mul_rows(chi))
    ints.extend(1 << i for i in range(CHECK_BITS))  # the unhashed mask block
    buf = b"".join(v.to_bytes(_CHECK_BYTES, "little") for v in ints)
    # 16-byte rows as two little-endian 64-bit words (XOR is word-wise),
    # laid out byte-value-major so every step below is contiguous
    rows = np.frombuffer(buf, dtype="<u8").reshape(COLUMN_BYTES, 8, 2).transpose(1, 0, 2)
    tables = np.zeros((256, COLUMN_BYTES, 2), dtype="<u8")
    for bit in range(8):
        lo = 1 << bit
        tables[lo : 2 * lo] = tables[:lo] ^ rows[bit][None]
    return tables.reshape(256 * COLUMN_BYTES, 2)


_BYTE_OFFSET = np.arange(COLUMN_BYTES, dtype=np.intp)[:, None]


def _hash_columns(cols: U8Array, tables: npt.NDArray[np.uint64]) -> U8Array:
    """``h`` applied to every column (each a row of ``cols``), as 16 bytes each."""
    index = cols.T.astype(np.intp) * COLUMN_BYTES + _BYTE_OFFSET
    words = np.bitwise_xor.reduce(np.take(tables, index, axis=0), axis=0)
    out: U8Array = np.ascontiguousarray(words.astype("<u8")).view(np.uint8)
    return out


def _transpose_rows(cols: U8Array) -> U8Array:
    """Rows ``0..XI-1`` of the ``LAMBDA_C x m'`` bit matrix whose columns are given."""
    bits = np.unpackbits(cols[:, : XI // 8], axis=1, bitorder="little")
    return np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little")


def _check_challenges(ctx: PairContext, nonce: bytes, u: bytes) -> tuple[list[int], bytes]:
    """Fiat-Shamir challenges of the consistency check and the digest of the
    extension transcript (session, pair, Bob's nonce, ``u``)."""
    t = ctx.transcript(_CHI_DOMAIN).append(b"bob-nonce", nonce).append(b"u", u)
    chis = [
        int.from_bytes(t.digest(b"chi-" + bytes([b]))[:_CHECK_BYTES], "little")
        for b in range(CHECK_BLOCKS)
    ]
    return chis, t.digest(b"ote-transcript")


def pad_prefix(ctx: PairContext, ote_digest: bytes, alice_nonce: bytes) -> bytes:
    """Key of the pad hash ``H`` (step 4)."""
    t = ctx.transcript(_PAD_DOMAIN).append(b"ote-transcript", ote_digest)
    return t.append(b"alice-nonce", alice_nonce).digest(b"pad-key")


def raw_pads(prefix: bytes, rows: U8Array) -> tuple[list[int], list[int], list[int]]:
    """``H(j, row_j)`` for every row as ``OT_WIDTH`` = 3 unreduced 384-bit
    integers, returned column-wise (``pads[w][j]``); reduce mod q before use.

    ``H`` is SHAKE-128 (one Keccak block per row) keyed by ``prefix`` over
    the fixed-length ``(j, row_j)``.
    """
    n = len(rows)
    framed = np.empty((n, 2 + ROW_BYTES), dtype=np.uint8)
    framed[:, 0] = np.arange(n) >> 8
    framed[:, 1] = np.arange(n) & 0xFF
    framed[:, 2:] = rows
    data = framed.tobytes()
    step = 2 + ROW_BYTES
    base = hashlib.shake_128(prefix)
    c0: list[int] = []
    c1: list[int] = []
    c2: list[int] = []
    mask = _PAD_MASK
    for o in range(0, n * step, step):
        h = base.copy()
        h.update(data[o : o + step])
        v = int.from_bytes(h.digest(_PAD_BYTES), "big")
        c0.append(v >> _PAD_SHIFT2)
        c1.append((v >> _PAD_SHIFT1) & mask)
        c2.append(v & mask)
    return c0, c1, c2


# ---------------------------------------------------------------- messages


class OtExtensionMessage:
    """Bob -> Alice: the extension matrix ``u`` and the check values.

    This is also pi_RVOLE's first message (DKLs23 signing round 1).
    """

    __slots__ = ("nonce", "t_check", "tag", "u", "x_check")

    def __init__(
        self, *, tag: bytes, nonce: bytes, u: bytes, x_check: bytes, t_check: bytes
    ) -> None:
        if (
            len(tag) != 32
            or len(nonce) != NONCE_BYTES
            or len(u) != BASE_OT_COUNT * COLUMN_BYTES
            or len(x_check) != _CHECK_BYTES
            or len(t_check) != BASE_OT_COUNT * _CHECK_BYTES
        ):
            raise EncodingError("OT-extension message has the wrong shape")
        self.tag = bytes(tag)
        self.nonce = bytes(nonce)
        self.u = bytes(u)
        self.x_check = bytes(x_check)
        self.t_check = bytes(t_check)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OtExtensionMessage):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"OtExtensionMessage(tag={self.tag.hex()[:16]}..., {len(self.to_bytes())} bytes)"

    def to_bytes(self) -> bytes:
        w = Writer().u8(FORMAT_VERSION).fixed(self.tag).fixed(self.nonce)
        return bytes(w.fixed(self.u).fixed(self.x_check).fixed(self.t_check))

    @classmethod
    def from_bytes(cls, data: bytes, *, sender: int) -> OtExtensionMessage:
        def body(r: Reader) -> OtExtensionMessage:
            return cls(
                tag=r.fixed(32),
                nonce=r.fixed(NONCE_BYTES),
                u=r.fixed(BASE_OT_COUNT * COLUMN_BYTES),
                x_check=r.fixed(_CHECK_BYTES),
                t_check=r.fixed(BASE_OT_COUNT * _CHECK_BYTES),
            )

        return parse_message(data, sender, "OT-extension message", body)


# ---------------------------------------------------------------- receiver


class OteReceiverBatch:
    """Bob's secret outcome of one extension: his choice bits ``x_j`` and the
    rows ``t_j`` (``j < XI``); the pads follow once Alice's nonce arrives."""

    __slots__ = ("choices", "ctx", "nonce", "ote_digest", "rows")

    def __init__(
        self, *, ctx: PairContext, nonce: bytes, ote_digest: bytes, choices: bytes, rows: bytes
    ) -> None:
        if (
            len(nonce) != NONCE_BYTES
            or len(ote_digest) != 32
            or len(choices) != XI // 8
            or len(rows) != XI * ROW_BYTES
        ):
            raise EncodingError("OT-extension receiver batch has the wrong shape")
        self.ctx = ctx
        self.nonce = nonce
        self.ote_digest = ote_digest
        self.choices = choices
        self.rows = rows

    def __repr__(self) -> str:
        return f"OteReceiverBatch(alice={self.ctx.alice}, bob={self.ctx.bob}, <redacted>)"

    def choice_bits(self) -> U8Array:
        return unpack_bits(self.choices, XI)

    def raw_pads(self, alice_nonce: bytes) -> tuple[list[int], list[int], list[int]]:
        """``v_{x_j}`` for every ``j``, unreduced, column-wise (see :func:`raw_pads`)."""
        rows = np.frombuffer(self.rows, dtype=np.uint8).reshape(XI, ROW_BYTES)
        return raw_pads(pad_prefix(self.ctx, self.ote_digest, alice_nonce), rows)

    def pads(self, alice_nonce: bytes) -> list[tuple[int, ...]]:
        """Random-OT output ``v_{x_j}`` in ``Z_q^OT_WIDTH`` for every ``j < XI``."""
        cols = self.raw_pads(alice_nonce)
        return [tuple(c[j] % ORDER for c in cols) for j in range(XI)]


def ote_receiver_extend(
    setup: BobSetup, ctx: PairContext, choices: bytes, *, rand: RandomSource = system_random
) -> tuple[OteReceiverBatch, OtExtensionMessage]:
    """Steps 1-2 (Bob): extend to ``XI`` OTs with the packed ``choices``."""
    if (setup.alice, setup.bob) != (ctx.alice, ctx.bob):
        raise LocalMisuseError("setup belongs to another pair")
    if len(choices) != XI // 8:
        raise LocalMisuseError(f"expected {XI} packed choice bits")
    nonce = rand(NONCE_BYTES)
    x = np.frombuffer(bytes(choices) + rand(_CHECK_BYTES), dtype=np.uint8)
    prefix = ctx.transcript(_PRG_DOMAIN).append(b"bob-nonce", nonce).digest(b"prg-key")
    t = _prg(prefix, setup.seeds0)
    u = (t ^ _prg(prefix, setup.seeds1) ^ x).tobytes()
    chis, ote_digest = _check_challenges(ctx, nonce, u)
    tables = _hash_tables(chis)
    t_check = _hash_columns(t, tables).tobytes()
    x_check = _hash_columns(x.reshape(1, -1), tables).tobytes()
    msg = OtExtensionMessage(
        tag=ctx.binding_tag(MSG_OTE), nonce=nonce, u=u, x_check=x_check, t_check=t_check
    )
    batch = OteReceiverBatch(
        ctx=ctx,
        nonce=nonce,
        ote_digest=ote_digest,
        choices=bytes(choices),
        rows=_transpose_rows(t).tobytes(),
    )
    return batch, msg


# ---------------------------------------------------------------- sender


class OteSenderBatch:
    """Alice's secret outcome of one extension: rows ``q_j`` and ``Delta``."""

    __slots__ = ("ctx", "delta", "ote_digest", "rows")

    def __init__(self, *, ctx: PairContext, delta: bytes, ote_digest: bytes, rows: U8Array) -> None:
        self.ctx = ctx
        self.delta = delta
        self.ote_digest = ote_digest
        self.rows = rows

    def __repr__(self) -> str:
        return f"OteSenderBatch(alice={self.ctx.alice}, bob={self.ctx.bob}, <redacted>)"

    def raw_pads(
        self, alice_nonce: bytes
    ) -> tuple[tuple[list[int], list[int], list[int]], tuple[list[int], list[int], list[int]]]:
        """``(v0, v1)``, unreduced and column-wise (see :func:`raw_pads`)."""
        prefix = pad_prefix(self.ctx, self.ote_digest, alice_nonce)
        delta = np.frombuffer(self.delta, dtype=np.uint8)
        return raw_pads(prefix, self.rows), raw_pads(prefix, self.rows ^ delta)

    def pads(self, alice_nonce: bytes) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
        """Random-OT outputs ``(v0_j, v1_j)`` in ``Z_q^OT_WIDTH`` for ``j < XI``."""
        p0, p1 = self.raw_pads(alice_nonce)

        def reduce(cols: tuple[list[int], ...]) -> list[tuple[int, ...]]:
            return [tuple(c[j] % ORDER for c in cols) for j in range(XI)]

        return reduce(p0), reduce(p1)


def ote_sender_extend(
    setup: AliceSetup, ctx: PairContext, msg: OtExtensionMessage
) -> OteSenderBatch:
    """Steps 3-4 (Alice): verify Bob's message and derive the rows ``q_j``.

    Raises :class:`~signer_nodes.mpc.errors.ForeignSessionError` for a message
    bound to another session or pair and
    :class:`~signer_nodes.mpc.errors.OtConsistencyError` when the check of
    KOS15 Fig. 10 fails; both name Bob.
    """
    if (setup.alice, setup.bob) != (ctx.alice, ctx.bob):
        raise LocalMisuseError("setup belongs to another pair")
    ctx.check_binding(msg.tag, MSG_OTE, ctx.bob)
    prefix = ctx.transcript(_PRG_DOMAIN).append(b"bob-nonce", msg.nonce).digest(b"prg-key")
    s = _prg(prefix, setup.seeds)
    u = np.frombuffer(msg.u, dtype=np.uint8).reshape(BASE_OT_COUNT, COLUMN_BYTES)
    delta_bits = unpack_bits(setup.delta, BASE_OT_COUNT)
    mask = (delta_bits * np.uint8(0xFF)).astype(np.uint8)[:, None]
    q = s ^ (u & mask)
    chis, ote_digest = _check_challenges(ctx, msg.nonce, msg.u)
    got = _hash_columns(q, _hash_tables(chis))
    t_check = np.frombuffer(msg.t_check, dtype=np.uint8).reshape(BASE_OT_COUNT, _CHECK_BYTES)
    x_check = np.frombuffer(msg.x_check, dtype=np.uint8)
    expected = t_check ^ (x_check[None, :] & mask)
    if not np.array_equal(got, expected):
        raise OtConsistencyError(
            "OT-extension consistency check (KOS15 Fig. 10 / SoftSpokenOT) failed", [ctx.bob]
        )
    rows = _transpose_rows(q)
    return OteSenderBatch(ctx=ctx, delta=setup.delta, ote_digest=ote_digest, rows=rows)
