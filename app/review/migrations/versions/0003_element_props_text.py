"""Chainlit's elements."props" as TEXT on PostgreSQL too.

Chainlit 2.12's `SQLAlchemyDataLayer.get_element` does ``json.loads(props)``; from a JSONB
column asyncpg already hands back a dict, so reopening an element failed with "the JSON
object must be str".  Chainlit writes the column as json.dumps text, so TEXT is what it
reads and writes.  No change on SQLite (already TEXT).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("elements", "props", type_=sa.Text(), existing_type=JSONB(),
                        postgresql_using='"props"::text')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("elements", "props", type_=JSONB(), existing_type=sa.Text(),
                        postgresql_using='"props"::jsonb')
