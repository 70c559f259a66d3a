"""Command line: seed-demo, create-staff, and the reminder worker commands."""

from __future__ import annotations

import datetime as dt
import sys

import click
from argon2 import PasswordHasher
from flask import Flask, current_app
from flask.cli import AppGroup

from scheduler.extensions import db
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


@click.command("seed-demo")
def seed_demo_command() -> None:
    """Fill the database with the demo clinic (idempotent)."""
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
@click.option(
    "--role", type=click.Choice(["admin", "manager", "front_desk", "nurse"]), required=True
)
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
        click.echo(f"Error: {exc.message} {exc.fields}", err=True)
        sys.exit(2)
    db.session.commit()
    click.echo(f"Staff user {user.email} created.")
    if plain:
        click.echo(f"API token (shown once): {plain}")


def register(app: Flask) -> None:
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(create_staff_command)
    app.cli.add_command(reminders_group)


@click.group("reminders", cls=AppGroup)
def reminders_group() -> None:
    """The SMS reminder worker."""


@reminders_group.command("run")
def reminders_run() -> None:
    """Run the reminder worker in the foreground (APScheduler)."""
    from scheduler import jobs

    jobs.run_forever(current_app._get_current_object())  # type: ignore[attr-defined]


@reminders_group.command("send-due")
@click.option("--now", "now_text", default=None, help="ISO 8601 instant to treat as now")
def reminders_send_due(now_text: str | None) -> None:
    """Dispatch what is due once and exit."""
    from scheduler import jobs

    result = jobs.dispatch_once(current_app._get_current_object(), parse_now(now_text))  # type: ignore[attr-defined]
    click.echo(f"sent={result.sent} skipped={result.skipped} failed={result.failed}")


def main() -> None:
    """Console script: `chairside ...` is `flask --app scheduler ...`."""
    from flask.cli import FlaskGroup

    from scheduler import create_app

    FlaskGroup(create_app=create_app)(prog_name="chairside")
