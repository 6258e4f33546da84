"""An in-process network that runs N sans-I/O parties against each other.

Used by the tests, the benchmarks and the in-process demo. Hostile behaviour
is injected per sending party through a ``tamper`` hook that sees every
delivery (envelope, recipient) and returns what is actually delivered:
nothing (drop), an altered copy, several copies (replay), or different
payloads for different recipients (equivocation). The same cores run over
gRPC in the node process; only the transport differs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from signer_nodes.mpc.errors import MpcError, RemoteProtocolError
from signer_nodes.mpc.session import Envelope, RoundBasedParty

Tamper = Callable[[Envelope, int], list[Envelope]]


@dataclass
class SimulationResult:
    outputs: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, list[MpcError]] = field(default_factory=dict)
    aborted: dict[int, RemoteProtocolError] = field(default_factory=dict)
    bytes_sent: int = 0
    messages_sent: int = 0

    def culprits(self) -> set[int]:
        """Every party named by any error any party raised."""
        named: set[int] = set()
        for errs in self.errors.values():
            for e in errs:
                if isinstance(e, RemoteProtocolError):
                    named |= e.culprits
        return named


def run_protocol(
    parties: Mapping[int, RoundBasedParty],
    *,
    tamper: Mapping[int, Tamper] | None = None,
    max_deliveries: int = 1_000_000,
) -> SimulationResult:
    """Start every party and deliver messages until the network is quiet."""
    tamper = tamper or {}
    result = SimulationResult()
    queue: deque[Envelope] = deque()
    for pid, party in parties.items():
        try:
            queue.extend(party.start())
        except MpcError as exc:
            result.errors.setdefault(pid, []).append(exc)
    deliveries = 0
    while queue:
        env = queue.popleft()
        result.messages_sent += 1
        result.bytes_sent += len(env.payload)
        recipients = (
            [env.recipient]
            if env.recipient is not None
            else [p for p in parties if p != env.sender]
        )
        for rcpt in recipients:
            if rcpt not in parties:
                continue
            hook = tamper.get(env.sender)
            for delivered in hook(env, rcpt) if hook else [env]:
                deliveries += 1
                if deliveries > max_deliveries:
                    raise RuntimeError("simulation did not settle")
                try:
                    queue.extend(parties[rcpt].receive(delivered))
                except MpcError as exc:
                    result.errors.setdefault(rcpt, []).append(exc)
    for pid, party in parties.items():
        if party.aborted is not None:
            result.aborted[pid] = party.aborted
        elif party.finished:
            result.outputs[pid] = party.output
    return result
