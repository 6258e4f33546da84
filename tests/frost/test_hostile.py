"""Hostile parties in DKG and signing: each deviation is detected, the culprit
named, and no key or signature results for the victims."""

from __future__ import annotations

import dataclasses

import pytest

from signer_nodes.mpc.dkg import DkgParty
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import (
    DuplicateMessageError,
    EquivocationError,
    ForeignSessionError,
    InvalidCommitmentError,
    InvalidMessageError,
    InvalidProofError,
    InvalidShareError,
    InvalidSignatureShareError,
    SessionAbortedError,
    UnexpectedMessageError,
)
from signer_nodes.mpc.frost import FROST_ED25519, FROST_SECP256K1, Ciphersuite
from signer_nodes.mpc.frost.session import COORDINATOR
from signer_nodes.mpc.session import Envelope
from tests.frost.helpers import SUITE_IDS, SUITES, dkg_keys, run_dkg, run_sign, session_id


def only(round_: int, change, recipients=None):
    """A tamper hook altering ``round_`` messages (to ``recipients``, if given)."""

    def hook(env: Envelope, rcpt: int) -> list[Envelope]:
        if env.round == round_ and (recipients is None or rcpt in recipients):
            return change(env, rcpt)
        return [env]

    return hook


def with_payload(env: Envelope, payload: bytes) -> Envelope:
    return dataclasses.replace(env, payload=payload)


def assert_named(res, culprit: int, error: type, victims) -> None:
    for v in victims:
        assert v not in res.outputs, f"party {v} produced output despite the cheat"
        assert isinstance(res.aborted[v], error), res.aborted
        assert res.aborted[v].culprits == {culprit}
    assert res.culprits() == {culprit}


# -- DKG ---------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_dkg_wrong_share_is_named(suite: Ciphersuite) -> None:
    g = suite.group

    def bump(env, _rcpt):
        r = Reader(env.payload)
        share = g.deserialize_scalar(r.fixed(g.scalar_len))
        rest = env.payload[g.scalar_len :]
        return [with_payload(env, g.serialize_scalar(share + 1) + rest)]

    res = run_dkg(suite, 2, 3, tamper={3: only(2, bump, recipients={1})})
    assert_named(res, 3, InvalidShareError, victims=[1])


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_dkg_bad_proof_of_knowledge_is_named(suite: Ciphersuite) -> None:
    g = suite.group

    def bad_mu(env, _rcpt):
        # round-1 layout: u16 count, count elements, R, mu, 32-byte chain-code commitment
        mu_at = 2 + 3 * g.element_len
        mu = g.deserialize_scalar(env.payload[mu_at : mu_at + g.scalar_len])
        p = env.payload
        return [
            with_payload(env, p[:mu_at] + g.serialize_scalar(mu + 1) + p[mu_at + g.scalar_len :])
        ]

    res = run_dkg(suite, 2, 3, tamper={2: only(1, bad_mu)})
    assert_named(res, 2, InvalidProofError, victims=[1, 3])


class LongCommitmentParty(DkgParty):
    def _public_commitment(self):
        c = super()._public_commitment()
        return (*c, self.suite.group.base_mult(7))


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_dkg_commitment_of_wrong_length_is_named(suite: Ciphersuite) -> None:
    from signer_nodes.mpc.simulation import run_protocol

    sid = session_id()
    parties = {i: DkgParty(suite, sid, i, [1, 2, 3], 2) for i in (1, 3)}
    parties[2] = LongCommitmentParty(suite, sid, 2, [1, 2, 3], 2)
    res = run_protocol(parties)
    assert_named(res, 2, InvalidCommitmentError, victims=[1, 3])


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_dkg_equivocating_broadcast_caught_by_echo(suite: Ciphersuite) -> None:
    """Party 3 sends one valid round-1 broadcast to party 1 and another valid
    one to party 2; the echo check names party 3."""
    sid = session_id()
    twin = DkgParty(suite, sid, 3, [1, 2, 3], 2)
    (alternative,) = twin.start()
    res = run_dkg(
        suite, 2, 3, sid=sid, tamper={3: only(1, lambda env, _r: [alternative], recipients={2})}
    )
    for victim in (1, 2):
        assert victim not in res.outputs
        assert isinstance(res.aborted[victim], EquivocationError)
    assert res.aborted[2].culprits == {3}  # contradicts 3's own echo: provable
    # Party 1 cannot tell whether 3 equivocated or 2 lies in its echo: abort, no blame.
    assert res.aborted[1].culprits == frozenset()


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_dkg_message_for_another_session_is_refused(suite: Ciphersuite) -> None:
    other = session_id()

    def also_foreign(env, _rcpt):
        return [dataclasses.replace(env, session_id=other), env]

    res = run_dkg(suite, 2, 3, tamper={2: only(1, also_foreign)})
    # The foreign copy is named and dropped; the genuine session completes.
    assert len(res.outputs) == 3
    for victim in (1, 3):
        assert any(
            isinstance(e, ForeignSessionError) and e.culprits == {2} for e in res.errors[victim]
        )


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_dkg_replayed_message_is_refused(suite: Ciphersuite) -> None:
    res = run_dkg(suite, 2, 3, tamper={1: only(2, lambda env, _r: [env, env])})
    assert len(res.outputs) == 3  # the replay changed nothing
    for victim in (2, 3):
        assert any(
            isinstance(e, DuplicateMessageError) and e.culprits == {1} for e in res.errors[victim]
        )


def test_dkg_replay_from_an_earlier_session_is_refused() -> None:
    suite = FROST_SECP256K1
    old = DkgParty(suite, session_id(), 2, [1, 2, 3], 2)
    (stale,) = old.start()
    current = DkgParty(suite, session_id(), 1, [1, 2, 3], 2)
    current.start()
    with pytest.raises(ForeignSessionError) as err:
        current.receive(stale)
    assert err.value.culprits == {2}


def test_dkg_two_different_messages_in_one_round_abort() -> None:
    suite = FROST_ED25519
    sid = session_id()
    me = DkgParty(suite, sid, 1, [1, 2, 3], 2)
    me.start()
    (first,) = DkgParty(suite, sid, 2, [1, 2, 3], 2).start()
    (second,) = DkgParty(suite, sid, 2, [1, 2, 3], 2).start()
    me.receive(first)
    with pytest.raises(EquivocationError) as err:
        me.receive(second)
    assert err.value.culprits == {2}
    with pytest.raises(SessionAbortedError):
        me.receive(first)


def test_dkg_unknown_sender_and_round_are_refused() -> None:
    suite = FROST_ED25519
    sid = session_id()
    me = DkgParty(suite, sid, 1, [1, 2, 3], 2)
    me.start()
    (msg,) = DkgParty(suite, sid, 2, [1, 2, 3], 2).start()
    for bad in (
        dataclasses.replace(msg, sender=9),
        dataclasses.replace(msg, round=7),
        dataclasses.replace(msg, recipient=3),
    ):
        with pytest.raises(UnexpectedMessageError):
            me.receive(bad)


ED_BAD_POINTS = {
    "identity": bytes([1]) + bytes(31),
    "small-order": bytes.fromhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
    ),
    "non-canonical": bytes.fromhex(
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
    ),
}
SECP_BAD_POINTS = {
    "identity": bytes(33),
    "off-curve": b"\x02" + bytes(31) + b"\x05",
    "non-canonical": b"\x02"
    + bytes.fromhex("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc30"),
    "uncompressed-prefix": b"\x04" + bytes(32),
}


@pytest.mark.parametrize(
    ("suite", "bad"),
    [(FROST_ED25519, v) for v in ED_BAD_POINTS.values()]
    + [(FROST_SECP256K1, v) for v in SECP_BAD_POINTS.values()],
    ids=[f"ed25519-{k}" for k in ED_BAD_POINTS] + [f"secp256k1-{k}" for k in SECP_BAD_POINTS],
)
def test_dkg_invalid_point_encoding_is_named(suite: Ciphersuite, bad: bytes) -> None:
    def corrupt(env, _rcpt):
        p = env.payload
        return [with_payload(env, p[:2] + bad + p[2 + len(bad) :])]

    res = run_dkg(suite, 2, 3, tamper={2: only(1, corrupt)})
    assert_named(res, 2, InvalidMessageError, victims=[1, 3])


# -- signing -----------------------------------------------------------------


@pytest.fixture(scope="module", params=SUITES, ids=SUITE_IDS)
def keyset(request):
    suite = request.param
    keys, public = dkg_keys(suite, 2, 3)
    return suite, keys, public


def test_bad_signature_share_is_named_and_no_signature(keyset) -> None:
    suite, keys, public = keyset
    g = suite.group

    def bump(env, _rcpt):
        r = Reader(env.payload)
        ident = r.u16()
        z = g.deserialize_scalar(r.fixed(g.scalar_len))
        return [with_payload(env, bytes(Writer().u16(ident).fixed(g.serialize_scalar(z + 1))))]

    res = run_sign(suite, keys, public, [1, 3], b"m", tamper={3: only(3, bump)})
    assert COORDINATOR not in res.outputs
    assert isinstance(res.aborted[COORDINATOR], InvalidSignatureShareError)
    assert res.aborted[COORDINATOR].culprits == {3}


def test_signing_message_for_another_session_is_refused(keyset) -> None:
    suite, keys, public = keyset
    other = session_id()
    res = run_sign(
        suite,
        keys,
        public,
        [1, 2],
        b"m",
        tamper={2: only(3, lambda env, _r: [dataclasses.replace(env, session_id=other)])},
    )
    assert COORDINATOR not in res.outputs
    assert any(
        isinstance(e, ForeignSessionError) and e.culprits == {2} for e in res.errors[COORDINATOR]
    )


def test_signing_replayed_share_is_refused(keyset) -> None:
    suite, keys, public = keyset
    res = run_sign(
        suite, keys, public, [1, 2], b"m", tamper={1: only(3, lambda env, _r: [env, env])}
    )
    assert COORDINATOR in res.outputs
    assert any(
        isinstance(e, DuplicateMessageError) and e.culprits == {1} for e in res.errors[COORDINATOR]
    )


def test_signing_invalid_commitment_encoding_is_named(keyset) -> None:
    suite, keys, public = keyset
    bad = ED_BAD_POINTS["small-order"] if suite is FROST_ED25519 else SECP_BAD_POINTS["off-curve"]

    def corrupt(env, _rcpt):
        return [with_payload(env, env.payload[:2] + bad + env.payload[2 + len(bad) :])]

    res = run_sign(suite, keys, public, [2, 3], b"m", tamper={2: only(1, corrupt)})
    assert isinstance(res.aborted[COORDINATOR], InvalidMessageError)
    assert res.aborted[COORDINATOR].culprits == {2}


def test_coordinator_swapping_the_message_gets_no_share(keyset) -> None:
    suite, keys, public = keyset
    from signer_nodes.mpc.frost import SigningPackage

    def swap(env, _rcpt):
        package = SigningPackage.decode(suite, env.payload)
        forged = dataclasses.replace(package, message=b"pay the attacker")
        return [with_payload(env, forged.encode(suite))]

    res = run_sign(suite, keys, public, [1, 2], b"pay alice", tamper={COORDINATOR: only(2, swap)})
    for signer in (1, 2):
        assert isinstance(res.aborted[signer], InvalidMessageError)
        assert res.aborted[signer].culprits == {COORDINATOR}
    assert COORDINATOR not in res.outputs


def test_coordinator_replacing_a_signers_commitment_gets_no_share(keyset) -> None:
    suite, keys, public = keyset
    from signer_nodes.mpc.frost import SigningPackage, commit

    def replace_commitment(env, _rcpt):
        package = SigningPackage.decode(suite, env.payload)
        _, fresh = commit(suite, 1, keys[1].signing_share)
        forged = dataclasses.replace(package, commitments=(fresh, *package.commitments[1:]))
        return [with_payload(env, forged.encode(suite))]

    res = run_sign(
        suite, keys, public, [1, 2], b"m", tamper={COORDINATOR: only(2, replace_commitment)}
    )
    assert isinstance(res.aborted[1], InvalidMessageError) and res.aborted[1].culprits == {
        COORDINATOR
    }
