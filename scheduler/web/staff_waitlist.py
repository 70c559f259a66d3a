"""The staff waitlist pages: a location's waiting patients in join order with the offers made to
each, and offering one of them a free start by hand (texted by the worker like any offer).
Every staff member of the location sees the list and may offer a time, as with the API's
`POST /api/v1/locations/{location}/waitlist/{entry}/offers`."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from scheduler.extensions import db
from scheduler.models import Location, WaitlistEntry, WaitlistStatus
from scheduler.services import waitlist, waitlist_view
from scheduler.services.errors import DomainError, InvalidInput
from scheduler.web.auth import current_staff
from scheduler.web.common import now, settings
from scheduler.web.inputs import marks_form_problems
from scheduler.web.staff_common import (
    PageError,
    form_value,
    install_pages,
    login,
    page_location,
    parse_date,
    refuse_characters,
    staff_audit,
)

bp = Blueprint("staff_waitlist", __name__, url_prefix="/staff")
install_pages(bp)


def _entry(location: Location, entry_id: int) -> WaitlistEntry:
    """The entry if it is on this location's list; another location's entries do not exist
    under this one's URLs (404)."""
    entry = db.session.get(WaitlistEntry, entry_id)
    if entry is None or entry.location_id != location.id:
        abort(404)
    return entry


@bp.route("/<slug>/waitlist")
@login
def waitlist_page(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    rows = waitlist_view.location_rows(db.session(), location, now=now())
    return render_template(
        "staff/waitlist.html",
        location=location,
        rows=rows,
        offer_minutes=settings().waitlist_offer_minutes,
    )


def _render_offer(
    location: Location,
    entry: WaitlistEntry,
    day: dt.date,
    *,
    error: DomainError | PageError | None = None,
    chosen: str = "",
    status: int = 200,
) -> ResponseReturnValue:
    session = db.session()
    tz = ZoneInfo(location.timezone)
    return (
        render_template(
            "staff/waitlist_offer.html",
            location=location,
            entry=entry,
            row=waitlist_view.entry_row(session, entry, now=now()),
            day=day,
            starts=waitlist_view.free_starts(session, entry, day, now=now())
            if entry.status == WaitlistStatus.ACTIVE
            else [],
            tz=tz,
            error=error,
            chosen=chosen,
            prev_day=day - dt.timedelta(days=1),
            next_day=day + dt.timedelta(days=1),
        ),
        status,
    )


@bp.route("/<slug>/waitlist/<int:entry_id>/offer")
@login
def offer_form(slug: str, entry_id: int) -> ResponseReturnValue:
    location = page_location(slug)
    entry = _entry(location, entry_id)
    day = parse_date(request.args.get("date")) or waitlist_view.first_day(entry, now())
    return _render_offer(location, entry, day)


@bp.route("/<slug>/waitlist/<int:entry_id>/offer", methods=["POST"])
@marks_form_problems
@login
def offer_submit(slug: str, entry_id: int) -> ResponseReturnValue:
    location = page_location(slug)
    entry = _entry(location, entry_id)
    chosen = form_value("start", 40)
    try:
        day = parse_date(form_value("date", 20)) or waitlist_view.first_day(entry, now())
    except PageError:
        day = waitlist_view.first_day(entry, now())
    try:
        refuse_characters()
        try:
            start = dt.datetime.fromisoformat(chosen) if chosen else None
        except ValueError:
            start = None
        if start is None or start.tzinfo is None:
            raise InvalidInput("Choose one of the free times.", {"start": "choose a free time"})
        offer = waitlist.offer_by_hand(
            db.session(), entry, start, now=now(), settings=settings(), staff=current_staff()
        )
    except DomainError as exc:
        db.session.rollback()
        entry = _entry(location, entry_id)
        return _render_offer(location, entry, day, error=exc, chosen=chosen, status=exc.http_status)
    staff_audit(
        "waitlist.offered",
        f"waitlist entry {entry.id} offer {offer.id}",
        location_id=location.id,
        patient_id=entry.patient_id,
        details={"start": start.isoformat()},
    )
    db.session.commit()
    local = offer.slot_start.astimezone(ZoneInfo(location.timezone))
    flash(
        f"{entry.patient.name} will be texted the offer of {local:%a %d %b %H:%M} "
        "by the worker's next pass."
    )
    return redirect(url_for("staff_waitlist.waitlist_page", slug=location.slug), 303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
