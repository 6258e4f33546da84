"""Distributed key generation and proactive refresh for FROST-style keys."""

from signer_nodes.mpc.dkg.pedersen import DkgOutput, DkgParty

__all__ = ["DkgOutput", "DkgParty"]
