"""day of the visit: escorts, pre-visit instructions, replies tied to the text they answer.

Services gain `escort_required` and their instructions (`fasting_hours`,
`arrive_early_minutes`, `no_driving`). Appointments keep the escort's name and phone (NULL:
not given), when the ride was confirmed and when the escort was told the patient is ready.

Reminders gain a `kind` (reminder, day_before, escort_ready) and the number they go to
(`to_phone`): a reply from a number refers to the latest text sent to it, so the number is
kept on the row (existing rows get their patient's phone). Inbound texts record which text
they answered (`sms_inbound.reminder_id`).

Revision ID: 0010
Revises: 0009
"""

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


@contextlib.contextmanager
def _sqlite_foreign_keys_off() -> Iterator[None]:
    """SQLite rebuilds a table to drop a column: other tables reference these ones, so foreign
    keys are off during the rebuild (a pragma SQLite ignores inside a transaction)."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
    yield
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"foreign keys broken by the rebuild: {broken[:5]}")
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys=ON")
    bind.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade() -> None:
    false = sa.false()
    op.add_column(
        "services",
        sa.Column("escort_required", sa.Boolean(), nullable=False, server_default=false),
    )
    op.add_column(
        "services", sa.Column("fasting_hours", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "services",
        sa.Column("arrive_early_minutes", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "services", sa.Column("no_driving", sa.Boolean(), nullable=False, server_default=false)
    )
    op.add_column("appointments", sa.Column("escort_name", sa.String(200), nullable=True))
    op.add_column("appointments", sa.Column("escort_phone", sa.String(20), nullable=True))
    op.add_column(
        "appointments", sa.Column("ride_confirmed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "appointments",
        sa.Column("escort_notified_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "reminders",
        sa.Column("kind", sa.String(16), nullable=False, server_default="reminder"),
    )
    op.add_column(
        "reminders", sa.Column("to_phone", sa.String(20), nullable=False, server_default="")
    )
    op.execute(
        "UPDATE reminders SET to_phone = (SELECT patients.phone FROM appointments "
        "JOIN patients ON patients.id = appointments.patient_id "
        "WHERE appointments.id = reminders.appointment_id)"
    )
    op.create_index("ix_reminders_to_phone_sent", "reminders", ["to_phone", "sent_at"])
    with _sqlite_foreign_keys_off(), op.batch_alter_table("sms_inbound") as batch_op:
        batch_op.add_column(sa.Column("reminder_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_sms_inbound_reminder_id_reminders",
            "reminders",
            ["reminder_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with _sqlite_foreign_keys_off():
        with op.batch_alter_table("sms_inbound") as batch_op:
            batch_op.drop_constraint("fk_sms_inbound_reminder_id_reminders", type_="foreignkey")
            batch_op.drop_column("reminder_id")
        op.drop_index("ix_reminders_to_phone_sent", table_name="reminders")
        with op.batch_alter_table("reminders") as batch_op:
            batch_op.drop_column("to_phone")
            batch_op.drop_column("kind")
        with op.batch_alter_table("appointments") as batch_op:
            for name in ("escort_notified_at", "ride_confirmed_at", "escort_phone", "escort_name"):
                batch_op.drop_column(name)
        with op.batch_alter_table("services") as batch_op:
            for name in ("no_driving", "arrive_early_minutes", "fasting_hours", "escort_required"):
                batch_op.drop_column(name)
