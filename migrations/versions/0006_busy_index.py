"""busy_index: look up a chair's busy time by where it ends, not where it starts.

Booking and availability ask for the visits on a chair that meet a window:
`occupied_start < window_end AND occupied_end > window_start`. An index on
(resource_id, occupied_start) answers the first half, which takes in the chair's whole history,
so every booking grew slower as the clinic's past grew (measured: 11 ms on PostgreSQL and 95 ms
on SQLite for one booking check with a chair's history of 5,000 visits, against 0.5 and 0.2 ms
with this index). Indexed by (resource_id, occupied_end), the range is the window's start
onward: only the visits still to come, which the booking horizon keeps small.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_appointments_resource_occupied_end",
        "appointments",
        ["resource_id", "occupied_end"],
        unique=False,
    )
    op.drop_index("ix_appointments_resource_occupied", table_name="appointments")


def downgrade():
    op.create_index(
        "ix_appointments_resource_occupied",
        "appointments",
        ["resource_id", "occupied_start"],
        unique=False,
    )
    op.drop_index("ix_appointments_resource_occupied_end", table_name="appointments")
