"""Procedure graphs: where each stored step stands on its turn's path.

``turn_steps.idx`` already orders a turn's steps; with procedure graphs it is the place on
the path the engine took (a list procedure's path is the list).  ``visit`` says which visit
of that procedure step it was (2 on a revisit) and ``via`` the one-line reason of the jump
that led to it ("" when the procedure simply went on to the next step listed), so the
review desk shows a stored turn as it was streamed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turn_steps") as batch:
        batch.add_column(sa.Column("visit", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("via", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("turn_steps") as batch:
        batch.drop_column("via")
        batch.drop_column("visit")
