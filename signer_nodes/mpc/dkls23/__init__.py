"""Pairwise layer of DKLs23 threshold ECDSA (Doerner, Kondi, Lee, shelat,
"Threshold ECDSA in Three Rounds", ePrint 2023/765): base OTs at key setup,
SoftSpokenOT extension and the OT-based random vector OLE pi_RVOLE per
signature.  Sans-I/O: every step takes and returns values and messages.

Per ordered pair ``(alice, bob)``:

key setup (once; both messages may travel in the same round)
    Alice: ``base_ot_receiver_round1`` -> ``BaseOtReceiverMessage`` to Bob;
    Bob: ``base_ot_sender_round1`` -> ``BaseOtSenderMessage`` to Alice;
    Alice: ``state.finish(sender_msg)`` -> :class:`AliceSetup`;
    Bob: ``state.finish(receiver_msg)`` -> :class:`BobSetup`.

per signature (pi_RVOLE)
    signing round 1, Bob: ``bob_round1(bob_setup, ctx)`` -> (state with
    random ``b``, ``MulRound1Message`` to Alice);
    signing round 2, Alice: ``alice_round2(alice_setup, ctx, (a1, a2), msg)``
    -> (shares ``c``, ``MulRound2Message`` to Bob);
    after round 2, Bob: ``state.finish(msg)`` -> shares ``d``;
    ``c[i] + d[i] == a[i] * b (mod q)``.

threshold ECDSA on top (Protocol 3.6)
    :mod:`.keygen` (``KeygenParty``: DKG + base OTs + F_Zero seeds),
    :mod:`.presign` (``PresignParty`` -> ``Presignature``), :mod:`.sign`
    (``signature_share`` / ``combine`` / ``SignParty`` -> ``EcdsaSignature``),
    :mod:`.refresh` (``RefreshParty``), :mod:`.reshare` (``ReshareParty``);
    key material in :mod:`.keyshare` (``KeyShare``).

after an abort
    :func:`peers_to_exclude` (:mod:`.faults`): an OT-extension check failure
    (``OT_CONSISTENCY``) obliges the node to refuse every later session of
    the key with the named peer; no other abort does.
"""

from signer_nodes.mpc.dkls23.base_ot import (
    BaseOtReceiverMessage,
    BaseOtReceiverState,
    BaseOtSenderMessage,
    BaseOtSenderState,
    base_ot_receiver_round1,
    base_ot_sender_round1,
)
from signer_nodes.mpc.dkls23.context import PairContext, RandomSource
from signer_nodes.mpc.dkls23.faults import peers_to_exclude
from signer_nodes.mpc.dkls23.keygen import KeygenParty
from signer_nodes.mpc.dkls23.keyshare import KeyShare
from signer_nodes.mpc.dkls23.multiplication import (
    BobRound1State,
    MulRound1Message,
    MulRound2Message,
    alice_round2,
    bob_round1,
    gadget_vector,
)
from signer_nodes.mpc.dkls23.ot_extension import (
    OteReceiverBatch,
    OteSenderBatch,
    OtExtensionMessage,
    ote_receiver_extend,
    ote_sender_extend,
)
from signer_nodes.mpc.dkls23.presign import Presignature, PresignaturePublic, PresignParty
from signer_nodes.mpc.dkls23.refresh import RefreshParty
from signer_nodes.mpc.dkls23.reshare import ReshareParty
from signer_nodes.mpc.dkls23.setup import AliceSetup, BobSetup
from signer_nodes.mpc.dkls23.sign import (
    EcdsaSignature,
    SignatureShare,
    SignParty,
    combine,
    derivation_tweak,
    signature_share,
)

__all__ = [
    "AliceSetup",
    "BaseOtReceiverMessage",
    "BaseOtReceiverState",
    "BaseOtSenderMessage",
    "BaseOtSenderState",
    "BobRound1State",
    "BobSetup",
    "EcdsaSignature",
    "KeyShare",
    "KeygenParty",
    "MulRound1Message",
    "MulRound2Message",
    "OtExtensionMessage",
    "OteReceiverBatch",
    "OteSenderBatch",
    "PairContext",
    "PresignParty",
    "Presignature",
    "PresignaturePublic",
    "RandomSource",
    "RefreshParty",
    "ReshareParty",
    "SignParty",
    "SignatureShare",
    "alice_round2",
    "base_ot_receiver_round1",
    "base_ot_sender_round1",
    "bob_round1",
    "combine",
    "derivation_tweak",
    "gadget_vector",
    "ote_receiver_extend",
    "ote_sender_extend",
    "peers_to_exclude",
    "signature_share",
]
