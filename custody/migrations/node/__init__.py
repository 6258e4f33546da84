"""The Alembic environment of the node database (``env.py``, ``versions/``)."""
