"""Exceptions of the protocol cores, split by fault.

Following h11's split between local misuse and remote misbehaviour, every error
says whose fault it is:

* :class:`LocalMisuseError` -- this process called the core wrongly (reused a
  nonce, fed a message after the session ended, asked for an output too early).
* :class:`RemoteProtocolError` -- another party deviated from the protocol. It
  carries ``culprits`` (the party identifiers to blame) and a stable ``code``
  that logs, metrics and the gRPC edge use verbatim.

Messages never contain secret material: only identifiers, round numbers and
public values' lengths.
"""

from __future__ import annotations

from collections.abc import Iterable


class MpcError(Exception):
    """Base class of every error raised by ``signer_nodes.mpc``."""

    code = "MPC_ERROR"


class LocalMisuseError(MpcError):
    """The local caller used the API wrongly; no remote party is at fault."""

    code = "LOCAL_MISUSE"


class NonceReuseError(LocalMisuseError):
    """A single-use secret (signing nonce, presignature) was used a second time."""

    code = "NONCE_REUSE"


class SessionAbortedError(LocalMisuseError):
    """The session already aborted; it accepts no further input."""

    code = "SESSION_ABORTED"


class EncodingError(MpcError):
    """Bytes that do not decode to a valid value (non-canonical, identity, out of range)."""

    code = "INVALID_ENCODING"


class RemoteProtocolError(MpcError):
    """Another party deviated from the protocol; ``culprits`` names who."""

    code = "PROTOCOL_VIOLATION"

    def __init__(self, message: str, culprits: Iterable[int]) -> None:
        self.culprits: frozenset[int] = frozenset(culprits)
        names = ", ".join(str(c) for c in sorted(self.culprits)) or "unknown"
        super().__init__(f"{self.code}: {message} (culprits: {names})")


class InvalidMessageError(RemoteProtocolError):
    """A payload failed to decode or has the wrong shape (length, count, type)."""

    code = "INVALID_MESSAGE"


class ForeignSessionError(RemoteProtocolError):
    """A message carries another session's id or another protocol's name."""

    code = "FOREIGN_SESSION"


class UnexpectedMessageError(RemoteProtocolError):
    """A message for an unknown round, from an unknown sender, or to someone else."""

    code = "UNEXPECTED_MESSAGE"


class DuplicateMessageError(RemoteProtocolError):
    """A second, identical copy of a message already accepted (replay)."""

    code = "DUPLICATE_MESSAGE"


class EquivocationError(RemoteProtocolError):
    """A sender sent two different messages for the same round, or different
    broadcasts to different parties (caught by the echo check)."""

    code = "EQUIVOCATION"


class InvalidProofError(RemoteProtocolError):
    """A zero-knowledge proof (e.g. the DKG proof of knowledge) does not verify."""

    code = "INVALID_PROOF"


class InvalidShareError(RemoteProtocolError):
    """A secret share does not match its sender's public commitment (VSS check)."""

    code = "INVALID_SHARE"


class InvalidCommitmentError(RemoteProtocolError):
    """A commitment has the wrong length, an illegal element, or fails to open."""

    code = "INVALID_COMMITMENT"


class InvalidSignatureShareError(RemoteProtocolError):
    """A signature share fails verification at aggregation (RFC 9591 section 5.4)."""

    code = "INVALID_SIGNATURE_SHARE"


class OtConsistencyError(RemoteProtocolError):
    """The OT-extension receiver failed the extension's consistency check
    (KOS15 Fig. 10 / SoftSpokenOT); the pair's base-OT setup must be retired."""

    code = "OT_CONSISTENCY"


class MultiplicationCheckError(RemoteProtocolError):
    """The two-party multiplication's check (DKLs23 Protocol 5.2, pi_RVOLE)
    failed: the OT sender's correlation is inconsistent."""

    code = "RVOLE_CONSISTENCY"


class Dkls23ConsistencyError(RemoteProtocolError):
    """A DKLs23 signing consistency check failed (ePrint 2023/765, Protocol
    3.6 step 8: ``chi * R_j == Gamma^u + d^u * G``, ``chi * pk_j == Gamma^v +
    d^v * G``, ``sum_j pk_j == pk``).  The pairwise checks name the sender;
    the sum check cannot attribute (``culprits`` is empty): abort only."""

    code = "DKLS23_CONSISTENCY"


class SignatureAbortError(RemoteProtocolError):
    """The combined ECDSA signature does not verify (DKLs23 Protocol 3.6
    step 10).  The paper guarantees abort here, not attribution: ``culprits``
    is empty, and no signature is released."""

    code = "ECDSA_ABORT"
