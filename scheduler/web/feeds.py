"""Staff calendar subscription feeds: the secret .ics URL, its JSON API, and CLI commands."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from flask import Blueprint, Flask, Response, g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, Field
from sqlalchemy import select

from scheduler.extensions import csrf, db
from scheduler.models import CalendarFeed, Location, StaffRole
from scheduler.services import booking
from scheduler.services import feeds as feed_service
from scheduler.services.errors import DomainError, Forbidden, NotFound
from scheduler.web import api, security
from scheduler.web.common import json_error, now, settings
from scheduler.web.openapi import Operation

public = Blueprint("feeds", __name__)
staff_api = Blueprint("feeds_api", __name__, url_prefix="/api/v1")
security.limit_api(staff_api)
csrf.exempt(staff_api)

MANAGERS = frozenset({StaffRole.ADMIN, StaffRole.MANAGER})


class FeedIn(BaseModel):
    resource: str | None = Field(default=None, max_length=100, description="a chair's name")
    label: str = Field(default="", max_length=100)


class FeedOut(BaseModel):
    id: int
    location: str
    resource: str | None
    label: str
    created_at: str
    last_used_at: str | None
    revoked: bool


class FeedCreatedOut(FeedOut):
    url: str = Field(description="https URL; shown once, only its hash is kept")
    webcal_url: str


_OPS = (
    Operation(
        method="GET",
        path="/api/v1/locations/{location}/feeds",
        summary="Calendar feeds of a location",
        response=list[FeedOut],
        auth=True,
        errors=(401, 403),
    ),
    Operation(
        method="POST",
        path="/api/v1/locations/{location}/feeds",
        summary="Create a secret calendar subscription URL (location or one chair)",
        body=FeedIn,
        response=FeedCreatedOut,
        status=201,
        auth=True,
        errors=(401, 403, 404, 422),
    ),
    Operation(
        method="DELETE",
        path="/api/v1/locations/{location}/feeds/{feed_id}",
        summary="Revoke a calendar feed",
        status=204,
        int_params=("feed_id",),
        auth=True,
        errors=(401, 403, 404),
    ),
)
for _op in _OPS:
    api.registry.add(_op)


@staff_api.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> ResponseReturnValue:
    db.session.rollback()
    return json_error(exc.http_status, exc.code, exc.message, exc.fields)


def _location(slug: str, *, manage: bool = False) -> Location:
    user = g.staff
    location = db.session.scalars(select(Location).where(Location.slug == slug)).first()
    if location is None or not user.can_access(location.id):
        raise Forbidden("You do not have access to this location.")
    if manage and user.role not in MANAGERS:
        raise Forbidden("Only managers and admins can create or revoke calendar feeds.")
    return location


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _out(feed: CalendarFeed) -> dict[str, Any]:
    return FeedOut(
        id=feed.id,
        location=feed.location.slug,
        resource=feed.resource.name if feed.resource is not None else None,
        label=feed.label,
        created_at=feed.created_at.isoformat(),
        last_used_at=_iso(feed.last_used_at),
        revoked=feed.revoked_at is not None,
    ).model_dump()


@staff_api.get("/locations/<location>/feeds")
@api.staff_required
def list_feeds(location: str) -> ResponseReturnValue:
    loc = _location(location)
    return jsonify([_out(f) for f in feed_service.list_feeds(db.session(), loc)])


@staff_api.post("/locations/<location>/feeds")
@api.staff_required
def create_feed(location: str) -> ResponseReturnValue:
    loc = _location(location, manage=True)
    body = api.parse_body(FeedIn)
    resource = booking.get_resource(db.session(), loc, body.resource) if body.resource else None
    feed, token = feed_service.create_feed(
        db.session(), loc, now=now(), resource=resource, label=body.label, created_by=g.staff
    )
    db.session.commit()
    url, webcal = feed_service.feed_urls(token, settings())
    return jsonify(FeedCreatedOut(**_out(feed), url=url, webcal_url=webcal).model_dump()), 201


@staff_api.delete("/locations/<location>/feeds/<int:feed_id>")
@api.staff_required
def revoke_feed(location: str, feed_id: int) -> ResponseReturnValue:
    loc = _location(location, manage=True)
    feed = feed_service.get_feed(db.session(), loc, feed_id)
    feed_service.revoke_feed(db.session(), feed, now(), by=g.staff)
    db.session.commit()
    return "", 204


@public.get("/feeds/<token>.ics")
def feed(token: str) -> ResponseReturnValue:
    try:
        found = feed_service.find_feed(db.session(), token, now())
    except NotFound:
        db.session.rollback()
        return Response("No such calendar feed.\n", status=404, mimetype="text/plain")
    body = feed_service.feed_ics(db.session(), found, settings(), now())
    db.session.commit()  # last_used_at
    return Response(
        body,
        mimetype="text/calendar",
        headers={
            "Content-Disposition": 'inline; filename="appointments.ics"',
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex",
        },
    )


# --- CLI ------------------------------------------------------------------------------------------

cli = click.Group("feeds", help="Staff calendar subscription feeds.")


@cli.command("create")
@click.argument("location")
@click.option("--chair", default=None, help="A chair's (or room's) name: feed for it alone.")
@click.option("--label", default="", help="What the feed is for.")
def create_command(location: str, chair: str | None, label: str) -> None:
    """Create a feed and print its secret URLs (shown once)."""
    try:
        loc = booking.get_location(db.session(), location)
        resource = booking.get_resource(db.session(), loc, chair) if chair else None
        feed, token = feed_service.create_feed(
            db.session(), loc, now=now(), resource=resource, label=label
        )
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    db.session.commit()
    url, webcal = feed_service.feed_urls(token, settings())
    click.echo(f"feed {feed.id}")
    click.echo(url)
    click.echo(webcal)


@cli.command("list")
@click.argument("location")
def list_command(location: str) -> None:
    """The feeds of a location (URLs are not kept and cannot be shown again)."""
    try:
        loc = booking.get_location(db.session(), location)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    for f in feed_service.list_feeds(db.session(), loc):
        scope = f.resource.name if f.resource is not None else "whole location"
        state = "revoked" if f.revoked_at is not None else "active"
        click.echo(f"{f.id}\t{state}\t{scope}\t{f.label}")


@cli.command("revoke")
@click.argument("feed_id", type=int)
def revoke_command(feed_id: int) -> None:
    """Revoke a feed: its URL stops working at once."""
    feed = db.session.get(CalendarFeed, feed_id)
    if feed is None:
        raise click.ClickException("No such calendar feed.")
    feed_service.revoke_feed(db.session(), feed, now())
    db.session.commit()
    click.echo(f"feed {feed_id} revoked")


def init_app(app: Flask) -> None:
    app.register_blueprint(public)
    app.register_blueprint(staff_api)
    app.cli.add_command(cli)
