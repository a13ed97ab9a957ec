"""Stored sentence vectors per article and encoder.

Revision ID: 0002_vectors
Revises: 0001_articles
Create Date: 2024-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_vectors"
down_revision = "0001_articles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_vectors",
        sa.Column(
            "article_id",
            sa.String(128),
            sa.ForeignKey("kb_articles.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("encoder", sa.String(200), primary_key=True),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kb_vectors")
