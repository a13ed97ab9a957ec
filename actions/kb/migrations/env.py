"""Alembic environment: runs on the connection `actions.kb.db.upgrade` passes in."""

from __future__ import annotations

from alembic import context

from actions.kb.db import VERSION_TABLE
from actions.kb.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a bare `alembic` command
    raise RuntimeError(
        "run the knowledge-base migrations through `fusiondesk kb migrate` "
        "(actions.kb.db.upgrade), which passes the database connection"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    include_name=lambda name, type_, parent: type_ != "table" or str(name).startswith("kb_"),
)
with context.begin_transaction():
    context.run_migrations()
