"""Authenticated, end-to-end encrypted transport of protocol envelopes between nodes."""
