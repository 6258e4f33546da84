"""Building the Merkle sum tree over customer liabilities (ARCHITECTURE.md section 5).

Layout (``docs/por-format.md``, "Tree"):

* Leaves are ordered by ascending leaf hash. The leaf hash covers the customer's
  secret 32-byte salt, so a leaf's position is a pseudo-random function of data
  nobody else knows: it leaks neither the customer id, nor the balances, nor the
  ledger's insertion order, and it is reproducible from the inputs (no extra seed).
* A level with an odd number ``m > 1`` of nodes is completed with one padding node
  ``pad_hash(level, m)`` whose sums are zero (see :func:`proofs.encoding.pad_hash`).
  Every path therefore has ``ceil(log2(N))`` siblings and the tree costs at most
  ``N - 1 + log2(N)`` node hashes, where padding to a power of two would cost up to
  ``2N``.
* Each parent's sums are the element-wise sums of its children, computed in
  ``uint64`` with wrap-around detected (``a + b < a``), so no sum can reach 2^64.

Hashing is the cost (about 3 hashes per customer); the arrays are numpy so that
only the SHA-256 calls run per element in Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from proofs import encoding as enc
from proofs.errors import PorInputError, ReasonCode
from proofs.inclusion import PathNode

U8Array = npt.NDArray[np.uint8]
U64Array = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]


HASH_BLOCK = 16384


def hash_rows(rows: U8Array) -> U8Array:
    """SHA-256 of every row of an ``(m, L)`` byte matrix, as an ``(m, 32)`` matrix.

    Works in blocks of ``HASH_BLOCK`` rows so that the temporary bytes and digest
    objects stay small and reuse the same memory (cache-resident, no fresh pages).
    """
    m, width = rows.shape
    out = np.empty((m, enc.HASH_LEN), dtype=np.uint8)
    sha = hashlib.sha256
    for start in range(0, m, HASH_BLOCK):
        buf = rows[start : start + HASH_BLOCK].tobytes()
        digests = b"".join([sha(buf[i : i + width]).digest() for i in range(0, len(buf), width)])
        out[start : start + HASH_BLOCK] = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)
    return out


def sums_to_be_bytes(sums: U64Array) -> U8Array:
    """``(m, k)`` native u64 sums to the ``(m, 8k)`` big-endian byte matrix hashed in nodes."""
    return np.ascontiguousarray(sums.astype(">u8")).view(np.uint8).reshape(sums.shape[0], -1)


def fill_columns(rows: U8Array, parts: Sequence[U8Array | bytes]) -> None:
    """Write ``parts`` side by side into ``rows``: bytes are broadcast to every row."""
    col = 0
    for part in parts:
        if isinstance(part, bytes):
            width = len(part)
            rows[:, col : col + width] = np.frombuffer(part, dtype=np.uint8)
        else:
            width = part.shape[1]
            rows[:, col : col + width] = part
        col += width
    if col != rows.shape[1]:
        raise ValueError("columns do not fill the rows")


def group_by_length(raw: Sequence[bytes], lengths: IntArray) -> list[tuple[int, IntArray, U8Array]]:
    """``(length, indices, (k, length) byte matrix)`` for each distinct length in ``raw``.

    Grouping variable-length ids by length lets their hash inputs be laid out as
    fixed-width numpy rows; real ledgers have few distinct id lengths.
    """
    out = []
    for length in np.unique(lengths).tolist():
        idx = np.flatnonzero(lengths == length)
        joined = b"".join(raw) if len(idx) == len(raw) else b"".join([raw[i] for i in idx.tolist()])
        out.append((length, idx, np.frombuffer(joined, dtype=np.uint8).reshape(len(idx), length)))
    return out


def customer_hashes(customer_ids: Sequence[str], salts: bytes) -> U8Array:
    """``customer_hash`` of every customer, ``salts`` being the 32-byte salts concatenated."""
    n = len(customer_ids)
    if len(salts) != enc.SALT_LEN * n:
        raise ValueError("need one 32-byte salt per customer")
    salt_rows = np.frombuffer(salts, dtype=np.uint8).reshape(n, enc.SALT_LEN)
    out = np.empty((n, enc.HASH_LEN), dtype=np.uint8)
    for start in range(0, n, HASH_BLOCK):
        raw = [cid.encode("utf-8") for cid in customer_ids[start : start + HASH_BLOCK]]
        lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
        block_out = out[start : start + len(raw)]
        block_salts = salt_rows[start : start + len(raw)]
        for length, idx, id_rows in group_by_length(raw, lengths):
            rows = np.empty((len(idx), len(enc.TAG_CUSTOMER) + 2 + length + 32), dtype=np.uint8)
            fill_columns(rows, [enc.TAG_CUSTOMER, enc.u16(length), id_rows, block_salts[idx]])
            block_out[idx] = hash_rows(rows)
    return out


def _leaf_preimages(cust: U8Array, balances_be: U8Array) -> U8Array:
    tag = np.frombuffer(enc.TAG_LEAF, dtype=np.uint8)
    rows = np.empty((cust.shape[0], len(tag) + 32 + balances_be.shape[1]), dtype=np.uint8)
    rows[:, : len(tag)] = tag
    rows[:, len(tag) : len(tag) + 32] = cust
    rows[:, len(tag) + 32 :] = balances_be
    return rows


def _node_preimages(hashes: U8Array, sums_be: U8Array) -> U8Array:
    tag = np.frombuffer(enc.TAG_NODE, dtype=np.uint8)
    t, w = len(tag), 32 + sums_be.shape[1]
    rows = np.empty((hashes.shape[0] // 2, t + 2 * w), dtype=np.uint8)
    rows[:, :t] = tag
    rows[:, t : t + 32] = hashes[0::2]
    rows[:, t + 32 : t + w] = sums_be[0::2]
    rows[:, t + w : t + w + 32] = hashes[1::2]
    rows[:, t + w + 32 :] = sums_be[1::2]
    return rows


@dataclass(frozen=True, slots=True, eq=False)
class MerkleSumTree:
    """A built tree: per level, padded hash and big-endian sum matrices, leaves first.

    ``order[p]`` is the input row at leaf position ``p``; ``position[r]`` its inverse.
    """

    assets: tuple[str, ...]
    leaf_count: int
    hashes: tuple[U8Array, ...]
    sums_be: tuple[U8Array, ...]
    order: IntArray
    position: IntArray

    @property
    def depth(self) -> int:
        return len(self.hashes) - 1

    @property
    def root_hash(self) -> bytes:
        return bytes(self.hashes[-1][0].tobytes())

    @property
    def root_sums(self) -> tuple[int, ...]:
        return _decode_sums(self.sums_be[-1][0])

    def path(self, leaf_index: int) -> tuple[PathNode, ...]:
        """Siblings of the leaf at ``leaf_index``, leaves up."""
        out = []
        for level in range(self.depth):
            sib = (leaf_index >> level) ^ 1
            out.append(
                PathNode(
                    hash=self.hashes[level][sib].tobytes(),
                    sums=_decode_sums(self.sums_be[level][sib]),
                )
            )
        return tuple(out)

    def path_block(self, leaf_indices: IntArray) -> U8Array:
        """Paths of many leaves at once, row ``i`` = ``depth`` x (hash || sums) of leaf ``i``.

        This is the bulk proof generator: one fancy-indexing gather per level instead
        of a Python object per sibling.
        """
        width = 32 + self.sums_be[0].shape[1]
        out = np.empty((len(leaf_indices), self.depth, width), dtype=np.uint8)
        for level in range(self.depth):
            sib = (leaf_indices >> level) ^ 1
            out[:, level, :32] = self.hashes[level][sib]
            out[:, level, 32:] = self.sums_be[level][sib]
        return out.reshape(len(leaf_indices), self.depth * width)


def _decode_sums(row: U8Array) -> tuple[int, ...]:
    raw = row.tobytes()
    return tuple(int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8))


def build_tree(assets: Sequence[str], cust_hashes: U8Array, balances: U64Array) -> MerkleSumTree:
    """Build the tree over ``N`` leaves: ``cust_hashes`` ``(N, 32)``, ``balances`` ``(N, k)``.

    Raises :class:`PorInputError` ``POR_EMPTY`` for no customers and ``POR_OVERFLOW``
    when any node sum would reach 2^64.
    """
    n = cust_hashes.shape[0]
    if n == 0:
        raise PorInputError(ReasonCode.EMPTY, "no customers")
    if balances.shape != (n, len(assets)) or balances.dtype != np.uint64:
        raise ValueError("balances must be a uint64 matrix of shape (customers, assets)")
    bal_be = sums_to_be_bytes(balances)
    leaves = hash_rows(_leaf_preimages(cust_hashes, bal_be))
    # Ascending leaf hash; S32 compares fixed-width byte strings lexicographically.
    order = np.argsort(leaves.view("S32").ravel(), kind="stable").astype(np.int64)
    position = np.empty_like(order)
    position[order] = np.arange(n, dtype=np.int64)

    hashes: list[U8Array] = []
    sums_be: list[U8Array] = []
    h, s = leaves[order], balances[order]
    level, m = 0, n
    while True:
        if m > 1 and m % 2:
            pad = np.frombuffer(enc.pad_hash(level, m), dtype=np.uint8).reshape(1, 32)
            h = np.concatenate([h, pad])
            s = np.concatenate([s, np.zeros((1, s.shape[1]), dtype=np.uint64)])
        s_be = sums_to_be_bytes(s)
        hashes.append(h)
        sums_be.append(s_be)
        if m == 1:
            break
        left, right = s[0::2], s[1::2]
        parent = left + right
        wrapped = np.any(parent < left, axis=0)
        if wrapped.any():
            names = ", ".join(a for a, w in zip(assets, wrapped.tolist(), strict=True) if w)
            raise PorInputError(
                ReasonCode.OVERFLOW,
                f"the {names} total reaches 2^64 at level {level + 1};"
                " declare a larger unit for it",
            )
        h = hash_rows(_node_preimages(h, s_be))
        s = parent
        level += 1
        m = h.shape[0]
    return MerkleSumTree(
        assets=tuple(assets),
        leaf_count=n,
        hashes=tuple(hashes),
        sums_be=tuple(sums_be),
        order=order,
        position=position,
    )
