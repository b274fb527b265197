"""The node database: SQLAlchemy 2 typed ORM models, engine and sessions (schema by Alembic)."""
