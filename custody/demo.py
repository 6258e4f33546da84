"""The demos behind ``custody demo``.

``run_cluster_demo``: a real 3-node cluster (separate processes, mTLS gRPC,
sealed envelopes, SQLite) started from a fresh data dir: keys are created by
DKG, signatures are requested through the API and verified by independent
libraries, then a node is killed and the other two still sign.

``run_in_process_demo`` (``--in-process``): the same protocol cores in one
process over the simulated network, for every 2-of-3 subset, plus a refresh.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coincurve import PublicKeyXOnly
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.console import Console
from rich.table import Table

from policy.payloads.messages import message_digest
from signer_nodes.mpc.dkg import DkgOutput, DkgParty
from signer_nodes.mpc.frost import FROST_BIP340, FROST_ED25519, FROST_SECP256K1, Ciphersuite
from signer_nodes.mpc.frost.keys import KeyPackage, PublicKeyPackage
from signer_nodes.mpc.frost.session import COORDINATOR, FrostCoordinator, FrostSigner
from signer_nodes.mpc.session import RoundBasedParty
from signer_nodes.mpc.simulation import run_protocol


@dataclass(frozen=True)
class DemoLine:
    scheme: str
    step: str
    detail: str
    ok: bool


def _verifier_name(suite: Ciphersuite) -> str:
    if suite is FROST_ED25519:
        return "OpenSSL Ed25519 (cryptography)"
    if suite is FROST_BIP340:
        return "libsecp256k1 BIP340 (coincurve)"
    return "RFC 9591 verification equation"


def _verify(suite: Ciphersuite, pk: bytes, msg: bytes, sig: bytes) -> bool:
    if suite is FROST_ED25519:
        try:
            Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
        except InvalidSignature:
            return False
        return True
    if suite is FROST_BIP340:
        return bool(PublicKeyXOnly(pk).verify(sig, msg))
    return suite.verify(suite.group.deserialize_element(pk), msg, sig)


def _verify_ecdsa(pk: bytes, digest: bytes, sig: bytes, recovery_id: int) -> bool:
    """libsecp256k1 verification (low s enforced) and py-ecc public-key recovery."""
    from coincurve import PublicKey
    from coincurve.ecdsa import cdata_to_der, deserialize_compact
    from py_ecc.secp256k1 import secp256k1

    if len(sig) != 64 or recovery_id not in (0, 1):
        return False
    if not PublicKey(pk).verify(cdata_to_der(deserialize_compact(sig)), digest, hasher=None):
        return False
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    x, y = secp256k1.ecdsa_raw_recover(digest, (27 + recovery_id, r, s))
    return bool(PublicKey.from_point(x, y).format(compressed=True) == pk)


def _dkg(
    suite: Ciphersuite,
    t: int,
    n: int,
    refresh: tuple[dict[int, KeyPackage], PublicKeyPackage] | None = None,
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    sid = secrets.token_bytes(32)
    ids = list(range(1, n + 1))
    parties = {
        i: DkgParty(
            suite,
            sid,
            i,
            ids,
            t,
            refresh_of=None if refresh is None else (refresh[0][i], refresh[1]),
        )
        for i in ids
    }
    res = run_protocol(parties)
    if len(res.outputs) != n:
        raise RuntimeError(f"key generation failed: {res.aborted or res.errors}")
    outputs: dict[int, DkgOutput] = res.outputs
    return {i: o.key_package for i, o in outputs.items()}, outputs[1].public_key_package


def _sign(
    suite: Ciphersuite,
    keys: dict[int, KeyPackage],
    public: PublicKeyPackage,
    signers: tuple[int, ...],
    msg: bytes,
) -> bytes:
    sid = secrets.token_bytes(32)
    parties: dict[int, RoundBasedParty] = {
        i: FrostSigner(suite, sid, keys[i], expected_message=msg) for i in signers
    }
    parties[COORDINATOR] = FrostCoordinator(suite, sid, public, list(signers), msg)
    res = run_protocol(parties)
    if COORDINATOR not in res.outputs:
        raise RuntimeError(f"signing failed: {res.aborted or res.errors}")
    signature: bytes = res.outputs[COORDINATOR]
    return signature


def run_demo(t: int = 2, n: int = 3) -> list[DemoLine]:
    lines: list[DemoLine] = []
    for name, suite in (
        ("eddsa-ed25519", FROST_ED25519),
        ("frost-secp256k1", FROST_SECP256K1),
        ("schnorr-bip340", FROST_BIP340),
    ):
        keys, public = _dkg(suite, t, n)
        pk = suite.serialize_public_key(public.group_public_key)
        lines.append(
            DemoLine(name, "key generated", f"{t}-of-{n} DKG, public key {pk.hex()}", True)
        )
        for signers in itertools.combinations(range(1, n + 1), t):
            msg = f"withdraw 1.5 to treasury, signers {signers}".encode()
            sig = _sign(suite, keys, public, signers, msg)
            ok = _verify(suite, pk, msg, sig)
            lines.append(
                DemoLine(
                    name, f"nodes {signers} signed", f"verified by {_verifier_name(suite)}", ok
                )
            )
        new_keys, new_public = _dkg(suite, t, n, refresh=(keys, public))
        same = new_public.group_public_key == public.group_public_key
        msg = b"after refresh"
        ok = same and _verify(suite, pk, msg, _sign(suite, new_keys, new_public, (1, n), msg))
        lines.append(DemoLine(name, "shares refreshed", "same public key, new shares sign", ok))
    return lines


def run_in_process_demo(console: Console, t: int = 2, n: int = 3) -> bool:
    console.print(
        f"[bold]MPC custody, in-process[/bold]: {n} simulated signer nodes, any {t} sign; "
        "the production protocol cores over a simulated network."
    )
    table = Table("scheme", "step", "detail", "result")
    lines = run_demo(t, n)
    for line in lines:
        table.add_row(
            line.scheme,
            line.step,
            line.detail,
            "[green]ok[/green]" if line.ok else "[red]FAILED[/red]",
        )
    console.print(table)
    ok = all(line.ok for line in lines)
    if ok:
        console.print("[green]all signatures verified by independent libraries[/green]")
    return ok


def _mark(good: bool) -> str:
    return "[green]valid[/green]" if good else "[red]INVALID[/red]"


def _policy_story(say: Any, client: Any, root: Path, key_id: str) -> bool:
    """A 2 ETH transfer is above the starter policy's 1 ETH limit: every node wants a
    treasury approval; an approver signs it through GovernanceService; then it is signed."""
    from custody._pb.custody.v1 import custody_pb2 as pb
    from custody.governance.client import GovernanceClient
    from custody.governance.genesis import approver_ids, approver_key_path, governance_root
    from custody.governance.keys import load_private_key
    from policy.payloads.ethereum import address_of, build_eip1559
    from policy.request import RequestType

    to = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    payload = build_eip1559(
        chain_id=1,
        nonce=0,
        to=to,
        value=2 * 10**18,
        max_fee_per_gas=30 * 10**9,
        max_priority_fee_per_gas=10**9,
    )
    path = "m/44/60/0/0/0"
    pending = client.submit(
        key_id,
        request_type=RequestType.TRANSFER,
        chain="ethereum",
        asset="ETH",
        payload=payload,
        destination=to,
        amount=2 * 10**18,
        path=path,
        wait=False,
    )
    waiting = pending.state == pb.REQUEST_STATE_PENDING_APPROVAL
    say(
        f"[bold]3.[/bold] policy: transfer of 2 ETH to {to[:10]}... is "
        f"{'[yellow]PENDING_APPROVAL[/yellow]' if waiting else pending.state} "
        f"(needs {pending.approval_requirement or '?'})"
    )
    approver = approver_ids(client.tenant)[0]
    key = load_private_key(approver_key_path(governance_root(root), approver))
    with GovernanceClient.from_data_dir(root) as governance:
        governance.decide(client.tenant, f"{client.tenant}:{pending.request_id}", approver, key)
    done = client.wait(pending.request_id)
    sender = address_of(done.public_key)
    good = (
        waiting
        and done.state == pb.REQUEST_STATE_SUCCEEDED
        and _verify_ecdsa(done.public_key, done.signed_digest, done.signature, done.recovery_id)
    )
    say(
        f"   {approver} approved (Ed25519 over the request digest); every node re-checked "
        f"initiator, approval and policy and signed the EIP-1559 hash from {sender}: {_mark(good)}"
    )
    return good


def run_cluster_demo(console: Console, data_dir: Path | None = None) -> bool:
    from custody.client import CustodyClient
    from custody.cluster import Cluster
    from custody.init import init_cluster

    root = data_dir or Path(tempfile.mkdtemp(prefix="custody-demo-")) / "data"
    say = console.print
    say(
        f"[bold]1.[/bold] custody init: CA, mTLS certificates, HSM tokens, node identities (t=2 of 3), officer quorum and starter policy in {root}"
    )
    config = init_cluster(root, 3, 2)
    ok = True
    with Cluster(config) as cluster:
        say(
            f"[bold]2.[/bold] custody up: 3 nodes and the coordinator, API at {config.coordinator_address}"
        )
        with CustodyClient.from_data_dir(root) as client:
            for scheme, suite in (
                ("eddsa-ed25519", FROST_ED25519),
                ("schnorr-bip340", FROST_BIP340),
            ):
                started = time.perf_counter()
                key = client.create_key(scheme)
                ms = (time.perf_counter() - started) * 1000
                say(
                    f"[bold]3.[/bold] {scheme}: DKG on 3 nodes in {ms:.0f} ms, {key.key_id} = {key.public_key.hex()}"
                )
                msg = b"withdraw 1.5 BTC to treasury"
                result = client.sign(key.key_id, message=msg)
                # Every node checked the initiator's signature and the policy, and signed
                # the message's domain-separated digest (policy/payloads/messages.py).
                good = result.signed_digest == message_digest(msg) and _verify(
                    suite, result.public_key, result.signed_digest, result.signature
                )
                ok &= good
                say(
                    f"   signed by nodes {list(result.signers)}; {_verifier_name(suite)}: {_mark(good)}"
                )
                if scheme == "schnorr-bip340":
                    derived = client.sign(key.key_id, digest=bytes(32), path="m/0/1")
                    good = _verify(suite, derived.public_key, bytes(32), derived.signature)
                    ok &= (
                        good and derived.public_key == client.derive(key.key_id, "m/0/1").public_key
                    )
                    say(f"   BIP32 m/0/1 child {derived.public_key.hex()[:16]}...: {_mark(good)}")
            started = time.perf_counter()
            ecdsa = client.create_key("ecdsa-secp256k1")
            ms = (time.perf_counter() - started) * 1000
            say(
                f"[bold]3.[/bold] ecdsa-secp256k1: DKLs23 key generation (DKG + pairwise base OTs) in {ms:.0f} ms, "
                f"{ecdsa.key_id} = {ecdsa.public_key.hex()}"
            )
            digest = hashlib.sha256(b"send 2 ETH to 0x5aAe...").digest()
            started = time.perf_counter()
            r = client.sign(ecdsa.key_id, digest=digest, path="m/44/60/0/0/0")
            ms = (time.perf_counter() - started) * 1000
            child = client.derive(ecdsa.key_id, "m/44/60/0/0/0").public_key
            good = r.public_key == child and _verify_ecdsa(
                child, digest, r.signature, r.recovery_id
            )
            ok &= good
            say(
                f"   m/44/60/0/0/0 signed by nodes {list(r.signers)} in {ms:.0f} ms (recovery id {r.recovery_id}); "
                f"libsecp256k1 (coincurve) + py-ecc public-key recovery: {_mark(good)}"
            )
            ok &= _policy_story(say, client, root, ecdsa.key_id)
            cluster.kill("node-1")
            say("[bold]4.[/bold] kill -9 node-1")
            result = client.sign(key.key_id, message=b"still available")
            good = _verify(FROST_BIP340, result.public_key, result.signed_digest, result.signature)
            ok &= good and 1 not in result.signers
            say(f"   signed by nodes {list(result.signers)} without node-1: {_mark(good)}")
    say(
        "[bold]5.[/bold] cluster stopped"
        + ("; [green]every signature verified by an independent library[/green]" if ok else "")
    )
    return ok
