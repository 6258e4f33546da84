"""The DKG echo check blames only what an honest party can prove.

A false echo must not get an honest dealer named (the service excludes named
culprits), while a dealer that really equivocates in the broadcast round must
still stop every honest party from producing a key, and be named by the
parties that can prove it.  The old check named every dealer whose entry
differed, so the framing tests below failed on it.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from signer_nodes.mpc.dkg import DkgParty
from signer_nodes.mpc.dkg.echo import check_echoes
from signer_nodes.mpc.encoding import Reader, Writer
from signer_nodes.mpc.errors import EquivocationError
from signer_nodes.mpc.frost import FROST_SECP256K1, Ciphersuite
from signer_nodes.mpc.session import Envelope
from signer_nodes.mpc.simulation import SimulationResult, Tamper, run_protocol
from tests.frost.helpers import SUITE_IDS, SUITES, dkg_keys, run_dkg, session_id


def rewrite_echo(suite: Ciphersuite, payload: bytes, entries: dict[int, bytes]) -> bytes:
    """Round-2 layout: share, u16 count, count digests, 32-byte chain code.
    ``entries`` maps an index into the echo to its new digest."""
    g = suite.group
    r = Reader(payload)
    share = r.fixed(g.scalar_len)
    echo = [r.fixed(32) for _ in range(r.u16())]
    chain_code = r.fixed(32)
    r.finish()
    for k, digest in entries.items():
        echo[k] = digest
    w = Writer().fixed(share).u16(len(echo))
    for digest in echo:
        w.fixed(digest)
    return bytes(w.fixed(chain_code))


def lying_echo(suite: Ciphersuite, about: dict[int, int]) -> Tamper:
    """The sender's round-2 echo to recipient ``r`` carries a false digest for
    party ``about[r]`` (recipients not in ``about`` get the honest echo)."""

    def hook(env: Envelope, rcpt: int) -> list[Envelope]:
        if env.round != 2 or rcpt not in about:
            return [env]
        target = about[rcpt] - 1  # parties are 1..n, echo entries in that order
        r = Reader(env.payload)
        r.fixed(suite.group.scalar_len)
        r.u16()
        honest = [r.fixed(32) for _ in range(target + 1)][target]
        false = hashlib.sha256(b"lie" + honest).digest()
        return [dataclasses.replace(env, payload=rewrite_echo(suite, env.payload, {target: false}))]

    return hook


def honest_view(res: SimulationResult, honest: list[int]) -> dict[int, EquivocationError]:
    """Every honest party aborted with an echo-check error; returns them."""
    errors = {}
    for pid in honest:
        assert pid not in res.outputs, f"party {pid} produced a key despite the cheat"
        err = res.aborted[pid]
        assert isinstance(err, EquivocationError), err
        errors[pid] = err
    return errors


def refresh_parties(suite: Ciphersuite, t: int, n: int) -> dict[int, DkgParty]:
    keys, public = dkg_keys(suite, t, n)
    sid = session_id()
    return {i: DkgParty(suite, sid, i, sorted(keys), t, refresh_of=(keys[i], public)) for i in keys}


# -- a lying echoer --------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("mode", ["keygen", "refresh"])
def test_lying_echo_cannot_frame_an_honest_dealer(suite: Ciphersuite, mode: str) -> None:
    """Party 3 echoes a false digest for honest dealer 1 to everyone.  Dealer 1
    knows what it broadcast and names 3; party 2 cannot tell a lie from an
    equivocation by 1 and names no one.  The old check had both name dealer 1."""
    tamper = {3: lying_echo(suite, {1: 1, 2: 1})}
    if mode == "keygen":
        res = run_dkg(suite, 2, 3, tamper=tamper)
    else:
        res = run_protocol(refresh_parties(suite, 2, 3), tamper=tamper)
    errors = honest_view(res, [1, 2])
    assert errors[1].culprits == {3}
    assert errors[2].culprits == frozenset()
    assert res.culprits() <= {3}


def test_lying_echo_among_five_names_no_honest_dealer() -> None:
    """n = 5, t = 3: party 5 tells each recipient a different lie about a
    dealer other than the recipient, plus one lie about dealer 2 to dealer 2
    itself.  Everyone aborts; only dealer 2 can prove the lie and names 5."""
    suite = FROST_SECP256K1
    about = {1: 3, 2: 2, 3: 4, 4: 1}
    res = run_dkg(suite, 3, 5, tamper={5: lying_echo(suite, about)})
    errors = honest_view(res, [1, 2, 3, 4])
    assert errors[2].culprits == {5}
    for pid in (1, 3, 4):
        assert errors[pid].culprits == frozenset(), pid
    assert res.culprits() <= {5}


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_echo_contradicting_the_echoers_own_broadcast_names_it(suite: Ciphersuite) -> None:
    res = run_dkg(suite, 2, 3, tamper={3: lying_echo(suite, {1: 3, 2: 3})})
    for err in honest_view(res, [1, 2]).values():
        assert err.culprits == {3}


def test_lie_to_one_party_only_aborts_that_party() -> None:
    """Without a broadcast channel an honest party that saw only honest echoes
    finishes; the one lied to aborts without blaming dealer 1."""
    suite = FROST_SECP256K1
    res = run_dkg(suite, 2, 3, tamper={3: lying_echo(suite, {2: 1})})
    errors = honest_view(res, [2])
    assert errors[2].culprits == frozenset()
    assert 1 in res.outputs
    assert res.culprits() == set()


# -- an equivocating dealer ------------------------------------------------------


def equivocate(suite: Ciphersuite, sid: bytes, *, consistent_echo: bool) -> Tamper:
    """Dealer 3 sends party 2 a second valid round-1 broadcast; with
    ``consistent_echo`` its round-2 echo to party 2 matches that version."""
    twin = DkgParty(suite, sid, 3, [1, 2, 3], 2)
    (alternative,) = twin.start()

    def hook(env: Envelope, rcpt: int) -> list[Envelope]:
        if rcpt != 2:
            return [env]
        if env.round == 1:
            return [alternative]
        if consistent_echo:
            payload = rewrite_echo(suite, env.payload, {2: alternative.digest()})
            return [dataclasses.replace(env, payload=payload)]
        return [env]

    return hook


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_equivocating_dealer_is_detected_and_named_where_provable(suite: Ciphersuite) -> None:
    """Party 2 got a broadcast from 3 that contradicts 3's own echo: it names
    3.  Party 1 only sees party 2's echo disagree about 3 (equivocation or a
    lie by 2?) and aborts without naming anyone."""
    sid = session_id()
    res = run_dkg(suite, 2, 3, sid=sid, tamper={3: equivocate(suite, sid, consistent_echo=False)})
    errors = honest_view(res, [1, 2])
    assert errors[2].culprits == {3}
    assert errors[1].culprits == frozenset()
    honest_named = set().union(*(e.culprits for e in errors.values()))
    assert honest_named == {3}


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_careful_equivocator_still_aborts_every_honest_party(suite: Ciphersuite) -> None:
    """Dealer 3 also echoes to each party the version it sent that party, so
    nothing is provable; the honest parties' echoes to each other still
    disagree, and neither produces a key."""
    sid = session_id()
    res = run_dkg(suite, 2, 3, sid=sid, tamper={3: equivocate(suite, sid, consistent_echo=True)})
    for err in honest_view(res, [1, 2]).values():
        assert err.culprits == frozenset()


# -- the rule itself -------------------------------------------------------------

A, B, C, D = (bytes([k]) * 32 for k in range(4))


def test_matching_echoes_pass() -> None:
    check_echoes(1, [1, 2, 3], [A, B, C], {2: [A, B, C], 3: [A, B, C]}, "x")


def test_provable_culprit_is_named_beside_an_unattributable_mismatch() -> None:
    # party 2 disagrees only about 3 (not attributable); party 3 about us (provable)
    with pytest.raises(EquivocationError) as err:
        check_echoes(1, [1, 2, 3], [A, B, C], {2: [A, B, D], 3: [D, B, C]}, "x")
    assert err.value.culprits == {3}


def test_third_party_mismatch_names_no_one() -> None:
    with pytest.raises(EquivocationError) as err:
        check_echoes(1, [1, 2, 3, 4], [A, B, C, D], {2: [A, B, D, D], 3: [A, B, C, D]}, "x")
    assert err.value.culprits == frozenset()
    assert "abort only" in str(err.value)


def test_echo_wrong_about_us_and_a_third_party_names_only_the_echoer() -> None:
    with pytest.raises(EquivocationError) as err:
        check_echoes(1, [1, 2, 3], [A, B, C], {2: [D, B, D]}, "x")
    assert err.value.culprits == {2}
