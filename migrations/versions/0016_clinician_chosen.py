"""clinician_chosen: whether the patient (or staff) chose the consultation's prescriber.

A consultation booked with a chosen prescriber keeps them when it moves (a move to a time they
are not free is refused); one booked for "any prescriber" may move to whoever is free then. The
visits booked before this column existed were all moved that second way, so they start as not
chosen (false): their behaviour is unchanged.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "appointments",
        sa.Column("clinician_chosen", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place: no table rebuild, no foreign keys to mind.
    op.drop_column("appointments", "clinician_chosen")
