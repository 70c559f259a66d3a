"""Staff calendar feeds: secret, revocable subscription URLs per location or per chair."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import (
    ACTIVE_STATUSES,
    Appointment,
    CalendarFeed,
    Location,
    Resource,
    StaffUser,
)
from scheduler.services import audit, invites
from scheduler.services.errors import InvalidInput, NotFound
from scheduler.services.settings import ClinicSettings

PAST = dt.timedelta(days=7)  # today's and this week's visits stay visible
FUTURE = dt.timedelta(days=366)
TOUCH_EVERY = dt.timedelta(hours=1)  # last_used_at is refreshed at most this often


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_feed(
    session: Session,
    location: Location,
    *,
    now: dt.datetime,
    resource: Resource | None = None,
    label: str = "",
    created_by: StaffUser | None = None,
) -> tuple[CalendarFeed, str]:
    """A new feed and its secret token (shown once: only the hash is stored)."""
    if resource is not None and resource.location_id != location.id:
        raise InvalidInput("That chair is not at this location.", {"resource": "unknown"})
    if len(label) > 100:
        raise InvalidInput("The label is too long.", {"label": "at most 100 characters"})
    token = secrets.token_urlsafe(32)
    feed = CalendarFeed(
        location_id=location.id,
        resource_id=resource.id if resource is not None else None,
        token_hash=_hash(token),
        label=label.strip(),
        created_by_id=created_by.id if created_by is not None else None,
        created_at=now,
    )
    session.add(feed)
    session.flush()
    audit.record(
        session,
        actor=created_by,
        action="calendar_feed.created",
        at=now,
        location_id=location.id,
        target=resource.name if resource is not None else location.name,
        details={"feed_id": feed.id, "label": feed.label},
    )
    return feed, token


def find_feed(session: Session, token: str, now: dt.datetime) -> CalendarFeed:
    """The live feed for `token`; unknown and revoked ones are NotFound alike."""
    feed = None
    if 20 <= len(token) <= 100:
        feed = session.scalars(
            select(CalendarFeed).where(CalendarFeed.token_hash == _hash(token))
        ).first()
    if feed is None or feed.revoked_at is not None or not feed.location.active:
        raise NotFound("No such calendar feed.")
    if feed.last_used_at is None or now - feed.last_used_at >= TOUCH_EVERY:
        feed.last_used_at = now
        session.flush()
    return feed


def list_feeds(session: Session, location: Location) -> Sequence[CalendarFeed]:
    return session.scalars(
        select(CalendarFeed)
        .where(CalendarFeed.location_id == location.id)
        .order_by(CalendarFeed.id)
    ).all()


def get_feed(session: Session, location: Location, feed_id: int) -> CalendarFeed:
    feed = session.get(CalendarFeed, feed_id)
    if feed is None or feed.location_id != location.id:
        raise NotFound("No such calendar feed.")
    return feed


def revoke_feed(
    session: Session, feed: CalendarFeed, now: dt.datetime, *, by: StaffUser | None = None
) -> None:
    """The URL stops working at once; revoking twice is harmless."""
    if feed.revoked_at is None:
        feed.revoked_at = now
        session.flush()
        audit.record(
            session,
            actor=by,
            action="calendar_feed.revoked",
            at=now,
            location_id=feed.location_id,
            target=feed.resource.name if feed.resource is not None else feed.location.name,
            details={"feed_id": feed.id, "label": feed.label},
        )


def feed_appointments(session: Session, feed: CalendarFeed, now: dt.datetime) -> list[Appointment]:
    query = (
        select(Appointment)
        .where(
            Appointment.location_id == feed.location_id,
            Appointment.status.in_([str(s) for s in ACTIVE_STATUSES]),
            Appointment.end_at > now - PAST,
            Appointment.start_at < now + FUTURE,
        )
        .order_by(Appointment.start_at, Appointment.id)
    )
    if feed.resource_id is not None:
        query = query.where(Appointment.resource_id == feed.resource_id)
    return list(session.scalars(query).all())


def feed_name(feed: CalendarFeed, settings: ClinicSettings) -> str:
    name = f"{settings.clinic_name} {feed.location.name}"
    if feed.resource is not None:
        name += f" · {feed.resource.name}"
    return name


def feed_ics(
    session: Session, feed: CalendarFeed, settings: ClinicSettings, now: dt.datetime
) -> bytes:
    return invites.feed_calendar(
        feed_appointments(session, feed, now),
        name=feed_name(feed, settings),
        timezone=feed.location.timezone,
        now=now,
    )


def feed_urls(token: str, settings: ClinicSettings) -> tuple[str, str]:
    """(https URL, webcal:// URL) of the feed."""
    url = f"{settings.public_base_url}/feeds/{token}.ics"
    return url, "webcal://" + url.split("://", 1)[1]
