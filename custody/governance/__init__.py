"""Coordinator-side governance: policy proposals and officer signatures, the mirror of the
version chain, approvals of pending signing requests, and the persisted audit log.

Submodules are imported explicitly (``custody.governance.bundle`` is pure and is also what
signer nodes use to decode pushed policy versions; ``service`` pulls in gRPC).
"""
