"""Taking a snapshot at a cut-off (ARCHITECTURE.md section 4, "Proof of Reserves").

Inputs are injected, so the same code runs on the ledger in production and on CSV
files in dry runs:

* liabilities: rows ``(customer_id, asset, amount)`` from any iterable or a
  callable returning one (the ledger at the cut-off, :mod:`custody.por.ledger`), or
  from a CSV (:func:`proofs.rows.read_liabilities_csv`); customer ids must be
  namespaced by a tenant of the cluster (:mod:`custody.por.customers`); amounts in
  the asset's minor unit, rounded **up** to its PoR unit;
* custody keys with their balances in minor units (:class:`CustodyKey`; CSV via
  :func:`custody_keys_from_csv`), rounded **down** to the PoR unit;
* the PoR unit of every asset (:data:`DEFAULT_UNIT_EXPONENTS`, overridable);
* ``sign_challenge(key_id, challenge) -> (scheme, public_key, signature)``: the
  threshold signature of a custody key over the snapshot's challenge
  (``docs/por-format.md`` section 4; :class:`Challenge` carries the 32-byte digest
  and its preimage). :class:`ClusterChallengeSigner` asks the cluster through the
  policy path, as a ``por_attestation`` request;
* the service's snapshot key (:func:`custody.por.keys.ensure_snapshot_key`).

Every input is checked before anything is signed, and every custody signature
is verified before the snapshot is signed: the service never publishes a snapshot
that ``custody-por audit`` would reject for a bad control signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import grpc

from custody.client import OFFCHAIN, SCHEME_NAMES, CustodyClient, OperationFailed
from custody.por.customers import namespace_problem
from custody.por.errors import SnapshotCode, SnapshotError
from policy.request import RequestType
from proofs import control
from proofs import encoding as enc
from proofs import fields as f
from proofs.build import (
    BuiltSnapshot,
    Liabilities,
    PreparedSnapshot,
    ServiceSigner,
    prepare_snapshot,
    sign_snapshot,
)
from proofs.errors import PorInputError, ReasonCode
from proofs.rows import Row, check_amount, read_custody_csv, to_units
from proofs.snapshot import CustodyEntry

LiabilityRows = Iterable[Row | tuple[str, str, int]]
LiabilitySource = LiabilityRows | Callable[[], LiabilityRows]

DEFAULT_UNIT_EXPONENTS: Mapping[str, int] = MappingProxyType({"ETH": 9})
"""PoR unit per asset, as ``10^e`` of the ledger's minor unit (``docs/por-format.md`` 1.1).

ETH is counted in gwei: the ledger holds wei, and 2^64 wei is only 18.4 ETH, whereas
2^64 gwei is 1.8e10 ETH (well above the supply) at a precision of 10^-9 ETH. Every
other asset defaults to its minor unit (satoshi: 2^64 sat is 1.8e11 BTC; 6-decimal
tokens such as USDC: 1.8e13). ``custody por snapshot --unit ASSET=E`` overrides;
a unit must stay the same across snapshots for customers to compare them.
"""


@dataclass(frozen=True, slots=True)
class Challenge:
    """What a custody key attests: ``digest`` = SHA-256(``preimage``) (format section 4).

    Signatures are over ``digest`` exactly as :mod:`proofs.control` verifies them;
    signer nodes are given ``preimage`` so they can check it names a real snapshot.
    """

    preimage: bytes

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.preimage).digest()


ChallengeSigner = Callable[[str, Challenge], tuple[str, bytes, bytes]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodyKey:
    """A custody key whose control the snapshot proves, with what it holds per asset
    (exact minor amounts, as on chain at the cut-off)."""

    key_id: str
    balances: Mapping[str, int] = field(default_factory=dict)
    address: str | None = None


def timestamp(when: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, the format's only time form."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_snapshot_id(cutoff: str) -> str:
    """``por-<cutoff>-<random>``: sorts by cut-off, never collides with a rerun."""
    return f"por-{cutoff.replace('-', '').replace(':', '')}-{secrets.token_hex(4)}"


def load_liabilities(
    source: LiabilitySource,
    tenants: Collection[str],
    unit_exponents: Mapping[str, int] = DEFAULT_UNIT_EXPONENTS,
) -> Liabilities:
    """Read and check every row, including that each customer belongs to a tenant, and
    round each amount up to its asset's PoR unit."""
    rows = source() if callable(source) else source

    def checked() -> Iterator[Row | tuple[str, str, int]]:
        for i, row in enumerate(rows, start=1):
            cid = (
                row.name
                if isinstance(row, Row)
                else row[0]
                if isinstance(row, tuple) and row
                else None
            )
            if isinstance(cid, str):
                problem = namespace_problem(cid, tenants)
                if problem is not None:
                    where = row.where if isinstance(row, Row) else f"row {i}"
                    raise SnapshotError(SnapshotCode.CUSTOMER_NAMESPACE, f"{where}: {problem}")
            yield row

    return Liabilities.from_rows(checked(), unit_exponents)


def custody_keys_from_csv(path: str | Path) -> list[CustodyKey]:
    """Custody keys and balances from ``key_id,[address,]asset,amount`` (:mod:`proofs.rows`)."""
    return [
        CustodyKey(key_id=key_id, balances=balances, address=address)
        for key_id, (address, balances) in read_custody_csv(path).items()
    ]


def _check_custody(custody: Sequence[CustodyKey], liabilities: Liabilities) -> None:
    """Every custody input, including its conversion to PoR units, before anything is signed."""
    assets = liabilities.assets
    exponents = dict(zip(assets, liabilities.unit_exponents, strict=True))
    seen: set[str] = set()
    for key in custody:
        if not f.ID_RE.fullmatch(key.key_id):
            raise PorInputError(ReasonCode.MALFORMED, f"custody key id {key.key_id[:40]!r}")
        address = key.address
        if address is not None and not (
            1 <= len(address) <= 128 and address.isascii() and address.isprintable()
        ):
            raise PorInputError(
                ReasonCode.MALFORMED,
                f"custody key {key.key_id}: address must be 1-128 printable ASCII",
            )
        if key.key_id in seen:
            raise PorInputError(ReasonCode.DUPLICATE_KEY, f"custody key {key.key_id} listed twice")
        seen.add(key.key_id)
        unknown = sorted(set(key.balances) - set(assets))
        if unknown:
            raise PorInputError(
                ReasonCode.UNKNOWN_ASSET,
                f"custody key {key.key_id} holds {unknown}, which no customer is owed",
            )
        for asset, amount in key.balances.items():
            where = f"custody key {key.key_id}"
            to_units(check_amount(amount, where), asset, exponents[asset], where, round_up=False)


def _control_entries(
    prepared: PreparedSnapshot, custody: Sequence[CustodyKey], sign_challenge: ChallengeSigner
) -> list[CustodyEntry]:
    entries = []
    public_keys: set[bytes] = set()
    challenge = Challenge(prepared.challenge_preimage)
    for key in custody:
        scheme, public_key, signature = sign_challenge(key.key_id, challenge)
        if not control.verify_signature(scheme, public_key, prepared.challenge, signature):
            raise SnapshotError(
                SnapshotCode.CONTROL_SIGNATURE_INVALID,
                f"the {scheme} signature of custody key {key.key_id} does not verify",
            )
        if public_key in public_keys:
            raise PorInputError(
                ReasonCode.DUPLICATE_KEY, f"custody key {key.key_id} repeats a public key"
            )
        public_keys.add(public_key)
        entries.append(
            prepared.custody_entry(
                key_id=key.key_id,
                scheme=scheme,
                public_key=public_key,
                signature=signature,
                balances=key.balances,
                address=key.address,
            )
        )
    return entries


def take_snapshot(
    liabilities: Liabilities,
    *,
    custody: Sequence[CustodyKey],
    sign_challenge: ChallengeSigner,
    service: ServiceSigner,
    cutoff: str,
    snapshot_id: str | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> BuiltSnapshot:
    """Build the tree, have every custody key sign the challenge, sign the snapshot.

    Salts are fresh random bytes per customer (``random_bytes``) and stay in the
    returned :class:`~proofs.build.BuiltSnapshot`; the store keeps them so that
    proofs can be issued again later.
    """
    _check_custody(custody, liabilities)
    prepared = prepare_snapshot(
        liabilities,
        snapshot_id=snapshot_id or new_snapshot_id(cutoff),
        cutoff=cutoff,
        created_at=timestamp(now()),
        random_bytes=random_bytes,
    )
    entries = _control_entries(prepared, custody, sign_challenge)
    return sign_snapshot(prepared, entries, service)


class ClusterChallengeSigner:
    """``sign_challenge`` through the custody API: a ``por_attestation`` request.

    A custody key belongs to one tenant, and only that tenant's proof-of-reserves
    initiator (``<tenant>-por``, which the starter policy allows to attest and nothing
    else) may have it sign. ``clients`` maps each tenant whose keys may be custody keys
    to a client signing as that initiator; :meth:`check_keys` finds each key's tenant.
    Every signer node parses the preimage (only a real challenge is signed) and signs
    what the format specifies: the challenge for Ed25519 and BIP340, its SHA-256 for
    ECDSA (:mod:`policy.payloads.messages`). The request id is derived from the key and
    the challenge: one request per key and snapshot, recognisable in the audit log.
    """

    def __init__(self, clients: Mapping[str, CustodyClient], *, timeout: float = 60.0) -> None:
        self.clients = dict(clients)
        self.timeout = timeout
        self._keys: dict[str, tuple[CustodyClient, str, bytes]] = {}

    def check_keys(self, key_ids: Iterable[str]) -> None:
        """Fail early, before any tree is built, if a custody key is unknown."""
        for key_id in key_ids:
            self._key(key_id)

    def _key(self, key_id: str) -> tuple[CustodyClient, str, bytes]:
        """The key's owner (its tenant's client), scheme and public key."""
        known = self._keys.get(key_id)
        if known is not None:
            return known
        for client in self.clients.values():
            try:
                key = client.get_key(key_id)
            except grpc.RpcError as exc:
                failure = _rpc_failure(key_id, exc)
                if failure.code is SnapshotCode.UNKNOWN_KEY:
                    continue  # another tenant's key, or no key at all
                raise failure from None
            scheme = SCHEME_NAMES.get(key.scheme)
            if scheme not in control.SCHEMES:
                raise SnapshotError(SnapshotCode.UNKNOWN_KEY, f"{key_id}: unsupported scheme")
            self._keys[key_id] = (client, scheme, bytes(key.public_key))
            return self._keys[key_id]
        tenants = ", ".join(self.clients)
        raise SnapshotError(
            SnapshotCode.UNKNOWN_KEY, f"no tenant ({tenants}) of the cluster has a key {key_id}"
        )

    def __call__(self, key_id: str, challenge: Challenge) -> tuple[str, bytes, bytes]:
        client, scheme, public_key = self._key(key_id)
        tag = f"{enc.TAG_PREFIX}request".encode() + b"\0" + key_id.encode() + b"\0"
        tag += challenge.digest
        try:
            result = client.submit(
                key_id,
                request_type=RequestType.POR_ATTESTATION,
                chain=OFFCHAIN,
                asset=OFFCHAIN,
                payload=challenge.preimage,
                request_id=f"por-{hashlib.sha256(tag).hexdigest()[:48]}",
                timeout=self.timeout,
            )
        except OperationFailed as exc:
            raise SnapshotError(SnapshotCode.SIGNING_FAILED, f"{key_id}: {exc}") from None
        except grpc.RpcError as exc:
            raise _rpc_failure(key_id, exc) from None
        return scheme, public_key, bytes(result.signature)


def _rpc_failure(key_id: str, exc: grpc.RpcError) -> SnapshotError:
    from signer_nodes.grpc_errors import reason_of

    reason = reason_of(exc) or exc.code().name
    if reason == "KEY_NOT_FOUND":
        return SnapshotError(SnapshotCode.UNKNOWN_KEY, f"the cluster has no key {key_id}")
    return SnapshotError(SnapshotCode.SIGNING_FAILED, f"{key_id}: {reason}: {exc.details()}")
