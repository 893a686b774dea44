"""Indexes for streaming exports: turns by (created_at, id) — the keyset order exports page
through — and reviews by (turn_id, kind, source), replacing (kind, source), which made
SQLite scan every review for each turn.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_turns_created_at_id", "turns", ["created_at", "id"])
    op.create_index("ix_reviews_turn_kind_source", "reviews", ["turn_id", "kind", "source"])
    op.drop_index("ix_reviews_kind_source", table_name="reviews")


def downgrade() -> None:
    op.create_index("ix_reviews_kind_source", "reviews", ["kind", "source"])
    op.drop_index("ix_reviews_turn_kind_source", table_name="reviews")
    op.drop_index("ix_turns_created_at_id", table_name="turns")
