"""Command line: seed-demo, create-staff, and the reminder worker commands."""

from __future__ import annotations

import datetime as dt
import sys

import click
from argon2 import PasswordHasher
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from scheduler.extensions import db
from scheduler.models import StaffRole
from scheduler.services import demo
from scheduler.services import staff as staff_service
from scheduler.services.errors import DomainError


def hasher() -> PasswordHasher:
    return staff_service.password_hasher(current_app.config.get("ARGON2_PARAMS"))


def parse_now(value: str | None) -> dt.datetime:
    if not value:
        return dt.datetime.now(dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter("use ISO 8601, e.g. 2026-12-01T09:00:00-08:00") from exc
    if parsed.tzinfo is None:
        raise click.BadParameter("include a UTC offset, e.g. 2026-12-01T17:00:00Z")
    return parsed.astimezone(dt.UTC)


UPGRADE_FIRST = (
    "The database schema is not up to date: run `flask --app scheduler db upgrade` first."
)


def require_current_schema() -> None:
    """Exit (status 1) with one line, not a traceback, unless the database is at the newest
    migration."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from scheduler.extensions import migrate

    config = migrate.get_config()
    heads = set(ScriptDirectory.from_config(config).get_heads())
    try:
        current = set(MigrationContext.configure(db.session.connection()).get_current_heads())
    except SQLAlchemyError as exc:
        db.session.rollback()
        click.echo(f"Error: cannot reach the database ({type(exc).__name__}).", err=True)
        sys.exit(1)
    if current != heads:
        click.echo(f"Error: {UPGRADE_FIRST}", err=True)
        sys.exit(1)


def error_text(exc: DomainError) -> str:
    """A refusal as an operator reads it: the message, then one `field: problem` line each."""
    lines = [f"Error: {exc.message}"]
    lines += [f"  {name}: {problem}" for name, problem in sorted(exc.fields.items())]
    return "\n".join(lines)


@click.command("seed-demo")
def seed_demo_command() -> None:
    """Fill the database with the demo clinic (idempotent)."""
    require_current_schema()
    result = demo.seed_demo(db.session(), hasher(), dt.datetime.now(dt.UTC))
    db.session.commit()
    if result.created:
        click.echo("Demo clinic created.")
        click.echo(f"Admin e-mail:    {result.admin_email}")
        click.echo(f"Admin password:  {result.admin_password}")
        click.echo(f"Admin API token: {result.api_token}")
    else:
        click.echo(f"Demo clinic already present; admin is {result.admin_email} (unchanged).")


@click.command("create-staff")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice([role.value for role in StaffRole]), required=True)
@click.option("--location", "locations", multiple=True, help="location slug; repeat for several")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--token/--no-token", default=False, help="also issue an API token")
def create_staff_command(
    email: str, name: str, role: str, locations: tuple[str, ...], password: str, token: bool
) -> None:
    """Add a staff user."""
    try:
        user = staff_service.create_staff(
            db.session(),
            email=email,
            name=name,
            password=password,
            role=role,
            location_slugs=list(locations),
            hasher=hasher(),
        )
        plain = (
            staff_service.issue_token(db.session(), user, dt.datetime.now(dt.UTC))
            if token
            else None
        )
    except DomainError as exc:
        db.session.rollback()
        click.echo(error_text(exc), err=True)
        sys.exit(2)
    db.session.commit()
    click.echo(f"Staff user {user.email} created.")
    if plain:
        click.echo(f"API token (shown once): {plain}")


@click.command("reset-password")
@click.option("--email", required=True, help="the staff user's e-mail (any letter case)")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="read the new password from standard input instead of generating one",
)
@click.option("--revoke-tokens", is_flag=True, help="also revoke the user's API tokens")
def reset_password_command(email: str, password_stdin: bool, revoke_tokens: bool) -> None:
    """Set a staff user's password (printed when generated), lift a sign-in lockout and end
    their signed-in sessions."""
    require_current_schema()
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    try:
        result = staff_service.reset_password(
            db.session(),
            email=email,
            password=password,
            hasher=hasher(),
            now=dt.datetime.now(dt.UTC),
            revoke_tokens=revoke_tokens,
        )
    except DomainError as exc:
        db.session.rollback()
        details = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
        click.echo(f"Error: {exc.message}{f' ({details})' if details else ''}", err=True)
        sys.exit(2)
    db.session.commit()
    click.echo(f"Password reset for {result.email}; signed-in sessions ended, lockout lifted.")
    if result.revoked_tokens:
        click.echo(f"API tokens revoked: {result.revoked_tokens}")
    if password is None:
        click.echo(f"New password (shown once): {result.password}")


def register(app: Flask) -> None:
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(create_staff_command)
    app.cli.add_command(reset_password_command)
    app.cli.add_command(reminders_group)
    app.cli.add_command(waitlist_group)


@click.group("reminders", cls=AppGroup)
def reminders_group() -> None:
    """The SMS reminder worker."""


@reminders_group.command("run")
def reminders_run() -> None:
    """Run the reminder worker in the foreground (APScheduler)."""
    from scheduler import jobs

    jobs.run_forever(current_app._get_current_object())  # type: ignore[attr-defined]


@reminders_group.command("send-due")
@click.option(
    "--now",
    "now_text",
    default=None,
    help="ISO 8601 instant to treat as now for reminders (the mail pass keeps real time)",
)
def reminders_send_due(now_text: str | None) -> None:
    """Dispatch what is due once and exit."""
    from scheduler import jobs

    # With --now the reminders are looked at that instant; mail still goes at real time.
    result = jobs.dispatch_once(current_app._get_current_object(), parse_now(now_text))  # type: ignore[attr-defined]
    click.echo(f"sent={result.sent} skipped={result.skipped} failed={result.failed}")


@click.group("waitlist", cls=AppGroup)
def waitlist_group() -> None:
    """The waitlist worker (it also runs with every reminder pass)."""


@waitlist_group.command("send-due")
@click.option("--now", "now_text", default=None, help="ISO 8601 instant to treat as now")
def waitlist_send_due(now_text: str | None) -> None:
    """Turn freed slots into offers, text what is due once, and exit."""
    from scheduler import jobs

    result = jobs.waitlist_once(current_app._get_current_object(), parse_now(now_text))  # type: ignore[attr-defined]
    click.echo(
        f"offered={result.offered} sent={result.sent} skipped={result.skipped} "
        f"failed={result.failed} deferred={result.deferred} expired={result.expired}"
    )


def main() -> None:
    """Console script: `chairside ...` is `flask --app scheduler ...`."""
    from flask.cli import FlaskGroup

    from scheduler import create_app

    FlaskGroup(create_app=create_app)(prog_name="chairside")
