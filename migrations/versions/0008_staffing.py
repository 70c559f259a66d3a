"""staffing: clinicians, their shifts (weekly patterns, skips, one-offs), staffing rules.

Locations gain the staffing rules (on/off, patients per nurse, starts per window, the window's
length). Every location that exists when this runs keeps them OFF: it has no rota yet, and
turning them on would take all its availability away; a manager turns them on after entering the
rota. Appointments gain the consultation's prescriber and the infusion's nurse. One-off shifts of
one clinician never overlap (PostgreSQL: exclusion constraint, btree_gist is already installed by
0001). Opening hours may now close at midnight (stored as 00:00, entered as 24:00).

Revision ID: 0008
Revises: 0007
"""

from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MIDNIGHT_OK = "opens < closes OR closes < '00:00:01'"


def upgrade():
    op.create_table(
        "clinicians",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("staff_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('prescriber', 'nurse')", name=op.f("ck_clinicians_role_known")
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_users.id"],
            name=op.f("fk_clinicians_staff_user_id_staff_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinicians")),
        sa.UniqueConstraint("staff_user_id", name=op.f("uq_clinicians_staff_user_id")),
    )
    op.create_table(
        "shift_patterns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinician_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("starts", sa.Time(), nullable=False),
        sa.Column("ends", sa.Time(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.CheckConstraint(
            "weekday >= 0 AND weekday <= 6", name=op.f("ck_shift_patterns_weekday_range")
        ),
        sa.CheckConstraint(
            "starts < ends OR ends < '00:00:01'", name=op.f("ck_shift_patterns_starts_before_ends")
        ),
        sa.CheckConstraint(
            "valid_from IS NULL OR valid_until IS NULL OR valid_from <= valid_until",
            name=op.f("ck_shift_patterns_valid_order"),
        ),
        sa.ForeignKeyConstraint(
            ["clinician_id"],
            ["clinicians.id"],
            name=op.f("fk_shift_patterns_clinician_id_clinicians"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_shift_patterns_location_id_locations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shift_patterns")),
    )
    with op.batch_alter_table("shift_patterns", schema=None) as batch_op:
        batch_op.create_index("ix_shift_patterns_clinician", ["clinician_id"], unique=False)
        batch_op.create_index(
            "ix_shift_patterns_location_weekday", ["location_id", "weekday"], unique=False
        )
    op.create_table(
        "shift_skips",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pattern_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["pattern_id"],
            ["shift_patterns.id"],
            name=op.f("fk_shift_skips_pattern_id_shift_patterns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shift_skips")),
        sa.UniqueConstraint("pattern_id", "day", name="uq_shift_skips_pattern_day"),
    )
    op.create_table(
        "shifts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinician_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("start_at < end_at", name=op.f("ck_shifts_start_before_end")),
        sa.ForeignKeyConstraint(
            ["clinician_id"],
            ["clinicians.id"],
            name=op.f("fk_shifts_clinician_id_clinicians"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_shifts_location_id_locations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shifts")),
    )
    with op.batch_alter_table("shifts", schema=None) as batch_op:
        batch_op.create_index("ix_shifts_clinician_end", ["clinician_id", "end_at"], unique=False)
        batch_op.create_index("ix_shifts_location_end", ["location_id", "end_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE shifts ADD CONSTRAINT no_clinician_overlap EXCLUDE USING gist "
            "(clinician_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&)"
        )

    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("staffing_rules", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("patients_per_nurse", sa.Integer(), server_default="4", nullable=False)
        )
        batch_op.add_column(
            sa.Column("starts_per_window", sa.Integer(), server_default="3", nullable=False)
        )
        batch_op.add_column(
            sa.Column("start_window_minutes", sa.Integer(), server_default="30", nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_locations_patients_per_nurse_positive"), "patients_per_nurse >= 1"
        )
        batch_op.create_check_constraint(
            op.f("ck_locations_starts_per_window_positive"), "starts_per_window >= 1"
        )
        batch_op.create_check_constraint(
            op.f("ck_locations_start_window_positive"), "start_window_minutes >= 1"
        )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clinician_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("nurse_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_appointments_clinician_id_clinicians"),
            "clinicians",
            ["clinician_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            op.f("fk_appointments_nurse_id_clinicians"),
            "clinicians",
            ["nurse_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("opening_hours", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_opening_hours_opens_before_closes"), type_="check")
        batch_op.create_check_constraint(op.f("ck_opening_hours_opens_before_closes"), MIDNIGHT_OK)


def downgrade():
    op.execute("DELETE FROM opening_hours WHERE closes < '00:00:01'")
    with op.batch_alter_table("opening_hours", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_opening_hours_opens_before_closes"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_opening_hours_opens_before_closes"), "opens < closes"
        )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_appointments_nurse_id_clinicians"), type_="foreignkey")
        batch_op.drop_constraint(
            op.f("fk_appointments_clinician_id_clinicians"), type_="foreignkey"
        )
        batch_op.drop_column("nurse_id")
        batch_op.drop_column("clinician_id")
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_locations_start_window_positive"), type_="check")
        batch_op.drop_constraint(op.f("ck_locations_starts_per_window_positive"), type_="check")
        batch_op.drop_constraint(op.f("ck_locations_patients_per_nurse_positive"), type_="check")
        batch_op.drop_column("start_window_minutes")
        batch_op.drop_column("starts_per_window")
        batch_op.drop_column("patients_per_nurse")
        batch_op.drop_column("staffing_rules")
    op.drop_table("shifts")
    op.drop_table("shift_skips")
    op.drop_table("shift_patterns")
    op.drop_table("clinicians")
