"""The Alembic environment of the coordinator database (``env.py``, ``versions/``)."""
