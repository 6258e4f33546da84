"""Sealed envelopes: the relay can neither read, alter, re-address nor forge;
a DKG over sealed envelopes still completes."""

from __future__ import annotations

import dataclasses
import secrets

import pytest

from signer_nodes.mpc.dkg import DkgParty
from signer_nodes.mpc.errors import InvalidMessageError
from signer_nodes.mpc.frost import FROST_ED25519
from signer_nodes.mpc.session import Envelope
from signer_nodes.wire.identity import NodeDirectory, NodeIdentity
from signer_nodes.wire.secure import EnvelopeAuthenticationError, SealedEnvelope, open_sealed, seal

IDS = [1, 2, 3]


@pytest.fixture(scope="module")
def nodes():
    identities = {i: NodeIdentity.generate(i) for i in IDS}
    return identities, NodeDirectory({i: ident.public for i, ident in identities.items()})


def _env(sender=1, recipient=2, payload=b"secret share", round_=2):
    return Envelope(b"\x07" * 32, "frost-dkg", round_, sender, recipient, payload)


def test_point_to_point_payload_is_encrypted_and_opens_for_recipient(nodes) -> None:
    ids, directory = nodes
    sealed = seal(_env(), ids[1], directory)
    assert b"secret share" not in sealed.to_bytes()
    wire = SealedEnvelope.from_bytes(sealed.to_bytes())
    assert open_sealed(wire, ids[2], directory).payload == b"secret share"


def test_broadcast_is_signed_in_clear(nodes) -> None:
    ids, directory = nodes
    sealed = seal(_env(recipient=None, payload=b"commitments"), ids[1], directory)
    assert open_sealed(sealed, ids[3], directory).payload == b"commitments"


@pytest.mark.parametrize(
    "change",
    [
        {"payload": b"x" * 10},
        {"round": 1},
        {"sender": 3},
        {"recipient": 3},
        {"session_id": b"\x08" * 32},
        {"protocol": "frost-sign"},
    ],
    ids=["payload", "round", "sender", "recipient", "session", "protocol"],
)
def test_relay_cannot_alter_any_field(nodes, change) -> None:
    ids, directory = nodes
    sealed = seal(_env(), ids[1], directory)
    forged = dataclasses.replace(sealed, envelope=dataclasses.replace(sealed.envelope, **change))
    with pytest.raises(EnvelopeAuthenticationError):
        open_sealed(forged, ids[2], directory)


def test_node_cannot_speak_for_another(nodes) -> None:
    ids, directory = nodes
    env = _env(sender=1)
    forged = SealedEnvelope(env, ids[3].sign(b"anything"))
    with pytest.raises(EnvelopeAuthenticationError) as err:
        open_sealed(forged, ids[2], directory)
    with pytest.raises(ValueError):
        seal(env, ids[3], directory)
    assert err.value.culprits == {1}


def test_ciphertext_moved_to_another_header_does_not_decrypt(nodes) -> None:
    """Node 3 re-signs node 1's ciphertext as its own: the HPKE info binds the
    original header, so node 2 cannot decrypt it and names node 3."""
    ids, directory = nodes
    original = seal(_env(sender=1), ids[1], directory)
    stolen = dataclasses.replace(original.envelope, sender=3)
    from signer_nodes.wire.secure import _signed_bytes

    resigned = SealedEnvelope(stolen, ids[3].sign(_signed_bytes(stolen)))
    with pytest.raises(InvalidMessageError) as err:
        open_sealed(resigned, ids[2], directory)
    assert err.value.culprits == {3}


def test_repr_hides_private_keys(nodes) -> None:
    ids, _ = nodes
    text = repr(ids[1])
    assert "redacted" in text and ids[1].to_bytes().hex()[10:40] not in text
    assert NodeIdentity.from_bytes(ids[1].to_bytes()).public == ids[1].public


def test_dkg_over_sealed_envelopes(nodes) -> None:
    """What the node process does around a core: open incoming, seal outgoing.
    The relay loop below only ever handles sealed bytes."""
    ids, directory = nodes
    sid = secrets.token_bytes(32)
    cores = {i: DkgParty(FROST_ED25519, sid, i, IDS, 2) for i in IDS}
    wire: list[bytes] = []
    for i, core in cores.items():
        wire += [seal(e, ids[i], directory).to_bytes() for e in core.start()]
    while wire:
        sealed = SealedEnvelope.from_bytes(wire.pop(0))
        env = sealed.envelope
        for rcpt in (
            [env.recipient] if env.recipient is not None else [p for p in IDS if p != env.sender]
        ):
            opened = open_sealed(sealed, ids[rcpt], directory)
            wire += [seal(e, ids[rcpt], directory).to_bytes() for e in cores[rcpt].receive(opened)]
    keys = {c.output.public_key_package.group_public_key for c in cores.values()}
    assert len(keys) == 1
