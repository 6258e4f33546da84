"""mTLS gRPC clients for every signer node, with the coordinator's client certificate."""

from __future__ import annotations

import grpc

from custody._pb.custody.node.v1 import node_pb2_grpc
from custody.config import ClusterConfig

RPC_TIMEOUT = 30.0


class NodeClients:
    def __init__(self, config: ClusterConfig) -> None:
        cdir = config.coordinator_dir
        credentials = grpc.ssl_channel_credentials(
            root_certificates=config.ca_cert.read_bytes(),
            private_key=(cdir / "client.key").read_bytes(),
            certificate_chain=(cdir / "client.pem").read_bytes(),
        )
        options = [
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
            # A node that comes back (restart, restore) is usable within a second or two,
            # not after gRPC's default reconnect backoff of up to two minutes.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        self.channels = {
            n.node_id: grpc.secure_channel(n.address, credentials, options=options)
            for n in config.nodes
        }
        self.stubs = {i: node_pb2_grpc.NodeServiceStub(ch) for i, ch in self.channels.items()}

    def stub(self, node_id: int) -> node_pb2_grpc.NodeServiceStub:
        return self.stubs[node_id]

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()
