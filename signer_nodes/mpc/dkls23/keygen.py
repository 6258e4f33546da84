"""DKLs23 key generation: the secp256k1 DKG plus the pairwise setup that the
multiplication protocol needs: the key-generation part of ePrint 2023/765,
Protocol 3.6 (key shares from a DKG, the F_RVOLE initialisation -- base OTs
per ordered pair -- and the F_Zero seeds of Functionality 3.4).

The paper leaves the DKG to a functionality (other implementations follow
its pointer to Protocol 9.1 of ePrint 2023/602); any DKG that outputs a
Shamir sharing with public verifying shares serves.  Ours is the
Komlo-Goldberg Pedersen DKG with proofs of knowledge, echo check and
committed-then-revealed BIP32 chain code of
:class:`~signer_nodes.mpc.dkg.pedersen.DkgParty` over ``FROST_SECP256K1``,
run by composition: this party owns an inner ``DkgParty`` and relays its two
rounds inside its own envelopes (protocol ``dkls23-keygen``), so the message
router checks session, round, sender and duplicates once for both layers.

The pairwise setup rides on DKG round 2 (point to point), for every other
party ``j``:

* base OTs of the ordered pair ``(alice=i, bob=j)``, Alice's side: the
  Masny-Rindal "endemic" OT receiver message (MR19, CCS 2019;
  :mod:`.base_ot`);
* base OTs of the ordered pair ``(alice=j, bob=i)``, Bob's side: the endemic
  OT sender message;
* ``i``'s contribution to the pair's F_Zero seed (DKLs23 Functionality 3.4).

Both base-OT messages are single-shot, so after round 2 every party holds the
:class:`~signer_nodes.mpc.dkls23.setup.AliceSetup` / ``BobSetup`` of every
ordered pair it belongs to.  The per-signature OT extension on these seeds is
SoftSpokenOT with ``k = 1`` (Roy, CRYPTO 2022; KOS15 Fig. 10 check, made
non-interactive by Fiat-Shamir as in DKLs23 Section 5.1; :mod:`.ot_extension`).

The pair's F_Zero seed is ``H(session, {i, j}, s_ij, s_ji)``.  No commitment
is needed: the seed is known to both endpoints anyway, so letting a corrupt
endpoint see the honest contribution first gives it nothing; zero-shares of
honest parties stay uniform through the seeds they share with other honest
parties.

What is detected where: every DKG deviation is caught and named by the DKG
(bad proof, bad share, equivocation via the echo check, chain-code opening).
Malformed or foreign base-OT messages are named here.  Endemic OT does not
guarantee correctness, so a base-OT *sender* (Bob) who sends inconsistent
values is only detected at the pair's first OT extension, which names him
(:class:`~signer_nodes.mpc.errors.OtConsistencyError`); the node must then
exclude him for good (:func:`~signer_nodes.mpc.dkls23.faults.peers_to_exclude`).
A base-OT *receiver* (Alice) who deviates only garbles her own seeds, which
the pi_RVOLE check of the first multiplication names
(:class:`~signer_nodes.mpc.errors.MultiplicationCheckError`).
"""

from __future__ import annotations

from collections.abc import Sequence

from signer_nodes.mpc.dkg.pedersen import DkgOutput, DkgParty
from signer_nodes.mpc.dkls23.base_ot import (
    BaseOtReceiverMessage,
    BaseOtReceiverState,
    BaseOtSenderMessage,
    BaseOtSenderState,
    base_ot_receiver_round1,
    base_ot_sender_round1,
)
from signer_nodes.mpc.dkls23.context import PairContext, RandomSource, system_random
from signer_nodes.mpc.dkls23.keyshare import ZERO_SEED_BYTES, KeyShare, share_epoch_id
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import LocalMisuseError
from signer_nodes.mpc.frost import FROST_SECP256K1
from signer_nodes.mpc.session import (
    MAX_PAYLOAD,
    Envelope,
    RoundBasedParty,
    RoundSpec,
    decode_from,
)
from signer_nodes.mpc.transcript import Transcript

_ZERO_SEED_DOMAIN = b"dkls23/f-zero/v1/pair-seed"
_BASE_OT_DOMAIN = b"dkls23/setup/v1/base-ot"


def base_ot_context(session_id: bytes, alice: int, bob: int) -> PairContext:
    """The pair context of the key-setup base OTs of ``(alice, bob)``."""
    return PairContext(session_id=_BASE_OT_DOMAIN + session_id, alice=alice, bob=bob)


def zero_seed(session_id: bytes, i: int, j: int, ours: bytes, theirs: bytes) -> bytes:
    """The F_Zero seed of the pair ``{i, j}`` from both contributions."""
    lo, hi = (ours, theirs) if i < j else (theirs, ours)
    t = Transcript(_ZERO_SEED_DOMAIN).append(b"session", session_id)
    t.append_int(b"low", min(i, j)).append_int(b"high", max(i, j))
    return t.append(b"low-seed", lo).append(b"high-seed", hi).digest()


class PairwiseSetup:
    """The pairwise part of a setup session, for one party and its peers.

    ``messages()`` gives the round payload for every peer; ``finish(peer,
    payload)`` consumes a peer's payload; ``result()`` the three maps.
    """

    def __init__(
        self, session_id: bytes, self_id: int, peers: Sequence[int], rand: RandomSource
    ) -> None:
        self.session_id = session_id
        self.self_id = self_id
        self.peers = tuple(sorted(peers))
        self._rand = rand
        self._receivers: dict[int, BaseOtReceiverState] = {}
        self._senders: dict[int, BaseOtSenderState] = {}
        self._seeds_out: dict[int, bytes] = {}
        self.alice: dict[int, AliceSetup] = {}
        self.bob: dict[int, BobSetup] = {}
        self.zero_seeds: dict[int, bytes] = {}

    def __repr__(self) -> str:
        return f"PairwiseSetup(self_id={self.self_id}, peers={self.peers}, <redacted>)"

    def messages(self) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for j in self.peers:
            rstate, rmsg = base_ot_receiver_round1(
                base_ot_context(self.session_id, self.self_id, j), rand=self._rand
            )
            sstate, smsg = base_ot_sender_round1(
                base_ot_context(self.session_id, j, self.self_id), rand=self._rand
            )
            self._receivers[j], self._senders[j] = rstate, sstate
            self._seeds_out[j] = self._rand(ZERO_SEED_BYTES)
            out[j] = bytes(
                Writer().var(rmsg.to_bytes()).var(smsg.to_bytes()).fixed(self._seeds_out[j])
            )
        return out

    def finish(self, peer: int, payload: bytes) -> None:
        def parse(data: bytes) -> tuple[BaseOtReceiverMessage, BaseOtSenderMessage, bytes]:
            r = Reader(data)
            rmsg = BaseOtReceiverMessage.from_bytes(r.var(MAX_PAYLOAD), sender=peer)
            smsg = BaseOtSenderMessage.from_bytes(r.var(MAX_PAYLOAD), sender=peer)
            seed = r.fixed(ZERO_SEED_BYTES)
            r.finish()
            return rmsg, smsg, seed

        rmsg, smsg, seed = decode_from(peer, parse, payload)
        # peer's receiver message is for the pair (alice=peer, bob=self): we are Bob
        self.bob[peer] = self._senders.pop(peer).finish(rmsg)
        # peer's sender message is for the pair (alice=self, bob=peer): we are Alice
        self.alice[peer] = self._receivers.pop(peer).finish(smsg)
        self.zero_seeds[peer] = zero_seed(
            self.session_id, self.self_id, peer, self._seeds_out.pop(peer), seed
        )


class KeygenParty(RoundBasedParty):
    """One party of DKLs23 key generation (or, with ``refresh_of``, of a
    proactive refresh; see :mod:`.refresh`).

    Round 1 (broadcast): the DKG round-1 message.
    Round 2 (point to point): the DKG round-2 message and the pairwise setup
    payload.  Output: a :class:`~signer_nodes.mpc.dkls23.keyshare.KeyShare`.
    """

    protocol = "dkls23-keygen"

    def __init__(
        self,
        session_id: bytes,
        self_id: int,
        parties: Sequence[int],
        threshold: int,
        *,
        refresh_of: KeyShare | None = None,
        rand: RandomSource = system_random,
    ) -> None:
        if threshold < 2:
            raise LocalMisuseError("threshold ECDSA needs t >= 2 (t = 1 is a plain key)")
        refresh = None
        if refresh_of is not None:
            if refresh_of.identifier != self_id:
                raise LocalMisuseError("the key share to refresh is another party's")
            refresh = (refresh_of.key_package, refresh_of.public)
        self._dkg = DkgParty(
            FROST_SECP256K1, session_id, self_id, parties, threshold, refresh_of=refresh
        )
        others = frozenset(parties) - {self_id}
        super().__init__(
            session_id, self_id, [RoundSpec(1, True, others), RoundSpec(2, False, others)]
        )
        self.parties = tuple(sorted(parties))
        self.threshold = threshold
        self._pairwise = PairwiseSetup(session_id, self_id, sorted(others), rand)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(id={self.self_id}, parties={self.parties}, "
            f"t={self.threshold}, <redacted>)"
        )

    # -- relaying the inner DKG --------------------------------------------------

    def _inner(self, env: Envelope, payload: bytes) -> Envelope:
        return Envelope(
            env.session_id, self._dkg.protocol, env.round, env.sender, env.recipient, payload
        )

    def _first_messages(self) -> list[Envelope]:
        return [self._envelope(1, env.payload) for env in self._dkg.start()]

    def _on_round(self, round_: int, messages: dict[int, Envelope]) -> list[Envelope]:
        if round_ == 1:
            inner_out: list[Envelope] = []
            for env in messages.values():
                inner_out.extend(self._dkg.receive(self._inner(env, env.payload)))
            setup = self._pairwise.messages()
            out = []
            for env in inner_out:
                assert env.recipient is not None and env.round == 2
                payload = Writer().var(env.payload).var(setup[env.recipient])
                out.append(self._envelope(2, bytes(payload), env.recipient))
            return out
        parts: dict[int, tuple[bytes, bytes]] = {}
        for sender, env in messages.items():
            parts[sender] = decode_from(sender, _split_round2, env.payload)
        for sender, env in messages.items():
            self._dkg.receive(self._inner(env, parts[sender][0]))
        if self._dkg.aborted is not None:  # pragma: no cover - receive raised already
            raise self._dkg.aborted
        dkg: DkgOutput = self._dkg.output
        for sender in messages:
            self._pairwise.finish(sender, parts[sender][1])
        self._finish(
            KeyShare(
                dkg.key_package,
                dkg.public_key_package,
                share_epoch_id(self.session_id, dkg.public_key_package),
                self._pairwise.alice,
                self._pairwise.bob,
                self._pairwise.zero_seeds,
            )
        )
        return []


def _split_round2(data: bytes) -> tuple[bytes, bytes]:
    r = Reader(data)
    dkg, setup = r.var(MAX_PAYLOAD), r.var(MAX_PAYLOAD)
    r.finish()
    return dkg, setup
