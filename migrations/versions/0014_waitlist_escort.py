"""waitlist escorts: an entry for an escort_required service keeps who takes the patient home
(name and mobile; NULL: not given), and a claim books the visit with them.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("waitlist_entries", sa.Column("escort_name", sa.String(200), nullable=True))
    op.add_column("waitlist_entries", sa.Column("escort_phone", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("waitlist_entries") as batch:
        batch.drop_column("escort_phone")
        batch.drop_column("escort_name")
