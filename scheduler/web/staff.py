"""The staff portal: chair calendar, appointment actions, blocks, day summary, settings, audit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
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
    ApiToken,
    Appointment,
    AppointmentStatus,
    AuditEntry,
    Closure,
    Location,
    Resource,
    ResourceBlock,
    Service,
    StaffRole,
    StaffUser,
)
from scheduler.services import audit, booking, calendar_view, settings_admin
from scheduler.services import staff as staff_service
from scheduler.services.clock import NonexistentLocalTime, local_to_utc
from scheduler.services.errors import Conflict, DomainError, InvalidInput
from scheduler.services.patients import PatientDetails
from scheduler.web.auth import current_staff, hasher, staff_login_required
from scheduler.web.common import now, settings

bp = Blueprint("staff", __name__, url_prefix="/staff")

STATUS_ACTIONS = {
    "checked_in": "Check in",
    "completed": "Complete",
    "no_show": "No-show",
    "booked": "Back to booked",
}
STATUS_LABELS = {
    "booked": "Booked",
    "checked_in": "Checked in",
    "completed": "Completed",
    "no_show": "No-show",
    "cancelled": "Cancelled",
}
ROLE_LABELS = {"admin": "Admin", "manager": "Manager", "front_desk": "Front desk", "nurse": "Nurse"}


class PageError(Exception):
    """A form error to show on the page it came from, with its HTTP status."""

    def __init__(self, message: str, fields: Mapping[str, str] | None = None, status: int = 422):
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})
        self.status = status


# --- access ---------------------------------------------------------------------------------------


def forbidden() -> NoReturn:
    abort(403)


def _location(slug: str) -> Location:
    """The location, if this user may see it; unknown and forbidden look alike (403)."""
    staff = current_staff()
    location = db.session.scalars(select(Location).where(Location.slug == slug)).first()
    if location is None or not staff.can_access(location.id):
        forbidden()
    return location


Owned = TypeVar("Owned", Closure, Resource, ResourceBlock)


def _owned(model: type[Owned], row_id: int, location: Location) -> Owned:
    """The `model` row `row_id` if it belongs to `location`, else 404: the rows of another
    location do not exist under this one's URLs."""
    row = db.session.get(model, row_id)
    if row is None:
        abort(404)
    owner = row.resource.location_id if isinstance(row, ResourceBlock) else row.location_id
    if owner != location.id:
        abort(404)
    return row


def _appointment(appointment_id: int) -> Appointment:
    appt = db.session.get(Appointment, appointment_id)
    if appt is None or not current_staff().can_access(appt.location_id):
        forbidden()
    return appt


def visible_locations(staff: StaffUser) -> list[Location]:
    query = select(Location).order_by(Location.name)
    rows = list(db.session.scalars(query))
    return [x for x in rows if staff.can_access(x.id)]


def can_edit_settings(staff: StaffUser, location: Location) -> bool:
    if staff.role == StaffRole.ADMIN:
        return staff.active
    return staff.role == StaffRole.MANAGER and staff.can_access(location.id)


def _settings_location(slug: str) -> Location:
    location = _location(slug)
    if not can_edit_settings(current_staff(), location):
        forbidden()
    return location


def _require_admin() -> StaffUser:
    staff = current_staff()
    if staff.role != StaffRole.ADMIN:
        forbidden()
    return staff


def _require_settings_role() -> StaffUser:
    staff = current_staff()
    if staff.role not in (StaffRole.ADMIN, StaffRole.MANAGER):
        forbidden()
    return staff


# --- parsing --------------------------------------------------------------------------------------


def _parse_date(value: str | None, field: str = "date") -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise PageError("Enter the date as YYYY-MM-DD.", {field: "not a date"}, 400) from exc


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
    if not raw.isdigit():
        raise PageError("Choose a chair or room.", {field: "unknown"})
    resource = db.session.get(Resource, int(raw))
    if resource is None or resource.location_id != location.id:
        raise PageError("Choose a chair or room of this location.", {field: "unknown"})
    return resource


def _form(name: str, limit: int = 500) -> str:
    return request.form.get(name, "").strip()[:limit]


def _local(instant: dt.datetime | None, tz: ZoneInfo, fmt: str = "%a %d %b %Y %H:%M") -> str:
    return instant.astimezone(tz).strftime(fmt) if instant else ""


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


@bp.after_request
def _no_store(response: Response) -> Response:
    # Patient names and phone numbers: never in a shared or back-button cache.
    if not request.path.endswith("/grid.css"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.errorhandler(403)
def _forbidden_page(exc: HTTPException) -> ResponseReturnValue:
    return render_template("staff/error.html", message="You do not have access to this page."), 403


@bp.errorhandler(404)
def _not_found_page(exc: HTTPException) -> ResponseReturnValue:
    return render_template("staff/error.html", message="There is nothing here."), 404


@bp.errorhandler(PageError)
def _page_error(exc: PageError) -> ResponseReturnValue:
    db.session.rollback()
    return render_template("staff/error.html", message=exc.message, fields=exc.fields), exc.status


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> ResponseReturnValue:
    db.session.rollback()
    return (
        render_template("staff/error.html", message=exc.message, fields=exc.fields),
        exc.http_status,
    )


def login(view: Callable[..., Any]) -> Callable[..., Any]:
    return staff_login_required(view)


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
    return render_template("staff/home.html", locations=locations, staff=staff)


@bp.route("/<slug>/calendar")
@login
def calendar(slug: str) -> ResponseReturnValue:
    location = _location(slug)
    tz = ZoneInfo(location.timezone)
    day = _parse_date(request.args.get("date")) or _today(location)
    view = request.args.get("view", "day")
    resource = None
    if view == "week":
        resource = _resource_of(location, request.args.get("resource"))
        if resource is None:
            raise PageError("Choose a chair for the week view.", {"resource": "required"}, 400)
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
        view=view,
        resource=resource,
        summary=summary,
        prev_day=day - step,
        next_day=day + step,
        today=_today(location),
        resources=calendar_view.location_resources(db.session(), location),
        can_settings=can_edit_settings(current_staff(), location),
    )


@bp.route("/<slug>/summary")
@login
def summary(slug: str) -> ResponseReturnValue:
    location = _location(slug)
    day = _parse_date(request.args.get("date")) or _today(location)
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


def _reminder_history(appointment_id: int) -> list[dict[str, Any]] | None:
    """Reminder rows from scheduler.services.reminders.history, when that feature exists."""
    try:
        module = importlib.import_module("scheduler.services.reminders")
    except ImportError:
        return None
    history = getattr(module, "history", None)
    if history is None:
        return None
    rows: list[dict[str, Any]] = []
    for item in history(db.session, appointment_id):
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            rows.append(dataclasses.asdict(item))
        elif isinstance(item, Mapping):
            rows.append(dict(item))
        elif hasattr(item, "_asdict"):
            rows.append(item._asdict())
        else:
            fields = {
                k: getattr(item, k)
                for k in ("kind", "channel", "status", "due_at", "sent_at", "error")
                if hasattr(item, k)
            }
            rows.append(fields or {"entry": str(item)})
    return rows


def _render_appointment(
    appt: Appointment, *, error: PageError | DomainError | None = None, status: int = 200
) -> ResponseReturnValue:
    tz = ZoneInfo(appt.location.timezone)
    staff = current_staff()
    entries = audit.for_appointment(db.session(), appt.id)
    allowed = booking.TRANSITIONS.get(appt.status, frozenset())
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
            resources=resources,
            reminders=_reminder_history(appt.id),
            error=error,
            local=_local,
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
        "start": _local(appt.start_at, tz, "%Y-%m-%d %H:%M"),
        "status": appt.status,
    }


@bp.route("/appointments/<int:appointment_id>/status", methods=["POST"])
@login
def appointment_status(appointment_id: int) -> ResponseReturnValue:
    appt = _appointment(appointment_id)
    target = _form("status", 32)
    if target not in STATUS_ACTIONS:
        return _render_appointment(
            appt, error=PageError("Choose an action.", {"status": "unknown"}), status=422
        )
    before = appt.status
    try:
        booking.set_status(db.session(), appt, target, now=now(), settings=settings())
    except DomainError as exc:
        db.session.rollback()
        return _render_appointment(appt, error=exc, status=exc.http_status)
    audit.record(
        db.session(),
        actor=current_staff(),
        action=f"appointment.{target}",
        at=now(),
        location_id=appt.location_id,
        appointment_id=appt.id,
        target=f"appointment {appt.id}",
        details={"from": before, "to": appt.status},
    )
    db.session.commit()
    flash(f"{appt.patient.name}: {STATUS_LABELS[appt.status].lower()}.")
    return redirect(_back_to(appt), 303)


def _back_to(appt: Appointment) -> str:
    nxt = request.form.get("next", "")
    if nxt == "calendar":
        tz = ZoneInfo(appt.location.timezone)
        return url_for(
            "staff.calendar", slug=appt.location.slug, date=appt.start_at.astimezone(tz).date()
        )
    return url_for("staff.appointment", appointment_id=appt.id)


@bp.route("/appointments/<int:appointment_id>/cancel", methods=["POST"])
@login
def appointment_cancel(appointment_id: int) -> ResponseReturnValue:
    appt = _appointment(appointment_id)
    reason = _form("reason")
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
    audit.record(
        db.session(),
        actor=current_staff(),
        action="appointment.cancelled",
        at=now(),
        location_id=appt.location_id,
        appointment_id=appt.id,
        target=f"appointment {appt.id}",
        details={"reason": reason},
    )
    db.session.commit()
    flash(f"{appt.patient.name}'s appointment is cancelled.")
    return redirect(url_for("staff.appointment", appointment_id=appt.id), 303)


@bp.route("/appointments/<int:appointment_id>/move", methods=["POST"])
@login
def appointment_move(appointment_id: int) -> ResponseReturnValue:
    appt = _appointment(appointment_id)
    tz = ZoneInfo(appt.location.timezone)
    before = _describe(appt)
    try:
        resource = _resource_of(appt.location, _form("resource", 20)) or appt.resource
        day = _parse_date(_form("date", 20)) or appt.start_at.astimezone(tz).date()
        wall = _parse_time(_form("time", 10) or f"{appt.start_at.astimezone(tz):%H:%M}", "time")
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
        return _render_appointment(appt, error=exc, status=status)
    audit.record(
        db.session(),
        actor=current_staff(),
        action="appointment.moved",
        at=now(),
        location_id=appt.location_id,
        appointment_id=appt.id,
        target=f"appointment {appt.id}",
        details={
            "from": f"{before['resource']} {before['start']}",
            "to": f"{appt.resource.name} {_local(appt.start_at, tz, '%Y-%m-%d %H:%M')}",
        },
    )
    db.session.commit()
    flash(
        f"{appt.patient.name} moved to {appt.resource.name} at "
        f"{_local(appt.start_at, tz, '%a %d %b %H:%M')}."
    )
    return redirect(url_for("staff.appointment", appointment_id=appt.id), 303)


# --- booking on behalf of a patient ---------------------------------------------------------------


def _render_book(
    location: Location,
    values: Mapping[str, str],
    error: PageError | DomainError | None,
    status: int,
) -> ResponseReturnValue:
    services = sorted((s for s in location.services if s.active), key=lambda s: (s.kind, s.name))
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
        ),
        status,
    )


@bp.route("/<slug>/book", methods=["GET"])
@login
def book_form(slug: str) -> ResponseReturnValue:
    location = _location(slug)
    values = {
        "date": request.args.get("date", "") or _today(location).isoformat(),
        "time": request.args.get("time", ""),
        "resource": request.args.get("resource", ""),
        "service": request.args.get("service", ""),
    }
    return _render_book(location, values, None, 200)


@bp.route("/<slug>/book", methods=["POST"])
@login
def book_submit(slug: str) -> ResponseReturnValue:
    location = _location(slug)
    tz = ZoneInfo(location.timezone)
    values = {
        k: _form(k, 2000)
        for k in ("service", "date", "time", "resource", "name", "phone", "email", "note")
    }
    try:
        day = _parse_date(values["date"])
        if day is None:
            raise PageError("Choose a date.", {"date": "required"})
        start = _instant(day, _parse_time(values["time"], "time"), tz, "time")
        resource = _resource_of(location, values["resource"])
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
                ),
                note=values["note"],
                source="staff",
                allow_short_notice=True,
                resource_id=resource.id if resource else None,
            ),
            now=now(),
            settings=settings(),
        )
    except (PageError, DomainError) as exc:
        db.session.rollback()
        status = exc.status if isinstance(exc, PageError) else exc.http_status
        return _render_book(location, values, exc, status)
    audit.record(
        db.session(),
        actor=current_staff(),
        action="appointment.booked",
        at=now(),
        location_id=location.id,
        appointment_id=appt.id,
        target=f"appointment {appt.id}",
        details={"service": appt.service.slug, **_describe(appt)},
    )
    db.session.commit()
    flash(
        f"Booked {appt.patient.name} in {appt.resource.name} at "
        f"{_local(appt.start_at, tz, '%a %d %b %H:%M')}."
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
    location = _location(slug)
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
@login
def block_create(slug: str) -> ResponseReturnValue:
    location = _location(slug)
    tz = ZoneInfo(location.timezone)
    values = {k: _form(k) for k in ("resource", "date", "start", "end", "end_date", "reason")}
    resource = None
    start = end = None
    try:
        resource = _resource_of(location, values["resource"])
        if resource is None:
            raise PageError("Choose a chair or room.", {"resource": "required"})
        day = _parse_date(values["date"])
        if day is None:
            raise PageError("Choose a date.", {"date": "required"})
        last_day = _parse_date(values["end_date"], "end_date") or day
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
    audit.record(
        db.session(),
        actor=current_staff(),
        action="block.created",
        at=now(),
        location_id=location.id,
        target=f"{resource.name} block {block.id}",
        details={
            "start": _local(start, tz, "%Y-%m-%d %H:%M"),
            "end": _local(end, tz, "%Y-%m-%d %H:%M"),
            "reason": values["reason"],
        },
    )
    db.session.commit()
    flash(f"{resource.name} is blocked {_local(start, tz, '%H:%M')}–{_local(end, tz, '%H:%M')}.")
    return redirect(url_for("staff.calendar", slug=location.slug, date=day), 303)


@bp.route("/<slug>/blocks/<int:block_id>")
@login
def block_page(slug: str, block_id: int) -> ResponseReturnValue:
    location = _location(slug)
    block = _owned(ResourceBlock, block_id, location)
    tz = ZoneInfo(location.timezone)
    entries = [
        e
        for e in audit.recent(db.session(), location_ids=[location.id], limit=500)
        if e.target.endswith(f"block {block.id}") or e.target.endswith(f"block {block.id} (API)")
    ]
    return render_template(
        "staff/block_page.html",
        location=location,
        block=block,
        tz=tz,
        local=_local,
        entries=entries,
        details_of=audit.details_of,
    )


@bp.route("/<slug>/blocks/<int:block_id>/delete", methods=["POST"])
@login
def block_delete(slug: str, block_id: int) -> ResponseReturnValue:
    location = _location(slug)
    tz = ZoneInfo(location.timezone)
    block = _owned(ResourceBlock, block_id, location)
    day = block.start_at.astimezone(tz).date()
    described = {
        "start": _local(block.start_at, tz, "%Y-%m-%d %H:%M"),
        "end": _local(block.end_at, tz, "%Y-%m-%d %H:%M"),
        "reason": block.reason,
        "unblock_reason": _form("reason"),
    }
    name = block.resource.name
    booking.delete_block(db.session(), block)
    audit.record(
        db.session(),
        actor=current_staff(),
        action="block.removed",
        at=now(),
        location_id=location.id,
        target=f"{name} block {block_id}",
        details=described,
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
    names = {x.id: x.name for x in db.session.scalars(select(Location))}
    return render_template(
        "staff/audit.html", entries=entries, names=names, details_of=audit.details_of
    )


# --- account: own API tokens ----------------------------------------------------------------------


def _render_tokens(
    owner: StaffUser, new_token: str | None = None, status: int = 200
) -> ResponseReturnValue:
    tokens = sorted(owner.tokens, key=lambda t: t.created_at, reverse=True)
    return (
        render_template(
            "staff/account.html",
            owner=owner,
            tokens=tokens,
            new_token=new_token,
            me=current_staff(),
            tz=dt.UTC,
        ),
        status,
    )


def _token_owner(staff_id: int | None) -> StaffUser:
    me = current_staff()
    if staff_id is None or staff_id == me.id:
        return me
    _require_admin()
    owner = db.session.get(StaffUser, staff_id)
    if owner is None:
        abort(404)
    return owner


@bp.route("/account")
@login
def account() -> ResponseReturnValue:
    return _render_tokens(current_staff())


@bp.route("/account/tokens", methods=["POST"])
@bp.route("/settings/staff/<int:staff_id>/tokens", methods=["POST"])
@login
def token_issue(staff_id: int | None = None) -> ResponseReturnValue:
    owner = _token_owner(staff_id)
    label = _form("label", 100)
    plain = staff_service.issue_token(db.session(), owner, now(), label=label)
    audit.record(
        db.session(),
        actor=current_staff(),
        action="token.issued",
        at=now(),
        target=f"staff {owner.id} ({owner.name})",
        details={"label": label},
    )
    db.session.commit()
    # Shown once, in this response only; only its hash is kept.
    return _render_tokens(owner, new_token=plain, status=201)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@login
def token_revoke(token_id: int) -> ResponseReturnValue:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        abort(404)
    owner = _token_owner(token.staff_id)
    if token.revoked_at is None:
        token.revoked_at = now()
        audit.record(
            db.session(),
            actor=current_staff(),
            action="token.revoked",
            at=now(),
            target=f"staff {owner.id} ({owner.name})",
            details={"label": token.label},
        )
        db.session.commit()
    flash("The token is revoked.")
    if owner.id == current_staff().id:
        return redirect(url_for("staff.account"), 303)
    return redirect(url_for("staff.settings_staff_edit", staff_id=owner.id), 303)


# --- settings -------------------------------------------------------------------------------------


@bp.route("/settings")
@login
def settings_home() -> ResponseReturnValue:
    staff = _require_settings_role()
    locations = [x for x in visible_locations(staff) if can_edit_settings(staff, x)]
    services = list(db.session.scalars(select(Service).order_by(Service.name)))
    editable = [s for s in services if settings_admin.can_edit_service(staff, s)]
    users = (
        list(db.session.scalars(select(StaffUser).order_by(StaffUser.name)))
        if staff.role == StaffRole.ADMIN
        else []
    )
    return render_template(
        "staff/settings.html",
        staff=staff,
        locations=locations,
        services=editable,
        users=users,
    )


def _render_location_settings(
    location: Location, error: DomainError | PageError | None = None, status: int = 200
) -> ResponseReturnValue:
    return (
        render_template(
            "staff/settings_location.html",
            location=location,
            hours=settings_admin.hours_text(location),
            closures=sorted(location.closures, key=lambda c: c.first_day),
            resources=calendar_view.location_resources(db.session(), location),
            error=error,
            is_admin=current_staff().role == StaffRole.ADMIN,
        ),
        status,
    )


def _audit_setting(
    action: str, location: Location | None, target: str, details: Mapping[str, Any]
) -> None:
    audit.record(
        db.session(),
        actor=current_staff(),
        action=action,
        at=now(),
        location_id=location.id if location else None,
        target=target,
        details=details,
    )


def _settings_post(
    location: Location, action: str, target: str, change: Callable[[], Mapping[str, Any]]
) -> ResponseReturnValue:
    try:
        details = change()
    except DomainError as exc:
        db.session.rollback()
        db.session.refresh(location)
        return _render_location_settings(location, exc, exc.http_status)
    _audit_setting(action, location, target, details)
    db.session.commit()
    flash("Saved.")
    return redirect(url_for("staff.settings_location", slug=location.slug), 303)


@bp.route("/settings/locations/new", methods=["GET", "POST"])
@login
def settings_location_new() -> ResponseReturnValue:
    _require_admin()
    if request.method == "GET":
        return render_template("staff/settings_location_new.html", values={}, error=None)
    values = {k: _form(k) for k in ("slug", "name", "timezone", "address", "phone")}
    try:
        location = settings_admin.create_location(db.session(), **values)
    except DomainError as exc:
        db.session.rollback()
        return render_template(
            "staff/settings_location_new.html", values=values, error=exc
        ), exc.http_status
    _audit_setting("location.created", location, f"location {location.slug}", values)
    db.session.commit()
    return redirect(url_for("staff.settings_location", slug=location.slug), 303)


@bp.route("/settings/locations/<slug>", methods=["GET", "POST"])
@login
def settings_location(slug: str) -> ResponseReturnValue:
    location = _settings_location(slug)
    if request.method == "GET":
        return _render_location_settings(location)
    values = {k: _form(k) for k in ("name", "timezone", "address", "phone")}
    active = None
    if current_staff().role == StaffRole.ADMIN:
        active = request.form.get("active") == "on"
    return _settings_post(
        location,
        "location.updated",
        f"location {location.slug}",
        lambda: settings_admin.update_location(db.session(), location, active=active, **values),
    )


@bp.route("/settings/locations/<slug>/hours", methods=["POST"])
@login
def settings_hours(slug: str) -> ResponseReturnValue:
    location = _settings_location(slug)
    texts = {day: _form(f"day{day}", 200) for day in range(7)}
    return _settings_post(
        location,
        "location.hours",
        f"location {location.slug}",
        lambda: settings_admin.set_hours(db.session(), location, texts),
    )


@bp.route("/settings/locations/<slug>/closures", methods=["POST"])
@login
def settings_closure_add(slug: str) -> ResponseReturnValue:
    location = _settings_location(slug)

    def change() -> Mapping[str, Any]:
        try:
            first = _parse_date(_form("first_day"), "first_day")
            last = _parse_date(_form("last_day"), "last_day") or first
        except PageError as exc:
            raise InvalidInput(exc.message, exc.fields) from exc
        return settings_admin.add_closure(db.session(), location, first, last, _form("reason", 200))

    return _settings_post(location, "location.closure_added", f"location {location.slug}", change)


@bp.route("/settings/locations/<slug>/closures/<int:closure_id>/delete", methods=["POST"])
@login
def settings_closure_delete(slug: str, closure_id: int) -> ResponseReturnValue:
    location = _settings_location(slug)
    closure = _owned(Closure, closure_id, location)
    return _settings_post(
        location,
        "location.closure_removed",
        f"location {location.slug}",
        lambda: settings_admin.delete_closure(db.session(), closure),
    )


@bp.route("/settings/locations/<slug>/resources", methods=["POST"])
@login
def settings_resource_add(slug: str) -> ResponseReturnValue:
    location = _settings_location(slug)
    return _settings_post(
        location,
        "resource.created",
        f"location {location.slug}",
        lambda: settings_admin.add_resource(
            db.session(),
            location,
            kind=_form("kind", 16),
            name=_form("name", 100),
            position=_form("position", 6),
        ),
    )


@bp.route("/settings/locations/<slug>/resources/<int:resource_id>", methods=["POST"])
@login
def settings_resource_edit(slug: str, resource_id: int) -> ResponseReturnValue:
    location = _settings_location(slug)
    resource = _owned(Resource, resource_id, location)
    return _settings_post(
        location,
        "resource.updated",
        f"{location.slug} resource {resource.id}",
        lambda: settings_admin.update_resource(
            db.session(),
            resource,
            name=_form("name", 100),
            position=_form("position", 6),
            active=request.form.get("active") == "on",
        ),
    )


SERVICE_FIELDS = (
    "slug",
    "name",
    "kind",
    "resource_kind",
    "description",
    "what_to_bring",
    "duration_minutes",
    "prep_minutes",
    "recovery_minutes",
    "slot_step_minutes",
    "min_notice_minutes",
    "horizon_days",
    "late_cancel_hours",
    "public_title",
)


def _render_service(
    service: Service | None, values: Mapping[str, Any], error: DomainError | None, status: int
) -> ResponseReturnValue:
    staff = current_staff()
    locations = [x for x in visible_locations(staff) if can_edit_settings(staff, x)]
    return (
        render_template(
            "staff/settings_service.html",
            service=service,
            values=values,
            locations=locations,
            error=error,
        ),
        status,
    )


def _service_values(service: Service) -> dict[str, Any]:
    values: dict[str, Any] = {k: getattr(service, k) for k in SERVICE_FIELDS}
    values["active"] = service.active
    values["locations"] = {x.id for x in service.locations}
    return values


def _posted_service() -> dict[str, Any]:
    values: dict[str, Any] = {k: _form(k, 2000) for k in SERVICE_FIELDS}
    values["active"] = request.form.get("active") == "on"
    values["locations"] = {int(x) for x in request.form.getlist("locations") if x.isdigit()}
    return values


@bp.route("/settings/services/new", methods=["GET", "POST"])
@login
def settings_service_new() -> ResponseReturnValue:
    staff = _require_settings_role()
    if request.method == "GET":
        return _render_service(None, {"active": True, "locations": set()}, None, 200)
    values = _posted_service()
    try:
        service = settings_admin.save_service(db.session(), staff, None, values)
    except DomainError as exc:
        db.session.rollback()
        return _render_service(None, values, exc, exc.http_status)
    _audit_setting("service.created", None, f"service {service.slug}", _audit_values(values))
    db.session.commit()
    flash("Service created.")
    return redirect(url_for("staff.settings_service", slug=service.slug), 303)


def _audit_values(values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    out["locations"] = sorted(values.get("locations", ()))
    out.pop("description", None)
    out.pop("what_to_bring", None)
    return out


@bp.route("/settings/services/<slug>", methods=["GET", "POST"])
@login
def settings_service(slug: str) -> ResponseReturnValue:
    staff = _require_settings_role()
    service = db.session.scalars(select(Service).where(Service.slug == slug)).first()
    if service is None or not settings_admin.can_edit_service(staff, service):
        forbidden()
    if request.method == "GET":
        return _render_service(service, _service_values(service), None, 200)
    values = _posted_service()
    try:
        settings_admin.save_service(db.session(), staff, service, values)
    except DomainError as exc:
        db.session.rollback()
        return _render_service(service, values, exc, exc.http_status)
    _audit_setting("service.updated", None, f"service {service.slug}", _audit_values(values))
    db.session.commit()
    flash("Saved.")
    return redirect(url_for("staff.settings_service", slug=service.slug), 303)


def _render_staff_edit(
    user: StaffUser | None, values: Mapping[str, Any], error: DomainError | None, status: int
) -> ResponseReturnValue:
    return (
        render_template(
            "staff/settings_staff.html",
            user=user,
            values=values,
            locations=list(db.session.scalars(select(Location).order_by(Location.name))),
            error=error,
            roles=list(ROLE_LABELS.items()),
            tokens=sorted(user.tokens, key=lambda t: t.created_at, reverse=True) if user else [],
        ),
        status,
    )


def _posted_staff() -> dict[str, Any]:
    return {
        "email": _form("email", 320),
        "name": _form("name", 200),
        "role": _form("role", 16),
        "active": request.form.get("active") == "on",
        "locations": {int(x) for x in request.form.getlist("locations") if x.isdigit()},
        # Never echoed back into the page nor logged.
        "password": request.form.get("password", "")[:1000],
    }


@bp.route("/settings/staff/new", methods=["GET", "POST"])
@login
def settings_staff_new() -> ResponseReturnValue:
    _require_admin()
    if request.method == "GET":
        return _render_staff_edit(
            None, {"active": True, "locations": set(), "role": "front_desk"}, None, 200
        )
    values = _posted_staff()
    try:
        user = settings_admin.save_staff(db.session(), None, values, hasher())
    except DomainError as exc:
        db.session.rollback()
        values.pop("password")
        return _render_staff_edit(None, values, exc, exc.http_status)
    _audit_setting("staff.created", None, f"staff {user.id} ({user.name})", _staff_audit(values))
    db.session.commit()
    flash("Staff user created.")
    return redirect(url_for("staff.settings_staff_edit", staff_id=user.id), 303)


def _staff_audit(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in values.items() if k != "password"}
    out["locations"] = sorted(values.get("locations", ()))
    if values.get("password"):
        out["password_changed"] = True
    return out


@bp.route("/settings/staff/<int:staff_id>", methods=["GET", "POST"])
@login
def settings_staff_edit(staff_id: int) -> ResponseReturnValue:
    me = _require_admin()
    user = db.session.get(StaffUser, staff_id)
    if user is None:
        abort(404)
    if request.method == "GET":
        values = {
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "active": user.active,
            "locations": {x.id for x in user.locations},
        }
        return _render_staff_edit(user, values, None, 200)
    values = _posted_staff()
    try:
        if user.id == me.id and (not values["active"] or values["role"] != StaffRole.ADMIN):
            raise InvalidInput(
                "You cannot remove your own admin access.", {"role": "would lock you out"}
            )
        settings_admin.save_staff(db.session(), user, values, hasher())
    except DomainError as exc:
        db.session.rollback()
        values.pop("password")
        return _render_staff_edit(user, values, exc, exc.http_status)
    _audit_setting("staff.updated", None, f"staff {user.id} ({user.name})", _staff_audit(values))
    db.session.commit()
    flash("Saved.")
    return redirect(url_for("staff.settings_staff_edit", staff_id=user.id), 303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


__all__ = ["AuditEntry", "bp", "init_app"]
