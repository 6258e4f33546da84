"""Revisions of the coordinator database, oldest first by ``down_revision``."""
