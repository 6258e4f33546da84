"""FROST signing as sans-I/O state machines over envelopes (RFC 9591 section 5).

Round 1: each signer sends its commitments to the coordinator (party 0).
Round 2: the coordinator broadcasts the signing package.
Round 3: each signer checks the package and sends its signature share.
The coordinator aggregates (sections 5.3-5.4) and outputs the signature, or
aborts naming the signers whose shares fail.

A signer given pre-generated nonces (the node's nonce pool) still sends its
commitments in round 1 so the coordinator learns which pool entry is used;
the node layer has already marked that entry consumed.
"""

from __future__ import annotations

from collections.abc import Sequence

from signer_nodes.mpc.errors import InvalidMessageError, LocalMisuseError
from signer_nodes.mpc.frost.aggregate import aggregate
from signer_nodes.mpc.frost.ciphersuite import Ciphersuite
from signer_nodes.mpc.frost.keys import KeyPackage, PublicKeyPackage
from signer_nodes.mpc.frost.round1 import SigningCommitments, SigningNonces, commit
from signer_nodes.mpc.frost.round2 import SignatureShare, SigningPackage, sign
from signer_nodes.mpc.session import Envelope, RoundBasedParty, RoundSpec, decode_from

COORDINATOR = 0


class FrostSigner(RoundBasedParty):
    """A signer; ``expected_message`` / ``expected_tweak`` are what the node's
    own policy check approved, and the package must carry exactly those."""

    protocol = "frost-sign"

    def __init__(
        self,
        suite: Ciphersuite,
        session_id: bytes,
        key_package: KeyPackage,
        *,
        expected_message: bytes | None = None,
        expected_tweak: bytes | None = None,
        nonces: SigningNonces | None = None,
    ) -> None:
        super().__init__(
            session_id, key_package.identifier, [RoundSpec(2, True, frozenset({COORDINATOR}))]
        )
        self.suite = suite
        self.key_package = key_package
        self.expected_message = expected_message
        self.expected_tweak = expected_tweak
        self._nonces = nonces

    def _first_messages(self) -> list[Envelope]:
        if self._nonces is None:
            self._nonces, _ = commit(
                self.suite, self.key_package.identifier, self.key_package.signing_share
            )
        payload = self._nonces.commitments.encode(self.suite)
        return [self._envelope(1, payload, recipient=COORDINATOR)]

    def _on_round(self, round_: int, messages: dict[int, Envelope]) -> list[Envelope]:
        assert self._nonces is not None
        package: SigningPackage = decode_from(
            COORDINATOR, SigningPackage.decode, self.suite, messages[COORDINATOR].payload
        )
        if self.expected_message is not None and package.message != self.expected_message:
            raise InvalidMessageError("signing package carries another message", [COORDINATOR])
        if self.expected_message is not None and package.tweak != self.expected_tweak:
            raise InvalidMessageError("signing package carries another key tweak", [COORDINATOR])
        try:
            share = sign(self.suite, package, self._nonces, self.key_package)
        except LocalMisuseError as exc:  # the coordinator built a package we must refuse
            raise InvalidMessageError(
                f"unacceptable signing package: {exc}", [COORDINATOR]
            ) from exc
        self._finish(share)
        return [self._envelope(3, share.encode(self.suite), recipient=COORDINATOR)]


class FrostCoordinator(RoundBasedParty):
    """Collects commitments, sends the package, aggregates and verifies."""

    protocol = "frost-sign"

    def __init__(
        self,
        suite: Ciphersuite,
        session_id: bytes,
        public: PublicKeyPackage,
        signers: Sequence[int],
        message: bytes,
        *,
        tweak: bytes | None = None,
    ) -> None:
        ids = frozenset(signers)
        if len(ids) != len(signers) or len(ids) < public.min_signers or COORDINATOR in ids:
            raise LocalMisuseError("need at least t distinct signers")
        if not ids <= set(public.verifying_shares):
            raise LocalMisuseError("unknown signer")
        super().__init__(
            session_id, COORDINATOR, [RoundSpec(1, False, ids), RoundSpec(3, False, ids)]
        )
        self.suite = suite
        self.public = public
        self.message = message
        self.tweak = tweak
        self.package: SigningPackage | None = None

    def _first_messages(self) -> list[Envelope]:
        return []

    def _on_round(self, round_: int, messages: dict[int, Envelope]) -> list[Envelope]:
        if round_ == 1:
            commitments = []
            for sender, env in messages.items():
                c: SigningCommitments = decode_from(
                    sender, SigningCommitments.decode, self.suite, env.payload
                )
                if c.identifier != sender:
                    raise InvalidMessageError("commitments under another identifier", [sender])
                commitments.append(c)
            self.package = SigningPackage(tuple(commitments), self.message, self.tweak)
            return [self._envelope(2, self.package.encode(self.suite))]
        assert self.package is not None
        shares = []
        for sender, env in messages.items():
            s: SignatureShare = decode_from(sender, SignatureShare.decode, self.suite, env.payload)
            if s.identifier != sender:
                raise InvalidMessageError("signature share under another identifier", [sender])
            shares.append(s)
        self._finish(aggregate(self.suite, self.package, shares, self.public))
        return []
