"""Fixtures of the PoR service tests (databases; the real cluster is in test_end_to_end)."""

from tests.proofs.service.helpers import db_url

__all__ = ["db_url"]
