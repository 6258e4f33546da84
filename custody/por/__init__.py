"""Proof of Reserves on the service side: snapshots of the running cluster, their store,
the gRPC ProofService, and the ``custody por`` commands.

The format, tree and standalone verifier are in :mod:`proofs` (``docs/por-format.md``);
this package only gathers the inputs (liabilities, custody keys and balances,
threshold signatures over the challenge), publishes the result, and serves it.
"""
