"""A real cluster (3 signer node processes, t = 2, and the coordinator) for the lying
coordinator tests, and the coordinator's side of the node protocol played by hand.

The test process holds the coordinator's client certificate, so it can do whatever a
compromised coordinator can do (ARCHITECTURE.md section 1): run presign sessions, draw FROST
nonces, and call ``SignShare`` with any :class:`Authorization` it likes. What it cannot do
is sign as an initiator, approver or officer without their keys; the tests use the keys
from ``<data-dir>/governance`` only where an honest party would sign.

Pool targets are 0 presignatures / 2 nonces, so key creation stays quick and the
coordinator does not consume pool entries behind the tests' backs.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from custody._pb.custody.node.v1 import node_pb2, node_pb2_grpc
from custody.client import CustodyClient
from custody.cluster import Cluster
from custody.governance.genesis import (
    approver_key_path,
    governance_root,
    initiator_id,
    initiator_key_path,
    officer_key_path,
)
from custody.governance.keys import load_private_key
from custody.init import init_cluster
from signer_nodes.db import make_engine
from signer_nodes.grpc_errors import reason_of
from signer_nodes.mpc.frost import SigningCommitments
from signer_nodes.mpc.frost.ciphersuite import Ciphersuite
from signer_nodes.node.policy_state import HistoryRow
from signer_nodes.node.store import KeyShareRow, NonceRow, SignRecordRow
from signer_nodes.wire.secure import SealedEnvelope

TENANTS = ("acme", "globex")
NODES = (1, 2, 3)


def _postgres_env(node_ids: Iterable[int]) -> dict[str, str]:
    """Fresh PostgreSQL databases when ``CUSTODY_TEST_POSTGRES`` is set (as tests/service)."""
    admin = os.environ.get("CUSTODY_TEST_POSTGRES")
    if not admin:
        return {}
    import sqlalchemy

    prefix = f"custody_liar_{secrets.token_hex(4)}"
    names = {"CUSTODY_DATABASE_URL": f"{prefix}_coordinator"}
    names |= {f"CUSTODY_NODE_{i}_DATABASE_URL": f"{prefix}_node{i}" for i in node_ids}
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for db in names.values():
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))
    engine.dispose()
    base = admin.rsplit("/", 1)[0]
    return {var: f"{base}/{db}" for var, db in names.items()}


@dataclass(frozen=True)
class PoolEntry:
    """What a node holds for one pool id: state, whether the sealed secret is still there,
    and the request it was consumed for."""

    state: str
    sealed: bool
    request_id: str | None


class LiarCluster:
    """The running cluster and the coordinator's channels to every node."""

    def __init__(self, root: Path) -> None:
        config = init_cluster(root, len(NODES), 2, TENANTS)
        config = dataclasses.replace(config, presignature_pool_target=0, nonce_pool_target=2)
        config.save()
        self.config = config
        self.env = _postgres_env(NODES)
        os.environ.update(self.env)  # so node_database_url() names the same databases
        self.cluster = Cluster(config, env=self.env)
        self.governance = governance_root(config.data_dir)
        self._channels: dict[int, grpc.Channel] = {}
        self._stubs: dict[int, node_pb2_grpc.NodeServiceStub] = {}
        self._engines: dict[int, Engine] = {}

    def start(self) -> None:
        self.cluster.start()
        cdir = self.config.coordinator_dir
        creds = grpc.ssl_channel_credentials(
            self.config.ca_cert.read_bytes(),
            (cdir / "client.key").read_bytes(),
            (cdir / "client.pem").read_bytes(),
        )
        for i in NODES:
            self._channels[i] = grpc.secure_channel(self.config.node(i).address, creds)
            self._stubs[i] = node_pb2_grpc.NodeServiceStub(self._channels[i])

    def stop(self) -> None:
        for channel in self._channels.values():
            channel.close()
        for engine in self._engines.values():
            engine.dispose()
        self.cluster.stop()
        for var in self.env:
            os.environ.pop(var, None)

    # -- parties ----------------------------------------------------------------------

    def client(self, tenant: str) -> CustodyClient:
        return CustodyClient.from_data_dir(self.config.data_dir, tenant)

    def initiator_key(self, tenant: str) -> Ed25519PrivateKey:
        return load_private_key(initiator_key_path(self.governance, initiator_id(tenant)))

    def approver_key(self, approver: str) -> Ed25519PrivateKey:
        return load_private_key(approver_key_path(self.governance, approver))

    def officer_key(self, officer: str) -> Ed25519PrivateKey:
        return load_private_key(officer_key_path(self.governance, officer))

    # -- the node protocol, as the coordinator ------------------------------------------

    def stub(self, node_id: int) -> node_pb2_grpc.NodeServiceStub:
        return self._stubs[node_id]

    def active(self, node_id: int) -> node_pb2.ActivatePolicyResponse:
        """The node's active policy version (an empty ActivatePolicy changes nothing)."""
        response: node_pb2.ActivatePolicyResponse = self.stub(node_id).ActivatePolicy(
            node_pb2.ActivatePolicyRequest()
        )
        return response

    def presign(self, key_id: str, signers: Iterable[int]) -> tuple[str, bytes]:
        """Run one DKLs23 presign session among ``signers``, relaying the sealed envelopes
        as the coordinator does (``Engine.run_session``). Returns the presignature id and
        its public part (PresignaturePublic encoding)."""
        parties = sorted(signers)
        session_id = secrets.token_bytes(32)
        start = node_pb2.StartSessionRequest(
            session_id=session_id,
            kind=node_pb2.SESSION_KIND_PRESIGN,
            key_id=key_id,
            scheme="ecdsa-dkls23",
            parties=parties,
        )
        updates = {i: self.stub(i).StartSession(start) for i in parties}
        final: dict[int, node_pb2.SessionUpdate] = {}
        for _ in range(16):
            inbox: dict[int, list[bytes]] = defaultdict(list)
            for node_id, update in updates.items():
                if update.state != node_pb2.SESSION_STATE_RUNNING:
                    final[node_id] = update
                for raw in update.envelopes:
                    env = SealedEnvelope.from_bytes(raw).envelope
                    targets = [env.recipient] if env.recipient is not None else parties
                    for t in targets:
                        if t != env.sender:
                            inbox[t].append(raw)
            running = [i for i in parties if i not in final]
            if not running:
                break
            updates = {
                i: self.stub(i).Deliver(
                    node_pb2.DeliverRequest(session_id=session_id, envelopes=inbox[i])
                )
                for i in running
                if inbox[i]
            }
        assert sorted(final) == parties, "the presign session did not finish"
        assert all(u.state == node_pb2.SESSION_STATE_FINISHED for u in final.values()), final
        publics = {u.presignature_public for u in final.values()}
        assert len(publics) == 1
        return "ps_" + session_id.hex(), publics.pop()

    def frost_nonces(
        self, suite: Ciphersuite, key_id: str, signers: Iterable[int]
    ) -> dict[int, tuple[str, SigningCommitments]]:
        """One fresh pool nonce per signer (``PrepareNonces(key_id, 1)``)."""
        out = {}
        for i in sorted(signers):
            (entry,) = (
                self.stub(i)
                .PrepareNonces(node_pb2.PrepareNoncesRequest(key_id=key_id, count=1))
                .nonces
            )
            out[i] = (entry.nonce_id, SigningCommitments.decode(suite, entry.commitments))
        return out

    # -- what each node's database says ------------------------------------------------

    def _engine(self, node_id: int) -> Engine:
        if node_id not in self._engines:
            self._engines[node_id] = make_engine(self.config.node_database_url(node_id))
        return self._engines[node_id]

    def pool_entry(self, node_id: int, nonce_id: str) -> PoolEntry:
        with Session(self._engine(node_id)) as s:
            row = s.get(NonceRow, nonce_id)
            assert row is not None, f"node {node_id} has no pool entry {nonce_id}"
            return PoolEntry(row.state, row.sealed_nonces is not None, row.request_id)

    def history_ids(self, node_id: int) -> set[str]:
        """Request ids in the node's policy history (``policy_history``)."""
        with Session(self._engine(node_id)) as s:
            return set(s.execute(select(HistoryRow.request_id)).scalars())

    def sign_record_ids(self, node_id: int) -> set[str]:
        with Session(self._engine(node_id)) as s:
            return set(s.execute(select(SignRecordRow.request_id)).scalars())

    def history_amounts(self, tenant: str, asset: str) -> int:
        """The sum over the union of every node's history (by request id) of ``tenant``'s
        ``asset`` entries: what the velocity budget has spent."""
        amounts: dict[str, int] = {}
        for i in NODES:
            with Session(self._engine(i)) as s:
                rows = s.execute(
                    select(HistoryRow).where(HistoryRow.tenant == tenant, HistoryRow.asset == asset)
                ).scalars()
                amounts |= {r.request_id: int(r.amount) for r in rows}
        return sum(amounts.values())

    def public_key_package(self, node_id: int, key_id: str) -> bytes:
        with Session(self._engine(node_id)) as s:
            row = s.get(KeyShareRow, key_id)
            assert row is not None
            return bytes(row.public_key_package)


def refusal(err: grpc.RpcError) -> tuple[grpc.StatusCode, str | None]:
    return err.code(), reason_of(err)
