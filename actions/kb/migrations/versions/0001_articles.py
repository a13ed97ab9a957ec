"""Articles, their question variants and the revision counter.

Revision ID: 0001_articles
Revises:
Create Date: 2024-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_articles"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("intent", sa.String(128), nullable=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_kb_articles_intent", "kb_articles", ["intent"])
    op.create_index("ix_kb_articles_updated_at", "kb_articles", ["updated_at"])
    op.create_table(
        "kb_questions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "article_id",
            sa.String(128),
            sa.ForeignKey("kb_articles.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
    )
    op.create_index("ix_kb_questions_article_id", "kb_questions", ["article_id"])
    op.create_table(
        "kb_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kb_state")
    op.drop_index("ix_kb_questions_article_id", table_name="kb_questions")
    op.drop_table("kb_questions")
    op.drop_index("ix_kb_articles_updated_at", table_name="kb_articles")
    op.drop_index("ix_kb_articles_intent", table_name="kb_articles")
    op.drop_table("kb_articles")
