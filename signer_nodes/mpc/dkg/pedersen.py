"""Distributed key generation: Pedersen/Feldman VSS with proofs of knowledge
(Komlo and Goldberg, "FROST", SAC 2020, Figure 1 "KeyGen"), plus an echo
check of the broadcast round and a committed, then revealed, chain code.

Round 1 (broadcast), party i:
  1. samples f_i(x) = a_i0 + a_i1 x + ... + a_i(t-1) x^(t-1);
  2. proves knowledge of a_i0: k random, R_i = k*G,
     c_i = H(session id, i, phi_i0, R_i), mu_i = k + a_i0 * c_i  (step 2, with
     the context string Phi being the session id);
  3. commits C_i = (phi_i0, ..., phi_i(t-1)), phi_ij = a_ij * G  (step 3);
  4. broadcasts C_i, (R_i, mu_i) and a commitment to a 32-byte chain-code
     contribution (used for BIP32 derivation of the group key);
  5. on receipt checks every other party's proof: R_l == mu_l*G - c_l*phi_l0.
Round 2 (point to point), party i to each l:
  1. sends f_i(l), its echo (a digest of every round-1 message it accepted)
     and its chain-code contribution;
  2. checks the echoes (any mismatch aborts with EquivocationError; it names
     the echoing party only when its echo contradicts our own broadcast or
     its own, since a mismatch about a third dealer may be that dealer's
     equivocation or a false echo: see :mod:`.echo`), the chain-code
     openings, and every share:
     f_l(i)*G == sum_k phi_lk * i^k  (step 2; checked in aggregate first and
     per sender only if that fails, which names the culprits);
  3. s_i = sum_l f_l(i); Y_i = s_i*G; Y = sum_l phi_l0; every Y_j is computed
     from the summed commitments (steps 3-4).

Refresh (Herzberg et al., "Proactive Secret Sharing", CRYPTO 1995) reuses
both rounds with f_i(0) = 0: phi_i0 is the identity and is not sent, so no
proof of knowledge is needed; new shares are s_i + sum_l f_l(i) and the group
key is unchanged, while old and new shares no longer combine.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from signer_nodes.mpc.dkg.echo import check_echoes
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import (
    EncodingError,
    InvalidCommitmentError,
    InvalidProofError,
    InvalidShareError,
    LocalMisuseError,
)
from signer_nodes.mpc.frost.ciphersuite import Ciphersuite
from signer_nodes.mpc.frost.keys import KeyPackage, PublicKeyPackage, suite_id
from signer_nodes.mpc.frost.polynomial import commitment_evaluate, polynomial_evaluate
from signer_nodes.mpc.groups import Element
from signer_nodes.mpc.session import Envelope, RoundBasedParty, RoundSpec, decode_from
from signer_nodes.mpc.transcript import Transcript

MAX_PARTIES = 255


@dataclass(frozen=True, slots=True)
class DkgOutput:
    key_package: KeyPackage
    public_key_package: PublicKeyPackage


@dataclass(frozen=True, slots=True)
class Round1Message:
    commitment: tuple[Element, ...]
    proof: tuple[Element, int] | None
    chain_code_commitment: bytes


@dataclass(frozen=True, slots=True)
class Round2Message:
    share: int
    echo: tuple[bytes, ...]
    chain_code: bytes


def pok_challenge(
    suite: Ciphersuite, session_id: bytes, party: int, phi0: Element, r: Element
) -> int:
    """c_i = H(i, Phi, phi_i0, R_i) of Figure 1, round 1, step 2."""
    g = suite.group
    t = Transcript(b"frost-dkg/proof-of-knowledge")
    t.append(b"suite", suite_id(suite).encode()).append(b"session", session_id)
    t.append_int(b"party", party).append(b"phi0", g.serialize_element(phi0))
    return t.append(b"R", g.serialize_element(r)).challenge_scalar(g.order)


def chain_code_commitment(session_id: bytes, party: int, chain_code: bytes) -> bytes:
    t = Transcript(b"frost-dkg/chain-code").append(b"session", session_id)
    return t.append_int(b"party", party).append(b"value", chain_code).digest()


class DkgParty(RoundBasedParty):
    """One party of the DKG (``refresh_of`` unset) or of a refresh."""

    protocol = "frost-dkg"

    def __init__(
        self,
        suite: Ciphersuite,
        session_id: bytes,
        self_id: int,
        parties: Sequence[int],
        threshold: int,
        *,
        refresh_of: tuple[KeyPackage, PublicKeyPackage] | None = None,
    ) -> None:
        ids = sorted(set(parties))
        if len(ids) != len(parties) or self_id not in ids or ids[0] < 1 or len(ids) > MAX_PARTIES:
            raise LocalMisuseError("parties must be distinct ids in 1..255 including self")
        if not 1 <= threshold <= len(ids):
            raise LocalMisuseError("need 1 <= threshold <= number of parties")
        if refresh_of is not None:
            key, public = refresh_of
            if key.identifier != self_id or set(public.verifying_shares) != set(ids):
                raise LocalMisuseError("a refresh runs among exactly the current share holders")
            if threshold != public.min_signers:
                raise LocalMisuseError("a refresh keeps the threshold; resharing changes it")
        others = frozenset(ids) - {self_id}
        super().__init__(
            session_id, self_id, [RoundSpec(1, True, others), RoundSpec(2, False, others)]
        )
        self.suite = suite
        self.parties = tuple(ids)
        self.threshold = threshold
        self.refresh_of = refresh_of
        g = suite.group
        constant = 0 if refresh_of is not None else g.random_scalar()
        self._coefficients = [constant] + [g.random_scalar() for _ in range(threshold - 1)]
        self._chain_code = secrets.token_bytes(32)
        self._round1: dict[int, Round1Message] = {}
        self._echo: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return (
            f"DkgParty(id={self.self_id}, parties={self.parties}, t={self.threshold}, <redacted>)"
        )

    @property
    def _refresh(self) -> bool:
        return self.refresh_of is not None

    # -- encodings -------------------------------------------------------------

    def _encode_round1(self, msg: Round1Message) -> bytes:
        g = self.suite.group
        w = Writer().u16(len(msg.commitment))
        for c in msg.commitment:
            w.fixed(g.serialize_element(c))
        if msg.proof is not None:
            w.fixed(g.serialize_element(msg.proof[0])).fixed(g.serialize_scalar(msg.proof[1]))
        return bytes(w.fixed(msg.chain_code_commitment))

    def _decode_round1(self, data: bytes) -> Round1Message:
        g = self.suite.group
        r = Reader(data)
        count = r.u16()
        if count > MAX_PARTIES:
            raise EncodingError("commitment vector too long")
        commitment = tuple(g.deserialize_element(r.fixed(g.element_len)) for _ in range(count))
        proof = None
        if not self._refresh:
            proof = (
                g.deserialize_element(r.fixed(g.element_len)),
                g.deserialize_scalar(r.fixed(g.scalar_len)),
            )
        cc = r.fixed(32)
        r.finish()
        return Round1Message(commitment, proof, cc)

    def _encode_round2(self, msg: Round2Message) -> bytes:
        w = Writer().fixed(self.suite.group.serialize_scalar(msg.share)).u16(len(msg.echo))
        for digest in msg.echo:
            w.fixed(digest)
        return bytes(w.fixed(msg.chain_code))

    def _decode_round2(self, data: bytes) -> Round2Message:
        g = self.suite.group
        r = Reader(data)
        share = g.deserialize_scalar(r.fixed(g.scalar_len))
        count = r.u16()
        if count != len(self.parties):
            raise EncodingError("echo has the wrong number of digests")
        echo = tuple(r.fixed(32) for _ in range(count))
        cc = r.fixed(32)
        r.finish()
        return Round2Message(share, echo, cc)

    # -- the rounds ------------------------------------------------------------

    def _public_commitment(self) -> tuple[Element, ...]:
        g = self.suite.group
        coefficients = self._coefficients[1:] if self._refresh else self._coefficients
        return tuple(g.base_mult(a) for a in coefficients)

    def _first_messages(self) -> list[Envelope]:
        g = self.suite.group
        commitment = self._public_commitment()
        proof = None
        if not self._refresh:
            k = g.random_scalar()
            r = g.base_mult(k)
            c = pok_challenge(self.suite, self.session_id, self.self_id, commitment[0], r)
            proof = (r, (k + self._coefficients[0] * c) % g.order)
        msg = Round1Message(
            commitment,
            proof,
            chain_code_commitment(self.session_id, self.self_id, self._chain_code),
        )
        self._round1[self.self_id] = msg
        self._own_round1 = self._envelope(1, self._encode_round1(msg))
        return [self._own_round1]

    def _expected_commitment_len(self) -> int:
        return self.threshold - 1 if self._refresh else self.threshold

    def _on_round(self, round_: int, messages: dict[int, Envelope]) -> list[Envelope]:
        if round_ == 1:
            return self._on_round1(messages)
        self._on_round2(messages)
        return []

    def _on_round1(self, messages: dict[int, Envelope]) -> list[Envelope]:
        g = self.suite.group
        for sender, env in messages.items():
            msg: Round1Message = decode_from(sender, self._decode_round1, env.payload)
            if len(msg.commitment) != self._expected_commitment_len():
                raise InvalidCommitmentError(
                    f"commitment vector has {len(msg.commitment)} entries, expected "
                    f"{self._expected_commitment_len()}",
                    [sender],
                )
            if msg.proof is not None:
                r, mu = msg.proof
                c = pok_challenge(self.suite, self.session_id, sender, msg.commitment[0], r)
                if g.base_mult(mu) - msg.commitment[0] * c != r:
                    raise InvalidProofError(
                        "proof of knowledge of the constant term fails", [sender]
                    )
            self._round1[sender] = msg
        view = {**messages, self.self_id: self._own_round1}
        self._echo = tuple(view[p].digest() for p in self.parties)
        out = []
        for p in self.parties:
            if p == self.self_id:
                continue
            share = polynomial_evaluate(p, self._coefficients, g.order)
            payload = self._encode_round2(Round2Message(share, self._echo, self._chain_code))
            out.append(self._envelope(2, payload, recipient=p))
        return out

    def _on_round2(self, messages: dict[int, Envelope]) -> None:
        g = self.suite.group
        received = {
            s: decode_from(s, self._decode_round2, env.payload) for s, env in messages.items()
        }
        # Echo check: every party must have accepted the same round-1 broadcasts;
        # blame only what is provable (see .echo).
        echoes = {sender: msg.echo for sender, msg in received.items()}
        check_echoes(self.self_id, self.parties, self._echo, echoes, "round-1 broadcasts")
        for sender, msg in received.items():
            if (
                chain_code_commitment(self.session_id, sender, msg.chain_code)
                != self._round1[sender].chain_code_commitment
            ):
                raise InvalidCommitmentError(
                    "chain-code contribution does not open its commitment", [sender]
                )
        own_share = polynomial_evaluate(self.self_id, self._coefficients, g.order)
        shares = {**{s: m.share for s, m in received.items()}, self.self_id: own_share}
        # Aggregate VSS check (Figure 1, round 2, step 2), per sender on failure.
        summed = self._summed_commitment()
        delta = sum(shares.values()) % g.order
        if g.base_mult(delta) != commitment_evaluate(g, summed, self.self_id):
            bad = [
                s
                for s in received
                if g.base_mult(shares[s])
                != commitment_evaluate(g, self._full_commitment(s), self.self_id)
            ]
            raise InvalidShareError("secret share does not match its sender's commitment", bad)
        chain_code = self._combined_chain_code(
            {**{s: m.chain_code for s, m in received.items()}, self.self_id: self._chain_code}
        )
        self._finish(self._assemble(delta, summed, chain_code))
        self._coefficients = []

    def _full_commitment(self, party: int) -> tuple[Element, ...]:
        c = self._round1[party].commitment
        return (self.suite.group.identity, *c) if self._refresh else c

    def _summed_commitment(self) -> list[Element]:
        summed = [self.suite.group.identity] * self.threshold
        for p in self.parties:
            for k, phi in enumerate(self._full_commitment(p)):
                summed[k] = summed[k] + phi
        return summed

    def _combined_chain_code(self, contributions: dict[int, bytes]) -> bytes:
        if self.refresh_of is not None:
            return self.refresh_of[0].chain_code
        t = Transcript(b"frost-dkg/chain-code/combine").append(b"session", self.session_id)
        for p in self.parties:
            t.append_int(b"party", p).append(b"value", contributions[p])
        return t.digest()

    def _assemble(self, delta: int, summed: list[Element], chain_code: bytes) -> DkgOutput:
        g = self.suite.group
        offsets = {j: commitment_evaluate(g, summed, j) for j in self.parties}
        if self.refresh_of is None:
            share, group_key = delta, summed[0]
            verifying = offsets
        else:
            old_key, old_public = self.refresh_of
            share = (old_key.signing_share + delta) % g.order
            group_key = old_public.group_public_key
            verifying = {j: old_public.verifying_shares[j] + offsets[j] for j in self.parties}
        if share == 0 or group_key.is_identity:
            raise LocalMisuseError("degenerate key (probability 2^-250); run the DKG again")
        key = KeyPackage(
            self.suite,
            self.self_id,
            share,
            verifying[self.self_id],
            group_key,
            self.threshold,
            chain_code,
        )
        public = PublicKeyPackage(self.suite, group_key, verifying, self.threshold, chain_code)
        return DkgOutput(key, public)
