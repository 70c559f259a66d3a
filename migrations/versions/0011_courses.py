"""treatment courses: templates (sessions, gaps, window, weekday pattern, review point) and
patients' courses, whose sessions are appointments.

Appointments gain `course_id` (SET NULL: a deleted course leaves its visits as single visits),
`course_session` (1-based) and `awaiting_review` (sessions after the review point hold their
chair and get no reminders until a clinician records "continue"). Existing rows are single
visits (NULL, NULL, false).

Revision ID: 0011
Revises: 0010
"""

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


@contextlib.contextmanager
def _sqlite_foreign_keys_off() -> Iterator[None]:
    """SQLite rebuilds a table to add a foreign key: other tables reference appointments, so
    foreign keys are off during the rebuild (a pragma SQLite ignores inside a transaction)."""
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
    op.create_table(
        "course_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("min_gap_hours", sa.Integer(), nullable=False),
        sa.Column("max_gap_hours", sa.Integer(), nullable=False),
        sa.Column("within_days", sa.Integer(), nullable=False),
        sa.Column("weekdays", sa.String(64), nullable=True),
        sa.Column("review_after", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("sessions >= 1", name="ck_course_templates_sessions_positive"),
        sa.CheckConstraint("min_gap_hours >= 0", name="ck_course_templates_min_gap_nonnegative"),
        sa.CheckConstraint("max_gap_hours >= min_gap_hours", name="ck_course_templates_gap_order"),
        sa.CheckConstraint("within_days >= 1", name="ck_course_templates_within_days_positive"),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name="fk_course_templates_service_id_services",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_course_templates"),
        sa.UniqueConstraint("slug", name="uq_course_templates_slug"),
    )
    op.create_table(
        "courses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("manage_token", sa.String(64), nullable=False),
        sa.Column("review_state", sa.String(16), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by_id", sa.Integer(), nullable=True),
        sa.Column("reviewed_by_name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"], ["course_templates.id"], name="fk_courses_template_id_course_templates"
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name="fk_courses_patient_id_patients"
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name="fk_courses_location_id_locations"
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by_id"],
            ["staff_users.id"],
            name="fk_courses_reviewed_by_id_staff_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_courses"),
        sa.UniqueConstraint("manage_token", name="uq_courses_manage_token"),
    )
    op.create_index("ix_courses_patient_id", "courses", ["patient_id"])
    with _sqlite_foreign_keys_off(), op.batch_alter_table("appointments") as batch_op:
        batch_op.add_column(sa.Column("course_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("course_session", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("awaiting_review", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_foreign_key(
            "fk_appointments_course_id_courses",
            "courses",
            ["course_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_appointments_course_id", ["course_id"])


def downgrade() -> None:
    with _sqlite_foreign_keys_off():
        with op.batch_alter_table("appointments") as batch_op:
            batch_op.drop_index("ix_appointments_course_id")
            batch_op.drop_constraint("fk_appointments_course_id_courses", type_="foreignkey")
            for name in ("awaiting_review", "course_session", "course_id"):
                batch_op.drop_column(name)
        op.drop_index("ix_courses_patient_id", table_name="courses")
        op.drop_table("courses")
        op.drop_table("course_templates")
