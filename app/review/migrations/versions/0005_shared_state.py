"""Shared state in the database: library catalog, element payloads, shared values, snapshot artefacts.

With several app instances on one PostgreSQL, everything they must agree on lives here:
``library_books`` / ``library_excerpts`` / ``library_meta`` (the library catalog and its
generation; a SQLite deployment keeps using ``<data dir>/library/catalog.sqlite3``),
``element_files`` (Chainlit element payloads, before this a folder in the data dir),
``app_meta`` (e.g. the session-signing secret when none is configured) and
``tuning_snapshots.artefacts`` (the snapshot's files, so any instance can load the active one).
It also drops four indexes every review write maintained for nothing: ``reviews``'
single-column step_id / turn_id indexes (the unique (step_id, reviewer, kind) and the
(turn_id, kind, source) index lead with them), its reviewer index and
``review_history.review_id`` (no query looks rows up by either alone).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
REDUNDANT = (("reviews", "ix_reviews_step_id"), ("reviews", "ix_reviews_turn_id"), ("reviews", "ix_reviews_reviewer"),
             ("review_history", "ix_review_history_review_id"))


def upgrade() -> None:
    op.create_table(
        "library_books",
        sa.Column("id", sa.String(200), nullable=False), sa.Column("title", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=False), sa.Column("language", sa.String(20), nullable=False),
        sa.Column("source", sa.Text(), nullable=False), sa.Column("licence", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False), sa.Column("added_at", sa.String(40), nullable=False),
        sa.Column("chapters", sa.Integer(), nullable=False), sa.Column("excerpts", sa.Integer(), nullable=False),
        sa.Column("embedder", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_books")),
    )
    op.create_index("library_books_sha", "library_books", ["sha256"])
    op.create_table(
        "library_excerpts",
        sa.Column("id", sa.String(200), nullable=False), sa.Column("book_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False), sa.Column("text", sa.Text(), nullable=False),
        sa.Column("chapter_number", sa.Integer(), nullable=False),
        sa.Column("chapter_title", sa.Text(), nullable=False),
        sa.Column("paragraph_start", sa.Integer(), nullable=False),
        sa.Column("paragraph_end", sa.Integer(), nullable=False), sa.Column("terms", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_excerpts")),
    )
    op.create_index("library_excerpts_book", "library_excerpts", ["book_id", "seq"])
    op.create_table(
        "library_meta",
        sa.Column("key", sa.String(100), nullable=False), sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_library_meta")),
    )
    op.create_table(
        "element_files",
        sa.Column("object_key", sa.String(500), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("mime", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("object_key", name=op.f("pk_element_files")),
    )
    op.create_table(
        "app_meta",
        sa.Column("key", sa.String(100), nullable=False), sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_app_meta")),
    )
    with op.batch_alter_table("tuning_snapshots") as batch:
        batch.add_column(sa.Column("artefacts", sa.JSON(), nullable=True))
    for table, name in REDUNDANT:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for table, name in REDUNDANT:
        op.create_index(name, table, [name.removeprefix(f"ix_{table}_")])
    with op.batch_alter_table("tuning_snapshots") as batch:
        batch.drop_column("artefacts")
    op.drop_table("app_meta")
    op.drop_table("element_files")
    op.drop_table("library_meta")
    op.drop_index("library_excerpts_book", table_name="library_excerpts")
    op.drop_table("library_excerpts")
    op.drop_index("library_books_sha", table_name="library_books")
    op.drop_table("library_books")
