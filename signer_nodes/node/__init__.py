"""The signer-node process: protocol cores behind a gRPC NodeService."""
