"""waitlist offers by number: an SMS reply looks for the latest offer texted to its number
(alongside the latest reminder, which has `ix_reminders_to_phone_sent`), so that a C or YES
answering an offer confirms no other visit.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_waitlist_offers_to_phone_sent",
        "waitlist_offers",
        ["to_phone", "sent_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_waitlist_offers_to_phone_sent", table_name="waitlist_offers")
