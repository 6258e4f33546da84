"""Envelopes, the message router, and the round-based party base class.

Every protocol core is a :class:`RoundBasedParty`: ``start()`` returns the
first outgoing envelopes, ``receive(envelope)`` returns what the party sends
in reply, and ``output`` is the result once ``finished``. There is no I/O,
clock or storage inside; the node process (or the simulated network) moves
envelopes around.

:class:`MessageRouter` is the one place that checks every received message
for session, protocol, round, sender, recipient and duplicates (the
"rounds declared up front, one store rejects duplicate and unknown senders"
design of the ``round-based`` crate). Messages for a later round are kept
until the party reaches it.

Fault handling: a message that is merely unacceptable (another session, an
unknown round or sender, an identical replay) is refused with a named
:class:`~signer_nodes.mpc.errors.RemoteProtocolError` and the session goes
on, since a relay can inject such messages. A deviation that poisons the
session (equivocation, a bad proof, share or encoding) aborts it: the party
raises, keeps the error in ``aborted``, and refuses all further input, so it
never produces output from a session in which someone cheated.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import (
    DuplicateMessageError,
    EncodingError,
    EquivocationError,
    ForeignSessionError,
    InvalidMessageError,
    LocalMisuseError,
    RemoteProtocolError,
    SessionAbortedError,
    UnexpectedMessageError,
)
from signer_nodes.mpc.transcript import Transcript

SESSION_ID_LEN = 32
MAX_PAYLOAD = 1 << 22


@dataclass(frozen=True, slots=True)
class Envelope:
    """One protocol message. ``recipient`` is None for a broadcast.

    Over the wire the node layer signs the envelope with the sender's
    identity key and encrypts point-to-point payloads to the recipient; the
    cores only see authenticated envelopes.
    """

    session_id: bytes
    protocol: str
    round: int
    sender: int
    recipient: int | None
    payload: bytes

    @property
    def is_broadcast(self) -> bool:
        return self.recipient is None

    def digest(self) -> bytes:
        """Binds every field; used by echo checks."""
        t = Transcript(b"envelope")
        t.append(b"session", self.session_id).append(b"protocol", self.protocol.encode())
        t.append_int(b"round", self.round).append_int(b"sender", self.sender)
        t.append(
            b"recipient", b"*" if self.recipient is None else self.recipient.to_bytes(2, "big")
        )
        return t.append(b"payload", self.payload).digest()

    def to_bytes(self) -> bytes:
        return bytes(
            Writer()
            .fixed(b"ENV")
            .u8(1)
            .fixed(self.session_id)
            .var(self.protocol.encode())
            .u16(self.round)
            .u16(self.sender)
            .u8(0 if self.recipient is None else 1)
            .u16(self.recipient or 0)
            .var(self.payload)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        r = Reader(data)
        if r.fixed(3) != b"ENV" or r.u8() != 1:
            raise EncodingError("not a version-1 envelope")
        session_id = r.fixed(SESSION_ID_LEN)
        protocol = r.var(64).decode("ascii", errors="strict")
        round_, sender, has_recipient, recipient = r.u16(), r.u16(), r.u8(), r.u16()
        payload = r.var(MAX_PAYLOAD)
        r.finish()
        if has_recipient not in (0, 1):
            raise EncodingError("bad recipient flag")
        return cls(
            session_id, protocol, round_, sender, recipient if has_recipient else None, payload
        )


@dataclass(frozen=True, slots=True)
class RoundSpec:
    """A round this party receives: its number, whether it is a broadcast,
    and who must send in it."""

    number: int
    broadcast: bool
    senders: frozenset[int]


class MessageRouter:
    """Validates and stores incoming envelopes by round and sender."""

    def __init__(
        self, session_id: bytes, protocol: str, self_id: int, rounds: Iterable[RoundSpec]
    ) -> None:
        if len(session_id) != SESSION_ID_LEN:
            raise LocalMisuseError("session ids are 32 bytes")
        self.session_id = session_id
        self.protocol = protocol
        self.self_id = self_id
        self._specs = {spec.number: spec for spec in rounds}
        self._store: dict[int, dict[int, Envelope]] = {n: {} for n in self._specs}

    def accept(self, env: Envelope) -> None:
        if env.session_id != self.session_id or env.protocol != self.protocol:
            raise ForeignSessionError(
                f"message for session {env.session_id.hex()[:16]}/{env.protocol}", [env.sender]
            )
        spec = self._specs.get(env.round)
        if spec is None:
            raise UnexpectedMessageError(f"no round {env.round} in {self.protocol}", [env.sender])
        if env.sender not in spec.senders or env.sender == self.self_id:
            raise UnexpectedMessageError(
                f"party {env.sender} does not send in round {env.round}", [env.sender]
            )
        if spec.broadcast != env.is_broadcast or (
            not spec.broadcast and env.recipient != self.self_id
        ):
            raise UnexpectedMessageError(
                f"wrong delivery kind or recipient in round {env.round}", [env.sender]
            )
        if len(env.payload) > MAX_PAYLOAD:
            raise InvalidMessageError("payload too large", [env.sender])
        seen = self._store[env.round].get(env.sender)
        if seen is not None:
            if seen.payload == env.payload:
                raise DuplicateMessageError(f"replay of round {env.round} message", [env.sender])
            raise EquivocationError(f"two different round {env.round} messages", [env.sender])
        self._store[env.round][env.sender] = env

    def complete(self, round_: int) -> bool:
        return len(self._store[round_]) == len(self._specs[round_].senders)

    def messages(self, round_: int) -> dict[int, Envelope]:
        if not self.complete(round_):
            raise LocalMisuseError(f"round {round_} is not complete")
        return dict(sorted(self._store[round_].items()))


class RoundBasedParty(ABC):
    """Base of every protocol core: a sans-I/O state machine over envelopes."""

    protocol: ClassVar[str]

    def __init__(self, session_id: bytes, self_id: int, rounds: Sequence[RoundSpec]) -> None:
        self.session_id = session_id
        self.self_id = self_id
        self.router = MessageRouter(session_id, self.protocol, self_id, rounds)
        self._awaiting: list[int] = [spec.number for spec in sorted(rounds, key=lambda s: s.number)]
        self._started = False
        self._output: Any = None
        self.finished = False
        self.aborted: RemoteProtocolError | None = None

    # -- the interface the transport drives ---------------------------------

    def start(self) -> list[Envelope]:
        if self._started:
            raise LocalMisuseError("session already started")
        self._started = True
        out = self._guard(self._first_messages)
        return out + self._drain()

    def receive(self, env: Envelope) -> list[Envelope]:
        if self.aborted is not None:
            raise SessionAbortedError(f"session aborted: {self.aborted.code}")
        if not self._started:
            raise LocalMisuseError("start() the session before feeding it messages")
        try:
            self.router.accept(env)
        except EquivocationError as exc:
            self.aborted = exc
            raise
        return self._drain()

    def _drain(self) -> list[Envelope]:
        """Process every round whose messages are all in, in order."""
        out: list[Envelope] = []
        while self._awaiting and self.router.complete(self._awaiting[0]):
            round_ = self._awaiting.pop(0)
            msgs = self.router.messages(round_)
            out.extend(self._guard(functools.partial(self._on_round, round_, msgs)))
        return out

    @property
    def output(self) -> Any:
        if self.aborted is not None:
            raise SessionAbortedError(f"session aborted: {self.aborted.code}")
        if not self.finished:
            raise LocalMisuseError("the session has not finished")
        return self._output

    # -- what subclasses implement ------------------------------------------

    @abstractmethod
    def _first_messages(self) -> list[Envelope]: ...

    @abstractmethod
    def _on_round(self, round_: int, messages: dict[int, Envelope]) -> list[Envelope]:
        """Process a complete round; return outgoing envelopes."""

    # -- helpers -------------------------------------------------------------

    def _finish(self, output: Any) -> None:
        self._output = output
        self.finished = True

    def _guard(self, step: Any) -> list[Envelope]:
        try:
            result: list[Envelope] = step()
            return result
        except RemoteProtocolError as exc:
            self.aborted = exc
            raise

    def _envelope(self, round_: int, payload: bytes, recipient: int | None = None) -> Envelope:
        return Envelope(self.session_id, self.protocol, round_, self.self_id, recipient, payload)


def decode_from(sender: int, parse: Any, *args: Any) -> Any:
    """Run ``parse(*args)``; a decoding failure becomes InvalidMessageError naming ``sender``."""
    try:
        return parse(*args)
    except (EncodingError, ValueError) as exc:
        raise InvalidMessageError(f"undecodable payload: {exc}", [sender]) from exc
