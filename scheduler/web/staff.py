"""The staff portal: chair calendar, appointment actions, booking for a patient, blocks, day
summary, audit log. Account and clinic settings are in `staff_settings`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Flask,
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from scheduler.extensions import db
from scheduler.models import (
    Appointment,
    AppointmentStatus,
    Clinician,
    Location,
    Resource,
    ResourceBlock,
    ServiceKind,
    StaffRole,
)
from scheduler.services import (
    audit,
    availability,
    booking,
    calendar_view,
    course_view,
    courses,
    day_of,
    patients,
    sms_replies,
    staffing,
)
from scheduler.services.clock import NonexistentLocalTime, local_to_utc
from scheduler.services.errors import Conflict, DomainError, SlotUnavailable
from scheduler.services.patients import PatientDetails
from scheduler.web import formatting, staff_patients
from scheduler.web.auth import current_staff
from scheduler.web.common import json_error, now, settings
from scheduler.web.formatting import local
from scheduler.web.inputs import marks_form_problems, query_id, refused_characters
from scheduler.web.staff_common import (
    ROLE_LABELS,
    STATUS_LABELS,
    PageError,
    can_edit_settings,
    forbidden,
    form_value,
    install_pages,
    login,
    owned,
    page_location,
    parse_date,
    refuse_characters,
    staff_audit,
    visible_locations,
)

bp = Blueprint("staff", __name__, url_prefix="/staff")

STATUS_ACTIONS = {
    "checked_in": "Check in",
    "completed": "Complete",
    "no_show": "No-show",
    "booked": "Back to booked",
}
# The day's moves offered on the calendar itself, per current status (the rest are on the visit).
QUICK_ACTIONS = {
    "booked": (("checked_in", "Check in"), ("no_show", "No-show")),
    "checked_in": (("completed", "Complete"),),
}


def _quick_actions(at: dt.datetime) -> Callable[[Appointment], list[tuple[str, str]]]:
    """The calendar's quick moves for a visit, those its status and the time allow."""

    def of(appt: Appointment) -> list[tuple[str, str]]:
        allowed = booking.allowed_statuses(appt, at)
        return [(v, label) for v, label in QUICK_ACTIONS.get(appt.status, ()) if v in allowed]

    return of


# --- access and parsing (what only these pages need; the shared rest is in staff_common) -------


def _appointment(appointment_id: int) -> Appointment:
    appt = db.session.get(Appointment, appointment_id)
    if appt is None or not current_staff().can_access(appt.location_id):
        forbidden()
    return appt


def _parse_time(value: str | None, field: str) -> dt.time:
    try:
        return dt.time.fromisoformat((value or "").strip())
    except ValueError as exc:
        raise PageError("Enter the time as HH:MM.", {field: "not a time (HH:MM)"}) from exc


def _instant(day: dt.date, wall: dt.time, tz: ZoneInfo, field: str) -> dt.datetime:
    try:
        return local_to_utc(day, wall, tz)
    except NonexistentLocalTime as exc:
        raise PageError(
            "That local time does not exist (the clocks skip it).", {field: "does not exist"}
        ) from exc


def _today(location: Location) -> dt.date:
    return now().astimezone(ZoneInfo(location.timezone)).date()


def _resource_of(location: Location, raw: str | None, field: str = "resource") -> Resource | None:
    if not raw:
        return None
    resource_id = query_id(raw)
    if resource_id is None:
        raise PageError("Choose a chair or room.", {field: "unknown"})
    resource = db.session.get(Resource, resource_id)
    if resource is None or resource.location_id != location.id:
        raise PageError("Choose a chair or room of this location.", {field: "unknown"})
    return resource


# --- common page furniture ------------------------------------------------------------------------


@bp.app_context_processor
def _furniture() -> dict[str, Any]:
    def nav_locations() -> list[Location]:
        try:
            return visible_locations(current_staff())
        except HTTPException:
            return []

    return {
        "staff_nav_locations": nav_locations,
        "status_labels": STATUS_LABELS,
        "role_labels": ROLE_LABELS,
    }


install_pages(bp)


_GRID_CSS: str | None = None


@bp.route("/grid.css")
def grid_css() -> ResponseReturnValue:
    global _GRID_CSS
    if _GRID_CSS is None:
        _GRID_CSS = calendar_view.grid_css()
    return Response(
        _GRID_CSS, mimetype="text/css", headers={"Cache-Control": "public, max-age=86400"}
    )


# --- home and calendar ----------------------------------------------------------------------------


@bp.route("/")
@login
def home() -> ResponseReturnValue:
    staff = current_staff()
    locations = visible_locations(staff)
    return render_template(
        "staff/home.html",
        locations=locations,
        staff=staff,
        reviews_due=course_view.reviews_due(db.session(), locations, now()),
    )


@bp.route("/<slug>/calendar")
@login
def calendar(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    tz = ZoneInfo(location.timezone)
    day = parse_date(request.args.get("date")) or _today(location)
    view = request.args.get("view", "day")
    resource = None
    grid: calendar_view.Grid | None = None
    overview: calendar_view.WeekOverview | None = None
    if view == "week":
        # Without a chair, the week across every chair of the location.
        resource = _resource_of(location, request.args.get("resource"))
        if resource is None:
            overview = calendar_view.week_overview(db.session(), location, day)
        else:
            grid = calendar_view.week_grid(db.session(), location, resource, day, now())
    else:
        view = "day"
        grid = calendar_view.day_grid(db.session(), location, day, now())
    summary = calendar_view.day_summary(db.session(), location, day) if view == "day" else None
    step = dt.timedelta(days=7 if view == "week" else 1)
    return render_template(
        "staff/calendar.html",
        location=location,
        day=day,
        tz=tz,
        grid=grid,
        overview=overview,
        view=view,
        resource=resource,
        summary=summary,
        quick_actions=_quick_actions(now()),
        prev_day=day - step,
        next_day=day + step,
        today=_today(location),
        resources=calendar_view.location_resources(db.session(), location),
        can_settings=can_edit_settings(current_staff(), location),
        reviews_due=course_view.reviews_due(db.session(), [location], now()),
        course_badges=course_view.badges(
            db.session(),
            [b.appointment for c in (grid.columns if grid else []) for b in c.boxes],
        ),
        clearance_ends=patients.clearance_ends(
            db.session(),
            [
                b.appointment
                for c in (grid.columns if grid else [])
                for b in c.boxes
                if b.appointment is not None
            ],
        ),
    )


@bp.route("/<slug>/day-sheet")
@login
def day_sheet(slug: str) -> ResponseReturnValue:
    """The day's visits as a printable list for the front desk and the nurses."""
    location = page_location(slug)
    day = parse_date(request.args.get("date")) or _today(location)
    return render_template(
        "staff/day_sheet.html",
        location=location,
        day=day,
        sheet=calendar_view.day_sheet(db.session(), location, day),
        tz=ZoneInfo(location.timezone),
        printed_at=now(),
        prev_day=day - dt.timedelta(days=1),
        next_day=day + dt.timedelta(days=1),
    )


@bp.route("/<slug>/summary")
@login
def summary(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    day = parse_date(request.args.get("date")) or _today(location)
    data = calendar_view.day_summary(db.session(), location, day)
    return render_template(
        "staff/summary.html",
        location=location,
        day=day,
        summary=data,
        tz=ZoneInfo(location.timezone),
        prev_day=day - dt.timedelta(days=1),
        next_day=day + dt.timedelta(days=1),
    )


# --- appointments ---------------------------------------------------------------------------------


def _reminder_history(appointment_id: int) -> list[dict[str, Any]]:
    """The visit's reminder texts, replies and delivery reports, for the appointment page."""
    return [dataclasses.asdict(row) for row in sms_replies.history(db.session(), appointment_id)]


def _audit_visit(appt: Appointment, action: str, details: Mapping[str, Any]) -> None:
    """The audit entry for a staff action on a visit (`appointment.<action>`); the caller commits."""
    staff_audit(
        f"appointment.{action}",
        f"appointment {appt.id}",
        location_id=appt.location_id,
        appointment_id=appt.id,
        details=details,
    )


def _render_appointment(
    appt: Appointment, *, error: PageError | DomainError | None = None, status: int = 200
) -> ResponseReturnValue:
    tz = ZoneInfo(appt.location.timezone)
    staff = current_staff()
    entries = audit.for_appointment(db.session(), appt.id)
    allowed = booking.allowed_statuses(appt, now())
    resources = [
        r
        for r in calendar_view.location_resources(db.session(), appt.location)
        if r.kind == appt.resource.kind and r.active
    ]
    return (
        render_template(
            "staff/appointment.html",
            appt=appt,
            location=appt.location,
            tz=tz,
            staff=staff,
            entries=entries,
            details_of=audit.details_of,
            actions=[(k, v) for k, v in STATUS_ACTIONS.items() if k in allowed],
            can_cancel="cancelled" in allowed,
            can_move=appt.status == AppointmentStatus.BOOKED,
            can_ready=day_of.ready_allowed(appt),
            resources=resources,
            reminders=_reminder_history(appt.id),
            course=courses.course_of(appt),
            badge=course_view.badges(db.session(), [appt]).get(appt.id),
            may_review=courses.may_review(staff),
            error=error,
            local=local,
        ),
        status,
    )


@bp.route("/appointments/<int:appointment_id>")
@login
def appointment(appointment_id: int) -> ResponseReturnValue:
    return _render_appointment(_appointment(appointment_id))


def _describe(appt: Appointment) -> dict[str, str]:
    tz = ZoneInfo(appt.location.timezone)
    return {
        "resource": appt.resource.name,
        "start": local(appt.start_at, tz, "%Y-%m-%d %H:%M"),
        "status": appt.status,
    }


@bp.route("/appointments/<int:appointment_id>/status", methods=["POST"])
@marks_form_problems
@login
def appointment_status(appointment_id: int) -> ResponseReturnValue:
    appt = _appointment(appointment_id)
    target = form_value("status", 32)
    if (refused := refused_characters()) is not None:
        return _render_appointment(appt, error=refused, status=refused.http_status)
    if target not in STATUS_ACTIONS:
        return _render_appointment(
            appt, error=PageError("Choose an action.", {"status": "unknown"}), status=422
        )
    before = appt.status
    try:
        booking.set_status(db.session(), appt, target, now=now(), settings=settings())
    except DomainError as exc:
        db.session.rollback()
        if request.form.get("next") == "calendar":
            flash(f"{appt.patient.name}: {exc.message}")
            return redirect(_back_to(appt), 303)
        return _render_appointment(appt, error=exc, status=exc.http_status)
    _audit_visit(appt, target, {"from": before, "to": appt.status})
    db.session.commit()
    flash(f"{appt.patient.name}: {STATUS_LABELS[appt.status].lower()}.")
    return redirect(_back_to(appt), 303)


def _back_to(appt: Appointment, *, anchor: bool = True) -> str:
    """Where a status change returns: the calendar view it was made from (same day, view and
    chair, scrolled to the visit), or the visit's page."""
    if request.form.get("next", "") != "calendar":
        return url_for("staff.appointment", appointment_id=appt.id)
    tz = ZoneInfo(appt.location.timezone)
    day = parse_date(form_value("date", 20)) or appt.start_at.astimezone(tz).date()
    args: dict[str, Any] = {"date": day.isoformat()}
    if form_value("view", 10) == "week":
        args["view"] = "week"
        raw = form_value("resource", 20)
        if query_id(raw) is not None:
            args["resource"] = raw
    if anchor:
        args["_anchor"] = f"appt-{appt.id}"
    return url_for("staff.calendar", slug=appt.location.slug, **args)


@bp.route("/appointments/<int:appointment_id>/ready", methods=["POST"])
@marks_form_problems
@login
def appointment_ready(appointment_id: int) -> ResponseReturnValue:
    """Text the escort that the patient is ready to be picked up (once per visit)."""
    appt = _appointment(appointment_id)
    try:
        refuse_characters()
        queued = day_of.mark_ready(db.session(), appt, now())
    except DomainError as exc:
        db.session.rollback()
        return _render_appointment(appt, error=exc, status=exc.http_status)
    if queued:
        _audit_visit(appt, "escort_ready", {})
        db.session.commit()
        flash(f"{appt.escort_name} will be texted that {appt.patient.name} is ready.")
    else:
        db.session.rollback()
        flash(f"{appt.escort_name} was already texted.")
    return redirect(url_for("staff.appointment", appointment_id=appt.id), 303)


@bp.route("/appointments/<int:appointment_id>/cancel", methods=["POST"])
@marks_form_problems
@login
def appointment_cancel(appointment_id: int) -> ResponseReturnValue:
    appt = _appointment(appointment_id)
    reason = form_value("reason")
    if (refused := refused_characters()) is not None:
        return _render_appointment(appt, error=refused, status=refused.http_status)
    if not reason:
        return _render_appointment(
            appt,
            error=PageError("Give a reason for the cancellation.", {"reason": "required"}),
            status=422,
        )
    try:
        booking.cancel(
            db.session(), appt, now=now(), settings=settings(), by_staff=True, reason=reason
        )
    except DomainError as exc:
        db.session.rollback()
        return _render_appointment(appt, error=exc, status=exc.http_status)
    _audit_visit(appt, "cancelled", {"reason": reason})
    db.session.commit()
    flash(f"{appt.patient.name}'s appointment is cancelled.")
    return redirect(url_for("staff.appointment", appointment_id=appt.id), 303)


@bp.route("/appointments/<int:appointment_id>/move", methods=["POST"])
@marks_form_problems
@login
def appointment_move(appointment_id: int) -> ResponseReturnValue:
    appt = _appointment(appointment_id)
    tz = ZoneInfo(appt.location.timezone)
    before = _describe(appt)
    try:
        refuse_characters()
        resource = _resource_of(appt.location, form_value("resource", 20)) or appt.resource
        day = parse_date(form_value("date", 20)) or appt.start_at.astimezone(tz).date()
        wall = _parse_time(
            form_value("time", 10) or f"{appt.start_at.astimezone(tz):%H:%M}", "time"
        )
        start = _instant(day, wall, tz, "time")
        if start == appt.start_at and resource.id == appt.resource_id:
            raise PageError("That is where the appointment already is.", {"time": "unchanged"})
        booking.reschedule(
            db.session(),
            appt,
            start,
            now=now(),
            settings=settings(),
            by_staff=True,
            resource_id=resource.id,
        )
        db.session.expire(appt, ["resource"])  # the relationship still names the old chair
    except (PageError, DomainError) as exc:
        db.session.rollback()
        db.session.refresh(appt)
        status = exc.status if isinstance(exc, PageError) else exc.http_status
        if request.form.get("next") == "calendar":
            return _refused_on_calendar(appt, exc, status)
        return _render_appointment(appt, error=exc, status=status)
    _audit_visit(
        appt,
        "moved",
        {
            "from": f"{before['resource']} {before['start']}",
            "to": f"{appt.resource.name} {local(appt.start_at, tz, '%Y-%m-%d %H:%M')}",
        },
    )
    db.session.commit()
    flash(
        f"{appt.patient.name} moved to {appt.resource.name} at "
        f"{local(appt.start_at, tz, '%a %d %b %H:%M')}."
    )
    if request.form.get("next") == "calendar" and _wants_json():
        return jsonify(location=_back_to(appt, anchor=False))
    return redirect(_back_to(appt), 303)


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def _refused_on_calendar(
    appt: Appointment, exc: PageError | DomainError, status: int
) -> ResponseReturnValue:
    """A move or status change made on the calendar and refused: the calendar's script asked
    for JSON and explains it beside the visit; a plain form goes back with the reason."""
    if _wants_json():
        code = exc.code if isinstance(exc, DomainError) else "invalid"
        return json_error(status, code, exc.message, exc.fields)
    flash(f"{appt.patient.name} was not moved: {exc.message}")
    return redirect(_back_to(appt), 303)


# --- booking on behalf of a patient ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FreeTime:
    """A start staff can click: it fills the booking form's service, date, time and chair."""

    service: str  # slug
    date: str  # local YYYY-MM-DD
    time: str  # local HH:MM
    resource: str  # id of the chosen chair or room; empty: the booking takes the first free one
    resource_name: str
    free: int  # how many more bookings that start can take (chairs, nurses, start window)
    label: str  # "09:15", or "Wed 02 Dec 09:15" when the day differs from the one asked
    clinicians: str = ""  # a consultation's prescribers free then, by name ("" otherwise)


def _free_times(
    location: Location,
    service_slug: str,
    day: dt.date | None,
    resource: Resource | None,
    *,
    near: dt.datetime | None = None,
    clinician: int | None = None,
) -> list[FreeTime]:
    """The day's free starts for the service (or, with `near`, the closest ones to a refused
    time), from the same engine that checks a booking; staff are not held to the notice. A
    consultation with a chosen prescriber (`clinician`): only the starts they are free."""
    service = next((s for s in location.services if s.active and s.slug == service_slug), None)
    if service is None or day is None:
        return []
    if resource is not None and resource.kind != service.resource_kind:
        resource = None
    if service.kind != ServiceKind.CONSULTATION:
        clinician = None
    tz = ZoneInfo(location.timezone)
    if near is not None:
        slots = availability.nearest_slots(
            db.session(),
            location,
            service,
            near,
            now(),
            allow_short_notice=True,
            resource_id=resource.id if resource else None,
            clinician=clinician,
        )
    else:
        slots = availability.location_slots(
            db.session(),
            location,
            service,
            day,
            1,
            now(),
            allow_short_notice=True,
            resource_id=resource.id if resource else None,
            clinician=clinician,
        )
    names = {r.id: r.name for r in location.resources}
    people = {c.id: c.name for c in staffing.list_clinicians(db.session())}
    times = []
    for slot in slots:
        local_start = slot.start.astimezone(tz)
        times.append(
            FreeTime(
                service=service.slug,
                date=local_start.date().isoformat(),
                time=f"{local_start:%H:%M}",
                # Without a chosen chair the booking takes the first free one.
                resource=str(resource.id) if resource else "",
                resource_name=names[resource.id] if resource else "any chair",
                free=slot.free,
                clinicians=", ".join(people[c] for c in slot.clinicians if c in people),
                label=f"{local_start:%H:%M}"
                if local_start.date() == day
                else f"{local_start:%a %d %b %H:%M}",
            )
        )
    return times


def _prescriber_options(location: Location, service_slug: str) -> list[Clinician]:
    """The prescribers a consultation here may be booked with: the clinicians endpoint's list
    for the chosen consultation (or the first consultation offered here)."""
    consults = [s for s in location.services if s.active and s.kind == ServiceKind.CONSULTATION]
    if not consults:
        return []
    service = next((s for s in consults if s.slug == service_slug), consults[0])
    return staffing.prescribers_at(db.session(), location, service, now=now())


def _render_book(
    location: Location,
    values: Mapping[str, str],
    error: PageError | DomainError | None,
    status: int,
    *,
    nearest: list[FreeTime] | None = None,
) -> ResponseReturnValue:
    services = sorted((s for s in location.services if s.active), key=lambda s: (s.kind, s.name))
    try:
        day = parse_date(values.get("date"))
        resource = _resource_of(location, values.get("resource"))
    except PageError:
        day, resource = None, None
    return (
        render_template(
            "staff/book.html",
            location=location,
            services=services,
            resources=[
                r for r in calendar_view.location_resources(db.session(), location) if r.active
            ],
            values=values,
            error=error,
            free_times=_free_times(
                location,
                values.get("service", ""),
                day,
                resource,
                clinician=query_id(values.get("clinician")),
            ),
            prescribers=_prescriber_options(location, values.get("service", "")),
            nearest=nearest or [],
            day=day,
        ),
        status,
    )


@bp.route("/<slug>/book", methods=["GET"])
@login
def book_form(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    values = {
        "date": request.args.get("date", "") or _today(location).isoformat(),
        "time": request.args.get("time", ""),
        "resource": request.args.get("resource", ""),
        "service": request.args.get("service", ""),
        "clinician": request.args.get("clinician", ""),
        **staff_patients.prefill(request.args.get("patient", "")),
    }
    if values.get("name"):  # a found patient: kept while free times are looked up
        values["patient"] = request.args.get("patient", "")
    return _render_book(location, values, None, 200)


@bp.route("/<slug>/book", methods=["POST"])
@marks_form_problems
@login
def book_submit(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    tz = ZoneInfo(location.timezone)
    values = {
        k: form_value(k, 2000)
        for k in (
            "service",
            "date",
            "time",
            "resource",
            "clinician",
            "name",
            "phone",
            "email",
            "date_of_birth",
            "note",
        )
    }
    values["sms_consent"] = "on" if request.form.get("sms_consent") == "on" else ""
    start: dt.datetime | None = None
    resource: Resource | None = None
    override = request.form.get("override_clearance") == "on"
    clinician = query_id(values["clinician"])
    try:
        refuse_characters()
        if values["clinician"] and clinician is None:
            raise PageError("Choose a prescriber from the list.", {"clinician": "unknown"})
        day = parse_date(values["date"])
        if day is None:
            raise PageError("Choose a date.", {"date": "required"})
        resource = _resource_of(location, values["resource"])
        start = _instant(day, _parse_time(values["time"], "time"), tz, "time")
        if not values["service"]:
            raise PageError("Choose a service.", {"service": "required"})
        appt = booking.book(
            db.session(),
            booking.BookingRequest(
                location=location.slug,
                service=values["service"],
                start=start,
                patient=PatientDetails(
                    values["name"],
                    values["phone"],
                    values["email"],
                    request.form.get("sms_consent") == "on",
                    parse_date(values["date_of_birth"], "date_of_birth"),
                ),
                note=values["note"],
                source="staff",
                allow_short_notice=True,
                resource_id=resource.id if resource else None,
                require_email=False,  # a patient booking by phone may have none
                override_clearance=override,
                clinician=clinician,  # a consultation's prescriber, if the patient chose one
            ),
            now=now(),
            settings=settings(),
        )
    except (PageError, DomainError) as exc:
        db.session.rollback()
        status = exc.status if isinstance(exc, PageError) else exc.http_status
        nearest = None
        refused_time = isinstance(exc, SlotUnavailable) or "start" in getattr(exc, "fields", {})
        if refused_time and start is not None:
            nearest = _free_times(
                location, values["service"], day, resource, near=start, clinician=clinician
            )
        return _render_book(location, values, exc, status, nearest=nearest)
    details = {"service": appt.service.slug, **_describe(appt)}
    if override and appt.service.requires_clearance:
        details["override_clearance"] = "yes: booked without a current clearance"
    _audit_visit(appt, "booked", details)
    db.session.commit()
    with_whom = f" with {appt.clinician.name}" if appt.clinician_chosen and appt.clinician else ""
    flash(
        f"Booked {appt.patient.name} in {appt.resource.name}{with_whom} at "
        f"{local(appt.start_at, tz, '%a %d %b %H:%M')}."
    )
    return redirect(url_for("staff.calendar", slug=location.slug, date=day), 303)


# --- blocks ---------------------------------------------------------------------------------------


def _render_block_form(
    location: Location,
    values: Mapping[str, str],
    error: PageError | DomainError | None,
    status: int,
    clashes: list[Appointment] | None = None,
) -> ResponseReturnValue:
    return (
        render_template(
            "staff/block.html",
            location=location,
            resources=[
                r for r in calendar_view.location_resources(db.session(), location) if r.active
            ],
            values=values,
            error=error,
            clashes=clashes or [],
            tz=ZoneInfo(location.timezone),
        ),
        status,
    )


@bp.route("/<slug>/blocks/new")
@login
def block_form(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    values = {
        "resource": request.args.get("resource", ""),
        "date": request.args.get("date", "") or _today(location).isoformat(),
        "start": request.args.get("start", ""),
        "end": request.args.get("end", ""),
        "end_date": "",
        "reason": "",
    }
    return _render_block_form(location, values, None, 200)


@bp.route("/<slug>/blocks", methods=["POST"])
@marks_form_problems
@login
def block_create(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    tz = ZoneInfo(location.timezone)
    values = {k: form_value(k) for k in ("resource", "date", "start", "end", "end_date", "reason")}
    resource = None
    start = end = None
    try:
        refuse_characters()
        resource = _resource_of(location, values["resource"])
        if resource is None:
            raise PageError("Choose a chair or room.", {"resource": "required"})
        day = parse_date(values["date"])
        if day is None:
            raise PageError("Choose a date.", {"date": "required"})
        last_day = parse_date(values["end_date"], "end_date") or day
        if not values["reason"]:
            raise PageError("Give a reason for the block.", {"reason": "required"})
        start = _instant(day, _parse_time(values["start"], "start"), tz, "start")
        end = _instant(last_day, _parse_time(values["end"], "end"), tz, "end")
        block = booking.create_block(
            db.session(),
            resource,
            start,
            end,
            reason=values["reason"],
            staff=current_staff(),
            now=now(),
        )
    except (PageError, DomainError) as exc:
        db.session.rollback()
        clashes: list[Appointment] = []
        if isinstance(exc, Conflict) and resource is not None and start and end:
            clashes = booking.clashing_appointments(db.session(), resource, start, end)
        status = exc.status if isinstance(exc, PageError) else exc.http_status
        return _render_block_form(location, values, exc, status, clashes)
    staff_audit(
        "block.created",
        f"{resource.name} block {block.id}",
        location_id=location.id,
        details={
            "start": local(start, tz, "%Y-%m-%d %H:%M"),
            "end": local(end, tz, "%Y-%m-%d %H:%M"),
            "reason": values["reason"],
        },
    )
    db.session.commit()
    flash(f"{resource.name} is blocked {local(start, tz, '%H:%M')}–{local(end, tz, '%H:%M')}.")
    return redirect(url_for("staff.calendar", slug=location.slug, date=day), 303)


@bp.route("/<slug>/blocks/<int:block_id>")
@login
def block_page(slug: str, block_id: int) -> ResponseReturnValue:
    location = page_location(slug)
    return _render_block_page(location, owned(ResourceBlock, block_id, location))


def _render_block_page(
    location: Location,
    block: ResourceBlock,
    error: DomainError | None = None,
    reason: str = "",
    status: int = 200,
) -> ResponseReturnValue:
    entries = [
        e
        for e in audit.recent(db.session(), location_ids=[location.id], limit=500)
        if e.target.endswith(f"block {block.id}") or e.target.endswith(f"block {block.id} (API)")
    ]
    return (
        render_template(
            "staff/block_page.html",
            location=location,
            block=block,
            tz=ZoneInfo(location.timezone),
            local=local,
            entries=entries,
            details_of=audit.details_of,
            error=error,
            reason=reason,
        ),
        status,
    )


@bp.route("/<slug>/blocks/<int:block_id>/delete", methods=["POST"])
@marks_form_problems
@login
def block_delete(slug: str, block_id: int) -> ResponseReturnValue:
    location = page_location(slug)
    tz = ZoneInfo(location.timezone)
    block = owned(ResourceBlock, block_id, location)
    if (refused := refused_characters()) is not None:
        return _render_block_page(
            location, block, refused, form_value("reason"), refused.http_status
        )
    day = block.start_at.astimezone(tz).date()
    described = {
        "start": local(block.start_at, tz, "%Y-%m-%d %H:%M"),
        "end": local(block.end_at, tz, "%Y-%m-%d %H:%M"),
        "reason": block.reason,
        "unblock_reason": form_value("reason"),
    }
    name = block.resource.name
    booking.delete_block(db.session(), block, now=now())
    staff_audit(
        "block.removed", f"{name} block {block_id}", location_id=location.id, details=described
    )
    db.session.commit()
    flash(f"{name} is back in service.")
    return redirect(url_for("staff.calendar", slug=location.slug, date=day), 303)


# --- audit log ------------------------------------------------------------------------------------


@bp.route("/audit")
@login
def audit_log() -> ResponseReturnValue:
    staff = current_staff()
    if staff.role == StaffRole.ADMIN:
        entries = audit.recent(db.session(), location_ids=None)
    else:
        ids = [x.id for x in staff.locations]
        entries = audit.recent(db.session(), location_ids=ids)
    locations = list(db.session.scalars(select(Location)))
    return render_template(
        "staff/audit.html",
        entries=entries,
        names={x.id: x.name for x in locations},
        zones={x.id: x.timezone for x in locations},
        details_of=audit.details_of,
    )


def init_app(app: Flask) -> None:
    formatting.install(app)
    app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
