"""patients: a patient is a person (birth date, match key), clearances, spacing, search indexes.

The old key (phone, e-mail, name) made "Walt" and "Walter" on one phone two people and one
person with two e-mail addresses two patients. A patient is now found by phone + birth date +
normalized name: `name_key` is the name without accents, case-folded, spaces collapsed, and
`match_key` is `name_key|YYYY-MM-DD`, unique per phone. Rows from before have no birth date:
their key is `name_key|` (unknown). When two old rows of one phone share a normalized name,
the first (lowest id) keeps that key and the others get `name_key|#<id>`: every row is kept,
none is matched automatically, and staff merge them. A booking with a birth date claims the
phone's `name_key|` row (filling the date in) when no row has that birth date yet; see
`scheduler.services.patients.find_or_create`.

`visit_codes` holds the "my visits" one-time codes (hashed), per phone.

Services gain `requires_clearance` and `min_gap_hours`; `clearances` records a prescriber's
clearance for a service until a date; a merged duplicate keeps its row as an alias of the
record kept (`merged_into_id`); audit entries may name a patient.

PostgreSQL: `pg_trgm` GIN indexes on the normalized name, the phone and the e-mail serve the
staff search's substring matches (`LIKE '%fragment%'`); SQLite gets plain indexes.

SQLite cannot drop the old unique constraint without rebuilding `patients`, which other tables
reference; the rebuild runs with foreign keys off (a pragma SQLite ignores inside a
transaction), checked with `PRAGMA foreign_key_check` before foreign keys are on again.

Revision ID: 0009
Revises: 0008
"""

import contextlib
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _name_key(name):
    # Kept in step with scheduler.services.patients.name_key (a migration does not import app code).
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


@contextlib.contextmanager
def _sqlite_foreign_keys_off():
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


def upgrade():
    bind = op.get_bind()
    is_pg = bind.dialect.name == "postgresql"
    if is_pg:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    # Plain ADD COLUMN (a batch would rebuild `services`, which other tables reference).
    op.add_column(
        "services",
        sa.Column("requires_clearance", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "services", sa.Column("min_gap_hours", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("patients", sa.Column("date_of_birth", sa.Date(), nullable=True))
    op.add_column(
        "patients", sa.Column("name_key", sa.String(200), nullable=False, server_default="")
    )
    op.add_column(
        "patients", sa.Column("match_key", sa.String(240), nullable=False, server_default="")
    )
    op.add_column("patients", sa.Column("notes", sa.Text(), nullable=False, server_default=""))

    patients = sa.table(
        "patients",
        sa.column("id", sa.Integer),
        sa.column("phone", sa.String),
        sa.column("name", sa.String),
        sa.column("name_key", sa.String),
        sa.column("match_key", sa.String),
    )
    taken = set()
    rows = bind.execute(
        sa.select(patients.c.id, patients.c.phone, patients.c.name).order_by(patients.c.id)
    ).all()
    for row in rows:
        key = _name_key(row.name)
        match = f"{key}|"
        if (row.phone, match) in taken:
            match = f"{key}|#{row.id}"
        taken.add((row.phone, match))
        bind.execute(
            patients.update().where(patients.c.id == row.id).values(name_key=key, match_key=match)
        )

    with _sqlite_foreign_keys_off():
        with op.batch_alter_table("patients") as batch_op:
            batch_op.drop_constraint("uq_patients_phone", type_="unique")
            batch_op.create_unique_constraint("uq_patients_phone", ["phone", "match_key"])
            batch_op.create_index("ix_patients_date_of_birth", ["date_of_birth"])
            batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
            batch_op.create_foreign_key(
                "fk_patients_merged_into_id_patients",
                "patients",
                ["merged_into_id"],
                ["id"],
                ondelete="SET NULL",
            )
        with op.batch_alter_table("audit_entries") as batch_op:
            batch_op.add_column(sa.Column("patient_id", sa.Integer(), nullable=True))
            batch_op.create_foreign_key(
                "fk_audit_entries_patient_id_patients",
                "patients",
                ["patient_id"],
                ["id"],
                ondelete="SET NULL",
            )
            batch_op.create_index("ix_audit_entries_patient_id", ["patient_id"])

    for column in ("name_key", "phone", "email"):
        op.create_index(
            f"ix_patients_{column}_trgm",
            "patients",
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )

    op.create_table(
        "clearances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("until", sa.Date(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by_name", sa.String(200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name="fk_clearances_patient_id_patients",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name="fk_clearances_service_id_services",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["staff_users.id"],
            name="fk_clearances_recorded_by_id_staff_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_clearances"),
    )
    op.create_index(
        "ix_clearances_patient_service", "clearances", ["patient_id", "service_id", "until"]
    )
    op.create_table(
        "visit_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_visit_codes"),
        sa.UniqueConstraint("phone", name="uq_visit_codes_phone"),
    )


def downgrade():
    op.drop_table("visit_codes")
    op.drop_index("ix_clearances_patient_service", table_name="clearances")
    op.drop_table("clearances")
    for column in ("name_key", "phone", "email"):
        op.drop_index(f"ix_patients_{column}_trgm", table_name="patients")
    with _sqlite_foreign_keys_off():
        with op.batch_alter_table("audit_entries") as batch_op:
            batch_op.drop_index("ix_audit_entries_patient_id")
            batch_op.drop_constraint("fk_audit_entries_patient_id_patients", type_="foreignkey")
            batch_op.drop_column("patient_id")
        # Rows that only the birth date told apart would break the old key: the downgrade
        # refuses rather than lose one.
        bind = op.get_bind()
        clash = bind.exec_driver_sql(
            "SELECT phone, email, name FROM patients GROUP BY phone, email, name "
            "HAVING COUNT(*) > 1"
        ).first()
        if clash is not None:
            raise RuntimeError("two patients share phone, e-mail and name: merge them first")
        with op.batch_alter_table("patients") as batch_op:
            batch_op.drop_index("ix_patients_date_of_birth")
            batch_op.drop_constraint("fk_patients_merged_into_id_patients", type_="foreignkey")
            batch_op.drop_column("merged_into_id")
            batch_op.drop_constraint("uq_patients_phone", type_="unique")
            batch_op.create_unique_constraint("uq_patients_phone", ["phone", "email", "name"])
            batch_op.drop_column("notes")
            batch_op.drop_column("match_key")
            batch_op.drop_column("name_key")
            batch_op.drop_column("date_of_birth")
    with _sqlite_foreign_keys_off():
        with op.batch_alter_table("services") as batch_op:
            batch_op.drop_column("min_gap_hours")
            batch_op.drop_column("requires_clearance")
