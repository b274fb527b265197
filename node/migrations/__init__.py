"""Alembic migrations of the node database, shipped in the package (see node.db.migrate)."""
