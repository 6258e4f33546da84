"""The per-pair key setup that the base OTs produce and every OT extension
of that ordered pair reuses (base OTs once, at key generation; the
Fiat-Shamir SoftSpokenOT extension of DKLs23 Section 5.1 per signature).

:class:`AliceSetup` belongs to the OT-extension sender: her random choice
bits Delta (one per base OT) and the seed she received in each base OT.
:class:`BobSetup` belongs to the OT-extension receiver: both seeds of each
base OT.  Both are long-term secrets stored with the key share; they redact
themselves and serialise with a version byte.
"""

from __future__ import annotations

from collections.abc import Sequence

from signer_nodes.mpc.dkls23.context import FORMAT_VERSION
from signer_nodes.mpc.dkls23.params import BASE_OT_COUNT, SEED_BYTES
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EncodingError, LocalMisuseError

_KIND_ALICE = 0xA1
_KIND_BOB = 0xB0


def _check_seeds(seeds: Sequence[bytes]) -> tuple[bytes, ...]:
    out = tuple(seeds)
    if len(out) != BASE_OT_COUNT or any(
        not isinstance(s, bytes) or len(s) != SEED_BYTES for s in out
    ):
        raise LocalMisuseError(f"expected {BASE_OT_COUNT} seeds of {SEED_BYTES} bytes")
    return out


def _header(kind: int, alice: int, bob: int) -> Writer:
    return Writer().u8(FORMAT_VERSION).u8(kind).u32(alice).u32(bob)


def _read_header(data: bytes, kind: int) -> tuple[Reader, int, int]:
    r = Reader(data)
    if r.u8() != FORMAT_VERSION:
        raise EncodingError("dkls23 setup: unknown format version")
    if r.u8() != kind:
        raise EncodingError("dkls23 setup: wrong record kind")
    return r, r.u32(), r.u32()


class AliceSetup:
    """OT-extension sender's setup: Delta and the chosen base-OT seeds."""

    __slots__ = ("alice", "bob", "delta", "seeds")

    def __init__(self, *, alice: int, bob: int, delta: bytes, seeds: Sequence[bytes]) -> None:
        if len(delta) != BASE_OT_COUNT // 8:
            raise LocalMisuseError("delta must hold one bit per base OT")
        self.alice = alice
        self.bob = bob
        self.delta = bytes(delta)
        self.seeds = _check_seeds(seeds)

    def __repr__(self) -> str:
        return f"AliceSetup(alice={self.alice}, bob={self.bob}, <redacted>)"

    def to_bytes(self) -> bytes:
        w = _header(_KIND_ALICE, self.alice, self.bob).fixed(self.delta)
        for s in self.seeds:
            w.fixed(s)
        return bytes(w)

    @classmethod
    def from_bytes(cls, data: bytes) -> AliceSetup:
        r, alice, bob = _read_header(data, _KIND_ALICE)
        delta = r.fixed(BASE_OT_COUNT // 8)
        seeds = [r.fixed(SEED_BYTES) for _ in range(BASE_OT_COUNT)]
        r.finish()
        return cls(alice=alice, bob=bob, delta=delta, seeds=seeds)


class BobSetup:
    """OT-extension receiver's setup: both seeds of every base OT."""

    __slots__ = ("alice", "bob", "seeds0", "seeds1")

    def __init__(
        self, *, alice: int, bob: int, seeds0: Sequence[bytes], seeds1: Sequence[bytes]
    ) -> None:
        self.alice = alice
        self.bob = bob
        self.seeds0 = _check_seeds(seeds0)
        self.seeds1 = _check_seeds(seeds1)

    def __repr__(self) -> str:
        return f"BobSetup(alice={self.alice}, bob={self.bob}, <redacted>)"

    def to_bytes(self) -> bytes:
        w = _header(_KIND_BOB, self.alice, self.bob)
        for s0, s1 in zip(self.seeds0, self.seeds1, strict=True):
            w.fixed(s0).fixed(s1)
        return bytes(w)

    @classmethod
    def from_bytes(cls, data: bytes) -> BobSetup:
        r, alice, bob = _read_header(data, _KIND_BOB)
        s0: list[bytes] = []
        s1: list[bytes] = []
        for _ in range(BASE_OT_COUNT):
            s0.append(r.fixed(SEED_BYTES))
            s1.append(r.fixed(SEED_BYTES))
        r.finish()
        return cls(alice=alice, bob=bob, seeds0=s0, seeds1=s1)
