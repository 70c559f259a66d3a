"""staff_accounts: one staff account per e-mail whatever its case; sessions end on deactivation.

Staff e-mail addresses are stored lower-case, and a check constraint keeps them so: with the
existing unique constraint, `ADMIN@clinic` beside `admin@clinic` is impossible (such a twin
could never sign in, and its failed sign-ins counted against the original). Twins already in the
table are kept apart first: the oldest account keeps the address; each later twin is
deactivated, its API tokens revoked, and its address prefixed `duplicate-{id}-` so an admin can
see it in the settings.

Failed sign-ins move to `sign_in_failures`, keyed by a hash of the typed address whether or not
an account has it, so that a lockout no longer tells which addresses belong to staff; the
per-account `failed_logins` and `locked_until` go.

`session_epoch` is part of every staff session's id: deactivation raises it, so a session cookie
from before stays dead when the account is activated again.

Revision ID: 0007
Revises: 0006
"""

import datetime as dt
import logging

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def _lowercase_emails() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, email FROM staff_users ORDER BY id")).all()
    now = dt.datetime.now(dt.UTC)
    if conn.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # SQLite keeps naive UTC
    kept: dict[str, int] = {}
    twins: list[tuple[int, str]] = []
    for staff_id, email in rows:
        key = email.lower()
        if key in kept:
            twins.append((staff_id, key))
        else:
            kept[key] = staff_id
    # Twins first, so that lower-casing an older account never meets a later twin's address.
    for staff_id, key in twins:
        conn.execute(
            sa.text("UPDATE staff_users SET email = :email, active = :off WHERE id = :id"),
            {"email": f"duplicate-{staff_id}-{key}"[:320], "off": False, "id": staff_id},
        )
        conn.execute(
            sa.text(
                "UPDATE api_tokens SET revoked_at = :now WHERE staff_id = :id AND revoked_at IS NULL"
            ),
            {"now": now, "id": staff_id},
        )
        log.warning("staff user %s shared an e-mail with an older account: deactivated", staff_id)
    for staff_id, email in rows:
        if kept.get(email.lower()) == staff_id and email != email.lower():
            conn.execute(
                sa.text("UPDATE staff_users SET email = :email WHERE id = :id"),
                {"email": email.lower(), "id": staff_id},
            )


def upgrade():
    # No batch mode: on SQLite it copies the table, and dropping the old copy would cascade to
    # every API token and location grant (foreign keys are on). Plain ALTERs keep the rows.
    op.create_table(
        "sign_in_failures",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sign_in_failures")),
    )
    op.add_column(
        "staff_users", sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0")
    )
    op.drop_column("staff_users", "failed_logins")
    op.drop_column("staff_users", "locked_until")
    _lowercase_emails()
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot add a CHECK to a table in place; a trigger guards the same rule.
        for event in ("INSERT", "UPDATE OF email"):
            name = "ck_staff_users_email_lowercase_" + event.split()[0].lower()
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON staff_users"
                " WHEN NEW.email <> lower(NEW.email)"
                " BEGIN SELECT RAISE(ABORT, 'staff e-mail must be lower-case'); END"
            )
    else:
        op.create_check_constraint(
            "ck_staff_users_email_lowercase", "staff_users", "email = lower(email)"
        )


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER ck_staff_users_email_lowercase_insert")
        op.execute("DROP TRIGGER ck_staff_users_email_lowercase_update")
    else:
        op.drop_constraint("ck_staff_users_email_lowercase", "staff_users", type_="check")
    op.add_column("staff_users", sa.Column("locked_until", sa.DateTime(timezone=True)))
    op.add_column(
        "staff_users", sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
    )
    op.drop_column("staff_users", "session_epoch")
    op.drop_table("sign_in_failures")
