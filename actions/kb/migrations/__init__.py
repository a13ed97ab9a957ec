"""Alembic migrations of the knowledge-base tables (run by `actions.kb.db.upgrade`)."""
