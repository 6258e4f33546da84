"""Resharing a DKLs23 key to a new node set and/or threshold, same public key:
``(t, n) -> (t', n')`` (Desmedt-Jajodia redistribution with Feldman
commitments; Wong-Wang-Wing, "Verifiable Secret Redistribution", 2002).

Participants: the *dealers* ``D``, at least ``t`` holders of the old key, and
the *new parties* ``N'`` (the sets may overlap).  Every old verifying share
``Y_i`` is public (the old :class:`~signer_nodes.mpc.frost.keys.PublicKeyPackage`).

Round 1 (broadcast, dealers): dealer ``i`` samples ``f_i`` of degree
``t' - 1`` with ``f_i(0) = lambda_i(D) * p(i)`` and broadcasts its Feldman
commitment ``C_i``.  Everyone checks ``C_i[0] == lambda_i(D) * Y_i``
(:class:`InvalidCommitmentError` naming ``i``): a dealer cannot change the key
it re-shares, so no proof of knowledge is needed, and ``sum_i C_i[0] = Y``.
Round 2 (point to point, dealer ``i`` -> new party ``j``): ``f_i(j)`` and an
echo (one digest per dealer of the round-1 broadcasts ``i`` accepted).
Round 3 (point to point, new party -> new party): the same echo and the
pairwise setup of the new set (MR19 base OTs per ordered pair, F_Zero seed
contributions; see :mod:`.keygen`).

A new party checks every echo (:class:`EquivocationError`, naming the echoing
party only when the mismatch is provable, see :mod:`.echo`), every share against its dealer's
commitment (:class:`InvalidShareError` naming the dealer), and outputs
``p'(j) = sum_i f_i(j)`` with verifying shares ``Y'_k = sum_i C_i(k)``, the
unchanged group key and chain code, and a new ``share_id``.  Old shares do
not interpolate with new ones (different polynomials) and old presignatures
are refused by ``share_id``.  Dealers that are not new parties output None.
"""

from __future__ import annotations

from collections.abc import Sequence

from signer_nodes.mpc.dkls23.context import RandomSource, random_scalar, system_random
from signer_nodes.mpc.dkls23.echo import check_echoes
from signer_nodes.mpc.dkls23.keygen import PairwiseSetup
from signer_nodes.mpc.dkls23.keyshare import KeyShare, share_epoch_id
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import (
    Dkls23ConsistencyError,
    EncodingError,
    InvalidCommitmentError,
    InvalidShareError,
    LocalMisuseError,
)
from signer_nodes.mpc.frost import FROST_SECP256K1
from signer_nodes.mpc.frost.keys import KeyPackage, PublicKeyPackage
from signer_nodes.mpc.frost.polynomial import (
    commitment_evaluate,
    derive_interpolating_value,
    polynomial_evaluate,
)
from signer_nodes.mpc.groups import SECP256K1, Element
from signer_nodes.mpc.session import (
    MAX_PAYLOAD,
    Envelope,
    RoundBasedParty,
    RoundSpec,
    decode_from,
)

Q = SECP256K1.order
_POINT = SECP256K1.element_len
MAX_PARTIES = 255


class ReshareParty(RoundBasedParty):
    """A dealer, a new party, or both, of one resharing session."""

    protocol = "dkls23-reshare"

    def __init__(
        self,
        session_id: bytes,
        self_id: int,
        *,
        old_public: PublicKeyPackage,
        dealers: Sequence[int],
        new_parties: Sequence[int],
        new_threshold: int,
        old_share: KeyShare | None = None,
        rand: RandomSource = system_random,
    ) -> None:
        d = tuple(sorted(set(dealers)))
        new = tuple(sorted(set(new_parties)))
        if len(d) != len(dealers) or len(new) != len(new_parties):
            raise LocalMisuseError("dealers and new parties must be distinct ids")
        if not set(d) <= set(old_public.verifying_shares) or len(d) < old_public.min_signers:
            raise LocalMisuseError("need at least t dealers, all holders of the old key")
        if not new or new[0] < 1 or new[-1] > MAX_PARTIES or not 2 <= new_threshold <= len(new):
            raise LocalMisuseError("new parties must be ids in 1..255 with 2 <= t' <= n'")
        if self_id not in d and self_id not in new:
            raise LocalMisuseError("this party neither deals nor receives")
        if self_id in d and (old_share is None or old_share.identifier != self_id):
            raise LocalMisuseError("a dealer needs its own old key share")
        if old_share is not None and old_share.public.to_bytes() != old_public.to_bytes():
            raise LocalMisuseError("old share and old public package disagree")
        self.dealers, self.new_parties, self.new_threshold = d, new, new_threshold
        self.old_public = old_public
        rounds = [RoundSpec(1, True, frozenset(d) - {self_id})]
        if self_id in new:
            rounds.append(RoundSpec(2, False, frozenset(d) - {self_id}))
            rounds.append(RoundSpec(3, False, frozenset(new) - {self_id}))
        super().__init__(session_id, self_id, rounds)
        self._rand = rand
        self._coefficients: list[int] = []
        if self_id in d:
            assert old_share is not None
            lam = derive_interpolating_value(list(d), self_id, Q)
            constant = lam * old_share.key_package.signing_share % Q
            self._coefficients = [constant] + [
                random_scalar(rand) for _ in range(new_threshold - 1)
            ]
        self._commitments: dict[int, tuple[Element, ...]] = {}
        self._round1_env: dict[int, Envelope] = {}
        self._echo: tuple[bytes, ...] = ()
        self._share = 0
        self._pairwise = (
            PairwiseSetup(session_id, self_id, [p for p in new if p != self_id], rand)
            if self_id in new
            else None
        )

    def __repr__(self) -> str:
        return (
            f"ReshareParty(id={self.self_id}, dealers={self.dealers}, "
            f"new_parties={self.new_parties}, t'={self.new_threshold}, <redacted>)"
        )

    # -- encodings -------------------------------------------------------------

    def _encode_commitment(self, c: Sequence[Element]) -> bytes:
        w = Writer().u16(len(c))
        for point in c:
            w.var(point.to_bytes())
        return bytes(w)

    def _decode_commitment(self, data: bytes) -> tuple[Element, ...]:
        r = Reader(data)
        if r.u16() != self.new_threshold:
            raise EncodingError("commitment has the wrong degree")
        out = tuple(SECP256K1.element_from_bytes(r.var(_POINT)) for _ in range(self.new_threshold))
        r.finish()
        return out

    def _encode_echo(self, extra: bytes = b"") -> Writer:
        w = Writer().u16(len(self._echo))
        for digest in self._echo:
            w.fixed(digest)
        return w.var(extra)

    def _decode_echo(self, data: bytes) -> tuple[tuple[bytes, ...], bytes]:
        r = Reader(data)
        if r.u16() != len(self.dealers):
            raise EncodingError("echo has the wrong number of digests")
        echo = tuple(r.fixed(32) for _ in self.dealers)
        extra = r.var(MAX_PAYLOAD)
        r.finish()
        return echo, extra

    # -- rounds ------------------------------------------------------------------

    def _first_messages(self) -> list[Envelope]:
        out = []
        if self._coefficients:
            commitment = tuple(SECP256K1.base_mult(a) for a in self._coefficients)
            self._commitments[self.self_id] = commitment
            env = self._envelope(1, self._encode_commitment(commitment))
            self._round1_env[self.self_id] = env
            out.append(env)
        return out

    def _on_round(self, round_: int, messages: dict[int, Envelope]) -> list[Envelope]:
        if round_ == 1:
            for sender, env in messages.items():
                c = decode_from(sender, self._decode_commitment, env.payload)
                lam = derive_interpolating_value(list(self.dealers), sender, Q)
                if c[0] != self.old_public.verifying_shares[sender] * lam:
                    raise InvalidCommitmentError(
                        "constant term is not lambda_i * Y_i (resharing round 1)", [sender]
                    )
                self._commitments[sender] = c
                self._round1_env[sender] = env
            return self._after_round1()
        if round_ == 2:
            self._on_round2(messages)
            return []
        self._on_round3(messages)
        return []

    def _after_round1(self) -> list[Envelope]:
        self._echo = tuple(self._round1_env[i].digest() for i in self.dealers)
        out = []
        if self._coefficients:
            for j in self.new_parties:
                if j == self.self_id:
                    continue
                share = polynomial_evaluate(j, self._coefficients, Q)
                payload = self._encode_echo(SECP256K1.serialize_scalar(share))
                out.append(self._envelope(2, bytes(payload), j))
        if self._pairwise is not None:
            for j, setup in self._pairwise.messages().items():
                out.append(self._envelope(3, bytes(self._encode_echo(setup)), j))
        if self.self_id not in self.new_parties:
            self._coefficients = []
            self._finish(None)
        return out

    def _decode_and_check_echoes(self, messages: dict[int, Envelope]) -> dict[int, bytes]:
        """Every sender's echo checked (:mod:`.echo`); returns the payloads behind them."""
        decoded = {s: decode_from(s, self._decode_echo, env.payload) for s, env in messages.items()}
        echoes = {s: echo for s, (echo, _) in decoded.items()}
        check_echoes(self.self_id, self.dealers, self._echo, echoes, "dealer commitments")
        return {s: extra for s, (_, extra) in decoded.items()}

    def _on_round2(self, messages: dict[int, Envelope]) -> None:
        me = self.self_id
        shares: dict[int, int] = {}
        for sender, raw in self._decode_and_check_echoes(messages).items():
            shares[sender] = decode_from(sender, SECP256K1.deserialize_scalar, raw)
        if self._coefficients:
            shares[me] = polynomial_evaluate(me, self._coefficients, Q)
            self._coefficients = []
        bad = [
            i
            for i, value in shares.items()
            if SECP256K1.base_mult(value)
            != commitment_evaluate(SECP256K1, self._commitments[i], me)
        ]
        if bad:
            raise InvalidShareError("reshared share does not match its dealer's commitment", bad)
        self._share = sum(shares.values()) % Q

    def _on_round3(self, messages: dict[int, Envelope]) -> None:
        assert self._pairwise is not None
        for sender, setup in self._decode_and_check_echoes(messages).items():
            self._pairwise.finish(sender, setup)
        summed = [SECP256K1.identity] * self.new_threshold
        for c in self._commitments.values():
            for k, point in enumerate(c):
                summed[k] = summed[k] + point
        group_key = self.old_public.group_public_key
        if summed[0] != group_key:  # implied by the round-1 checks of a valid old package
            raise Dkls23ConsistencyError("reshared key differs from the old key", [])
        verifying = {k: commitment_evaluate(SECP256K1, summed, k) for k in self.new_parties}
        me = self.self_id
        if self._share == 0 or verifying[me] != SECP256K1.base_mult(self._share):
            raise Dkls23ConsistencyError("new share does not match the summed commitment", [])
        chain_code = self.old_public.chain_code
        public = PublicKeyPackage(
            FROST_SECP256K1, group_key, verifying, self.new_threshold, chain_code
        )
        key = KeyPackage(
            FROST_SECP256K1,
            me,
            self._share,
            verifying[me],
            group_key,
            self.new_threshold,
            chain_code,
        )
        self._share = 0
        self._finish(
            KeyShare(
                key,
                public,
                share_epoch_id(self.session_id, public),
                self._pairwise.alice,
                self._pairwise.bob,
                self._pairwise.zero_seeds,
            )
        )
