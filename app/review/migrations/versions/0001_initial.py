"""Initial schema: Bookbot's accounts, conversations, turns, steps, candidates, citations,
reviews (+ history), queue skips and tuning snapshots, plus Chainlit 2.12's data-layer tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JsonText = sa.Text().with_variant(JSONB(), "postgresql")
TagList = sa.Text().with_variant(ARRAY(sa.Text()), "postgresql")
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # ---------------------------------------------------------------- Bookbot
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("character_id", sa.String(120), nullable=False),
        sa.Column("user_id", sa.String(120), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
    )
    op.create_index("ix_conversations_character_id", "conversations", ["character_id"])
    op.create_table(
        "turns",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("character_id", sa.String(120), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("backend", sa.String(120), nullable=False),
        sa.Column("snapshot_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(120), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("step_count", sa.Integer(), nullable=False),
        sa.Column("grounded_fraction", sa.Float(), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE",
                                name="fk_turns_conversation_id_conversations"),
        sa.PrimaryKeyConstraint("id", name="pk_turns"),
    )
    op.create_index("ix_turns_conversation_id", "turns", ["conversation_id"])
    op.create_index("ix_turns_character_id", "turns", ["character_id"])
    op.create_index("ix_turns_created_at", "turns", ["created_at"])
    op.create_index("ix_turns_priority", "turns", ["priority"])
    op.create_table(
        "turn_steps",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("grounded", sa.Boolean(), nullable=False),
        sa.Column("retrieval_ms", sa.Float(), nullable=False),
        sa.Column("generation_ms", sa.Float(), nullable=False),
        sa.Column("excerpts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], ondelete="CASCADE",
                                name="fk_turn_steps_turn_id_turns"),
        sa.PrimaryKeyConstraint("id", name="pk_turn_steps"),
        sa.UniqueConstraint("turn_id", "idx", name="uq_turn_steps_turn_id"),
    )
    op.create_index("ix_turn_steps_turn_id", "turn_steps", ["turn_id"])
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("chosen", sa.Boolean(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["step_id"], ["turn_steps.id"], ondelete="CASCADE",
                                name="fk_candidates_step_id_turn_steps"),
        sa.PrimaryKeyConstraint("id", name="pk_candidates"),
    )
    op.create_index("ix_candidates_step_id", "candidates", ["step_id"])
    op.create_table(
        "citations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("excerpt_id", sa.String(255), nullable=False),
        sa.Column("quote", sa.Text(), nullable=False),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("problem", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(["step_id"], ["turn_steps.id"], ondelete="CASCADE",
                                name="fk_citations_step_id_turn_steps"),
        sa.ForeignKeyConstraint(["candidate_id"], ["candidates.id"], ondelete="CASCADE",
                                name="fk_citations_candidate_id_candidates"),
        sa.PrimaryKeyConstraint("id", name="pk_citations"),
    )
    op.create_index("ix_citations_step_id", "citations", ["step_id"])
    op.create_index("ix_citations_candidate_id", "citations", ["candidate_id"])
    op.create_index("ix_citations_excerpt_id", "citations", ["excerpt_id"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("reviewer", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("correction", sa.Text(), nullable=False),
        sa.Column("fault_tags", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["step_id"], ["turn_steps.id"], ondelete="CASCADE",
                                name="fk_reviews_step_id_turn_steps"),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], ondelete="CASCADE",
                                name="fk_reviews_turn_id_turns"),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.UniqueConstraint("step_id", "reviewer", "kind", name="uq_reviews_step_id"),
    )
    op.create_index("ix_reviews_step_id", "reviews", ["step_id"])
    op.create_index("ix_reviews_turn_id", "reviews", ["turn_id"])
    op.create_index("ix_reviews_reviewer", "reviews", ["reviewer"])
    op.create_index("ix_reviews_kind_source", "reviews", ["kind", "source"])
    op.create_table(
        "review_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("reviewer", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("correction", sa.Text(), nullable=False),
        sa.Column("fault_tags", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_history"),
    )
    op.create_index("ix_review_history_review_id", "review_history", ["review_id"])
    op.create_index("ix_review_history_step_id", "review_history", ["step_id"])
    op.create_table(
        "queue_skips",
        sa.Column("reviewer", sa.String(120), nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("skipped_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], ondelete="CASCADE",
                                name="fk_queue_skips_turn_id_turns"),
        sa.PrimaryKeyConstraint("reviewer", "turn_id", name="pk_queue_skips"),
    )
    op.create_table(
        "tuning_snapshots",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("character_id", sa.String(120), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tuning_snapshots"),
    )
    op.create_index("ix_tuning_snapshots_character_id", "tuning_snapshots", ["character_id"])

    # ---------------------------------------------------------------- Chainlit 2.12
    op.create_table(
        "users",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("identifier", sa.Text(), nullable=False),
        sa.Column("metadata", JsonText, nullable=False),
        sa.Column("createdAt", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("identifier", name="uq_users_identifier"),
    )
    op.create_table(
        "threads",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("createdAt", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("userId", sa.Text(), nullable=True),
        sa.Column("userIdentifier", sa.Text(), nullable=True),
        sa.Column("tags", TagList, nullable=True),
        sa.Column("metadata", JsonText, nullable=True),
        sa.ForeignKeyConstraint(["userId"], ["users.id"], ondelete="CASCADE",
                                name="fk_threads_userId_users"),
        sa.PrimaryKeyConstraint("id", name="pk_threads"),
    )
    op.create_table(
        "steps",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("threadId", sa.Text(), nullable=False),
        sa.Column("parentId", sa.Text(), nullable=True),
        sa.Column("streaming", sa.Boolean(), nullable=False),
        sa.Column("waitForAnswer", sa.Boolean(), nullable=True),
        sa.Column("isError", sa.Boolean(), nullable=True),
        sa.Column("metadata", JsonText, nullable=True),
        sa.Column("tags", TagList, nullable=True),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.Text(), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("start", sa.Text(), nullable=True),
        sa.Column("end", sa.Text(), nullable=True),
        sa.Column("generation", JsonText, nullable=True),
        sa.Column("showInput", sa.Text(), nullable=True),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("indent", sa.Integer(), nullable=True),
        sa.Column("defaultOpen", sa.Boolean(), nullable=True),
        sa.Column("autoCollapse", sa.Boolean(), nullable=True),
        sa.Column("modes", JsonText, nullable=True),
        sa.ForeignKeyConstraint(["threadId"], ["threads.id"], ondelete="CASCADE",
                                name="fk_steps_threadId_threads"),
        sa.PrimaryKeyConstraint("id", name="pk_steps"),
    )
    op.create_table(
        "elements",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("threadId", sa.Text(), nullable=True),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("chainlitKey", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("display", sa.Text(), nullable=True),
        sa.Column("objectKey", sa.Text(), nullable=True),
        sa.Column("size", sa.Text(), nullable=True),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("forId", sa.Text(), nullable=True),
        sa.Column("mime", sa.Text(), nullable=True),
        sa.Column("props", JsonText, nullable=True),
        sa.Column("autoPlay", sa.Boolean(), nullable=True),
        sa.Column("playerConfig", JsonText, nullable=True),
        sa.ForeignKeyConstraint(["threadId"], ["threads.id"], ondelete="CASCADE",
                                name="fk_elements_threadId_threads"),
        sa.PrimaryKeyConstraint("id", name="pk_elements"),
    )
    op.create_table(
        "feedbacks",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("forId", sa.Text(), nullable=False),
        sa.Column("threadId", sa.Text(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["threadId"], ["threads.id"], ondelete="CASCADE",
                                name="fk_feedbacks_threadId_threads"),
        sa.PrimaryKeyConstraint("id", name="pk_feedbacks"),
    )


def downgrade() -> None:
    for table in ("feedbacks", "elements", "steps", "threads", "users",
                  "tuning_snapshots", "queue_skips", "review_history", "reviews", "citations",
                  "candidates", "turn_steps", "turns", "conversations", "accounts"):
        op.drop_table(table)
