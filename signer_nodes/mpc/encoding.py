"""Length-prefixed, versionless byte encodings for protocol payloads.

Every payload the cores exchange is built with :class:`Writer` and parsed with
:class:`Reader`. The format is deliberately tiny: unsigned big-endian integers
of fixed width and byte strings prefixed by a 4-byte length. A :class:`Reader`
that is not consumed exactly raises, so trailing garbage is never accepted.
Decoding failures raise :class:`~signer_nodes.mpc.errors.EncodingError`; the
caller turns that into a remote error naming the sender.
"""

from __future__ import annotations

from signer_nodes.mpc.errors import EncodingError

MAX_FIELD = 1 << 24


class Writer:
    """Accumulates fields; ``bytes()`` gives the encoding."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> Writer:
        self._parts.append(value.to_bytes(1, "big"))
        return self

    def u16(self, value: int) -> Writer:
        self._parts.append(value.to_bytes(2, "big"))
        return self

    def u32(self, value: int) -> Writer:
        self._parts.append(value.to_bytes(4, "big"))
        return self

    def fixed(self, data: bytes) -> Writer:
        """Raw bytes whose length the reader knows in advance."""
        self._parts.append(bytes(data))
        return self

    def var(self, data: bytes) -> Writer:
        """Bytes prefixed with their 4-byte length."""
        self._parts.append(len(data).to_bytes(4, "big"))
        self._parts.append(bytes(data))
        return self

    def __bytes__(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Parses fields in order; :meth:`finish` insists nothing is left over."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise EncodingError("truncated payload")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def fixed(self, n: int) -> bytes:
        return self._take(n)

    def var(self, limit: int = MAX_FIELD) -> bytes:
        n = self.u32()
        if n > limit:
            raise EncodingError("field longer than allowed")
        return self._take(n)

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise EncodingError("trailing bytes after payload")
