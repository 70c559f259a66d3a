"""Patient pages: book step by step (location, service, day, time, details) and manage by token.

Thin views over the same service functions as the JSON API. Every change is a POST behind a
confirmation page, so a link scanner that GETs every URL changes nothing. Times are always shown
in the location's zone, with its abbreviation.
"""

from __future__ import annotations

import calendar
import datetime as dt
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import phonenumbers
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, ValidationError, validate_csrf
from sqlalchemy import select
from werkzeug.exceptions import BadRequest, HTTPException

from scheduler.extensions import csrf, db, limiter
from scheduler.models import (
    Appointment,
    AppointmentStatus,
    Clinician,
    CourseTemplate,
    Location,
    Service,
    ServiceKind,
)
from scheduler.services import (
    availability,
    booking,
    course_view,
    courses,
    day_of,
    idempotency,
    invites,
    patients,
    staffing,
)
from scheduler.services.availability import Slot
from scheduler.services.clock import NonexistentLocalTime, in_supported_range, local_to_utc
from scheduler.services.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotCleared,
    NotFound,
    SlotUnavailable,
    TooLate,
    TooSoon,
)
from scheduler.services.patients import PatientDetails
from scheduler.web.common import now, settings
from scheduler.web.inputs import (
    CONTROL_CHARACTER,
    RejectedInput,
    day_in_range,
    marks_form_problems,
    query_id,
    refused_characters,
    without_controls,
)
from scheduler.web.security import booking_limit, browse_limit, token_page_limit

bp = Blueprint("patient", __name__)
manage_bp = Blueprint("manage", __name__, url_prefix="/a")
# Token pages send no Referer (so the token cannot leak), which CSRFProtect's strict HTTPS
# referrer check would refuse; their POSTs check the CSRF token themselves (_check_csrf).
csrf.exempt(manage_bp)
limiter.limit(token_page_limit)(manage_bp)

SUBMISSION_SCOPE = "patient-booking-form"


@dataclass
class FormSubmission:
    """A details form that books (one visit, or a course): sent again (the back button, a
    double click), it leads to what the first sending booked instead of booking twice."""

    scope: str
    submission: str  # the form's hidden one-time value
    digest: str  # of what was submitted: the same value with other details books anew
    seen: bool = False

    def first_answer(self) -> ResponseReturnValue | None:
        """The redirect to the first booking of this very submission, if there was one."""
        idempotency.lock(db.session(), self.scope, self.submission)
        first = idempotency.find(db.session(), self.scope, self.submission)
        self.seen = first is not None
        if first is not None and first.request_hash == self.digest:
            db.session.rollback()
            flash("booked", "event")
            return redirect(url_for("manage.show", token=first.response_body), 303)
        return None

    def remember(self, manage_token: str) -> None:
        """Record that this submission booked what `manage_token` opens (before the commit)."""
        if not self.seen:
            idempotency.remember(
                db.session(), self.scope, self.submission, self.digest, 303, manage_token, now()
            )


START_FORMAT = "%Y-%m-%dT%H:%M"  # a local wall time at the location, as carried in URLs and forms
DETAIL_FIELDS = ("name", "phone", "email", "date_of_birth", "note", "escort_name", "escort_phone")
FIELD_LABELS = {
    "name": "full name",
    "phone": "mobile number",
    "email": "e-mail address",
    "date_of_birth": "date of birth",
    "escort_name": "escort's name",
    "escort_phone": "escort's mobile number",
}
# The booking service names the escort's fields by their API path.
ESCORT_FIELDS = {
    "escort": "escort_name",
    "escort.name": "escort_name",
    "escort.phone": "escort_phone",
}
# A field refused for a control character shows again without it (`posted_details`).
CONTROL_HINT = "Had a character we cannot accept (removed here): please check it."
FIELD_HINTS = {
    "phone": "Enter a valid mobile number, like (415) 555-0123.",
    "escort_phone": "Enter a valid mobile number for your escort, like (415) 555-0123.",
    "email": "Enter a valid e-mail address, like name@example.com.",
    "note": "The note can be at most 2000 characters.",
}


# --- formatting: local time for people ----------------------------------------------------------


def clock_time(local: dt.datetime) -> str:
    """9:00 AM"""
    return f"{local.hour % 12 or 12}:{local:%M} {'AM' if local.hour < 12 else 'PM'}"


def when(instant: dt.datetime, tz: ZoneInfo) -> str:
    """Tue 1 Dec, 9:00 AM PST"""
    local = instant.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b}, {clock_time(local)} {local:%Z}"


def long_day(day: dt.date) -> str:
    """Tuesday 1 December 2026"""
    return f"{day:%A} {day.day} {day:%B %Y}"


def display_phone(e164: str) -> str:
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def duration(minutes: int) -> str:
    """40 minutes, 4 hours, 1 hour 30 minutes"""
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if rest or not hours:
        parts.append(f"{rest} minute{'s' if rest != 1 else ''}")
    return " ".join(parts)


def local_start(instant: dt.datetime, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).strftime(START_FORMAT)


def parse_start(raw: str | None, tz: ZoneInfo) -> dt.datetime | None:
    """A local wall time from a URL or form to a UTC instant; None when it is not a real time."""
    try:
        local = dt.datetime.strptime((raw or "").strip(), START_FORMAT)
        if not in_supported_range(local.date()):
            return None
        return local_to_utc(local.date(), local.time(), tz)
    except (ValueError, NonexistentLocalTime):
        return None


def parse_day(raw: str) -> dt.date:
    """A day from the URL: not a date is a 404, a date out of range a 400."""
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        abort(404)
    return day_in_range(day, "day")


def parse_month(raw: str | None) -> dt.date | None:
    try:
        month = dt.datetime.strptime(raw or "", "%Y-%m").date()
    except ValueError:
        return None
    return day_in_range(month, "month")


# --- view models ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarDay:
    day: dt.date
    in_month: bool
    openings: int
    url: str | None
    label: str


@dataclass(frozen=True)
class TimeChoice:
    value: str  # START_FORMAT, local
    label: str  # 9:15 AM
    url: str
    full: str  # Tue 1 Dec, 9:15 AM PST
    leave: str = ""  # 9:55 AM: the end of recovery, when the patient can leave

    @property
    def name(self) -> str:
        """The link's accessible name: the visible words in their order (so that speech input
        finds the link by what it shows), the day before them and the zone last."""
        if not self.leave:
            return self.full
        day_time, _, zone = self.full.rpartition(" ")
        return f"{day_time}, leave by about {self.leave} {zone}"


def leave_time(end: dt.datetime, recovery_minutes: int, tz: ZoneInfo) -> str:
    """When the patient can leave: the visit's end plus recovery (the chair's occupied end)."""
    return clock_time((end + dt.timedelta(minutes=recovery_minutes)).astimezone(tz))


def _today(location: Location) -> dt.date:
    return now().astimezone(ZoneInfo(location.timezone)).date()


def _last_day(location: Location, service: Service) -> dt.date:
    latest = now() + dt.timedelta(days=service.horizon_days)
    return latest.astimezone(ZoneInfo(location.timezone)).date()


def _add_months(first: dt.date, months: int) -> dt.date:
    index = first.year * 12 + first.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def month_calendar(
    location: Location,
    service: Service,
    month: dt.date | None,
    day_url: Callable[[dt.date], str],
    month_url: Callable[[dt.date], str],
    exclude: int | None = None,
    rule: courses.MoveRule | None = None,
    clinician: int | None = None,
) -> dict[str, Any]:
    """One month of days, those with free times linked; defaults to the first month with any.
    With a course session's move `rule`, only the times that keep it count; with a
    `clinician`, only the times that prescriber is free."""
    today, last = _today(location), _last_day(location, service)
    this_month = today.replace(day=1)
    explicit = month is not None
    shown = month or this_month
    shown = min(max(shown, this_month), last.replace(day=1))
    while True:
        month_end = _add_months(shown, 1) - dt.timedelta(days=1)
        first, final = max(shown, today), min(month_end, last)
        if rule is None and clinician is None:
            openings = availability.days_with_openings(
                db.session(),
                location,
                service,
                first,
                (final - first).days + 1,
                now(),
                exclude_appointment_id=exclude,
            )
        else:
            openings = Counter(
                x.start.astimezone(ZoneInfo(location.timezone)).date()
                for x in _slots_keeping(location, service, first, final, exclude, rule, clinician)
            )
        if openings or explicit or shown >= last.replace(day=1):
            break
        shown = _add_months(shown, 1)
    weeks = []
    for week in calendar.Calendar(firstweekday=0).monthdatescalendar(shown.year, shown.month):
        row = []
        for day in week:
            count = openings.get(day, 0) if day.month == shown.month else 0
            if count:
                label = f"{long_day(day)}, {count} time{'s' if count != 1 else ''} available"
            else:
                label = f"{long_day(day)}, no times available"
            row.append(
                CalendarDay(
                    day=day,
                    in_month=day.month == shown.month,
                    openings=count,
                    url=day_url(day) if count else None,
                    label=label,
                )
            )
        weeks.append(row)
    prev_month = _add_months(shown, -1)
    next_month = _add_months(shown, 1)
    return {
        "month_label": f"{shown:%B %Y}",
        "weeks": weeks,
        "weekdays": [
            ("Mon", "Monday"),
            ("Tue", "Tuesday"),
            ("Wed", "Wednesday"),
            ("Thu", "Thursday"),
            ("Fri", "Friday"),
            ("Sat", "Saturday"),
            ("Sun", "Sunday"),
        ],
        "first_day": min(openings) if openings and not explicit else None,
        "prev_url": month_url(prev_month) if prev_month >= this_month else None,
        "next_url": month_url(next_month) if next_month <= last else None,
        "has_openings": bool(openings),
    }


def time_groups(
    slots: Iterable[Slot], tz: ZoneInfo, time_url: Callable[[str], str], recovery_minutes: int = 0
) -> list[tuple[str, list[TimeChoice]]]:
    groups: dict[str, list[TimeChoice]] = {"Morning": [], "Afternoon": [], "Evening": []}
    for slot in slots:
        local = slot.start.astimezone(tz)
        name = "Morning" if local.hour < 12 else "Afternoon" if local.hour < 17 else "Evening"
        value = local.strftime(START_FORMAT)
        groups[name].append(
            TimeChoice(
                value,
                clock_time(local),
                time_url(value),
                when(slot.start, tz),
                leave_time(slot.end, recovery_minutes, tz),
            )
        )
    return [(name, items) for name, items in groups.items() if items]


def choices(slots: Iterable[Slot], tz: ZoneInfo) -> list[TimeChoice]:
    return [
        TimeChoice(
            local_start(x.start, tz), clock_time(x.start.astimezone(tz)), "", when(x.start, tz)
        )
        for x in slots
    ]


def zone_note(location: Location, day: dt.date | None = None) -> str:
    tz = ZoneInfo(location.timezone)
    moment = dt.datetime.combine(day or _today(location), dt.time(12), tzinfo=tz)
    return f"Times are local to {location.name} ({moment:%Z})."


def _is_free(
    location: Location,
    service: Service,
    start: dt.datetime,
    exclude: int | None = None,
    clinician: int | None = None,
) -> bool:
    day = start.astimezone(ZoneInfo(location.timezone)).date()
    slots = availability.location_slots(
        db.session(),
        location,
        service,
        day,
        1,
        now(),
        exclude_appointment_id=exclude,
        clinician=clinician,
    )
    return any(x.start == start for x in slots)


def _slots_keeping(
    location: Location,
    service: Service,
    first: dt.date,
    last: dt.date,
    exclude: int | None,
    rule: courses.MoveRule | None,
    clinician: int | None = None,
) -> list[Slot]:
    """The free starts from `first` to `last` (local days) a visit may take: with a course
    session's move `rule`, the days outside the rule's bounds are not searched and each start
    is put to the rule; with a `clinician`, only the starts that prescriber is free."""
    tz = ZoneInfo(location.timezone)
    first = max(first, _today(location))
    if rule is not None and rule.earliest is not None:
        first = max(first, rule.earliest.astimezone(tz).date())
    if rule is not None and rule.latest is not None:
        last = min(last, rule.latest.astimezone(tz).date())
    if last < first:
        return []
    slots = availability.location_slots(
        db.session(),
        location,
        service,
        first,
        (last - first).days + 1,
        now(),
        exclude_appointment_id=exclude,
        clinician=clinician,
    )
    return [x for x in slots if rule is None or rule.keeps(x.start)]


def _move_alternatives(
    appt: Appointment, wanted: dt.datetime, rule: courses.MoveRule | None
) -> list[TimeChoice]:
    """Free times close to `wanted` for moving `appt`; a course session's only where the
    course's rules hold (the nearest to the wanted time inside them); a consultation with a
    chosen prescriber's only where that prescriber is free."""
    clinician = booking.move_clinician(appt)
    if rule is None:
        return _alternatives(appt.location, appt.service, wanted, appt.id, clinician)
    tz = ZoneInfo(appt.location.timezone)
    target = wanted
    if rule.earliest is not None:
        target = max(target, rule.earliest)
    if rule.latest is not None:
        target = min(target, rule.latest)
    day = target.astimezone(tz).date()
    near = dt.timedelta(days=7)
    slots = [
        x
        for x in _slots_keeping(
            appt.location, appt.service, day - near, day + near, appt.id, rule, clinician
        )
        if x.start not in (wanted, appt.start_at)
    ]
    slots.sort(key=lambda x: (abs(x.start - wanted), x.start))
    return choices(sorted(slots[:6], key=lambda x: x.start), tz)


def _alternatives(
    location: Location,
    service: Service,
    start: dt.datetime,
    exclude: int | None = None,
    clinician: int | None = None,
) -> list[TimeChoice]:
    slots = availability.nearest_slots(
        db.session(),
        location,
        service,
        start,
        now(),
        exclude_appointment_id=exclude,
        clinician=clinician,
    )
    return choices(slots, ZoneInfo(location.timezone))


def _prescribers(location: Location, service: Service) -> list[Clinician]:
    """The prescribers a patient may choose for `service` (the clinicians endpoint's list)."""
    return staffing.prescribers_at(db.session(), location, service, now=now())


def _prescriber_or_404(location: Location, service: Service, raw: str | None) -> Clinician | None:
    """The prescriber chosen with `clinician=` (None: any prescriber); one the patient could
    not have chosen (not in the list, or not a consultation) is a 404."""
    if not raw:
        return None
    wanted = query_id(raw)
    chosen = next((c for c in _prescribers(location, service) if c.id == wanted), None)
    if chosen is None:
        abort(404)
    return chosen


def _prescriber_arg(chosen: Clinician | None) -> dict[str, Any]:
    """The `clinician` query argument that keeps a chosen prescriber through the steps."""
    return {"clinician": chosen.id} if chosen is not None else {}


def _location_or_404(slug: str) -> Location:
    try:
        return booking.get_location(db.session(), slug)
    except NotFound:
        abort(404)


def _service_or_404(location: Location, slug: str) -> Service:
    try:
        return booking.get_service(db.session(), location, slug)
    except NotFound:
        abort(404)


def map_url(address: str) -> str:
    return "https://www.google.com/maps/search/?" + urlencode({"api": "1", "query": address})


def google_calendar_url(appt: Appointment) -> str:
    stamp = "%Y%m%dT%H%M%SZ"
    start, end = appt.start_at.astimezone(dt.UTC), appt.end_at.astimezone(dt.UTC)
    location = appt.location
    details = f"{location.name}. To change or cancel, use the link in your confirmation e-mail."
    if location.phone:
        details += f" Clinic phone: {display_phone(location.phone)}."
    query = {
        "action": "TEMPLATE",
        "text": invites.summary(appt, settings()),
        "dates": f"{start:{stamp}}/{end:{stamp}}",
        "ctz": location.timezone,
        "location": location.address,
        "details": details,
    }
    return "https://calendar.google.com/calendar/render?" + urlencode(query)


# --- booking steps --------------------------------------------------------------------------------


@bp.route("/")
@limiter.limit(browse_limit)
def locations() -> ResponseReturnValue:
    rows = db.session.scalars(
        select(Location).where(Location.active.is_(True)).order_by(Location.name)
    ).all()
    return render_template("patient/locations.html", locations=rows, step=1)


@bp.route("/book/<location>")
@limiter.limit(browse_limit)
def services(location: str) -> ResponseReturnValue:
    loc = _location_or_404(location)
    offered = sorted((x for x in loc.services if x.active), key=lambda x: (x.kind, x.name))
    return render_template(
        "patient/services.html",
        location=loc,
        services=offered,
        course_offers=course_view.offers(db.session(), loc),
        describe=courses.describe,
        step=2,
    )


def _course_or_404(location: Location, service: Service) -> CourseTemplate | None:
    """The course chosen with `?course=` (None: a single visit); unknown is a 404."""
    slug = request.args.get("course")
    if slug is None:
        return None
    try:
        return course_view.offered(db.session(), location, service.id, slug[:64])
    except NotFound:
        abort(404)


def _course_arg(course: CourseTemplate | None) -> dict[str, Any]:
    """The `course` query argument that keeps a course's booking steps together."""
    return {"course": course.slug} if course is not None else {}


def course_plan_url(
    location: Location, service: Service, course: CourseTemplate, value: str
) -> str:
    return url_for(
        "patient.course_plan",
        location=location.slug,
        service=service.slug,
        course=course.slug,
        start=value,
    )


@bp.route("/book/<location>/<service>")
@limiter.limit(browse_limit)
def days(location: str, service: str) -> ResponseReturnValue:
    loc = _location_or_404(location)
    svc = _service_or_404(loc, service)
    course = _course_or_404(loc, svc)
    chosen = _prescriber_or_404(loc, svc, request.args.get("clinician"))
    clinician = chosen.id if chosen is not None else None
    extra = {**_course_arg(course), **_prescriber_arg(chosen)}
    cal = month_calendar(
        loc,
        svc,
        parse_month(request.args.get("month")),
        lambda d: url_for(
            "patient.times", location=loc.slug, service=svc.slug, day=d.isoformat(), **extra
        ),
        lambda m: url_for(
            "patient.days", location=loc.slug, service=svc.slug, month=f"{m:%Y-%m}", **extra
        ),
        clinician=clinician,
    )
    first_free = None
    if cal["first_day"] is not None:  # the month it opened on by itself: its first free time
        slots = availability.location_slots(
            db.session(), loc, svc, cal["first_day"], 1, now(), clinician=clinician
        )
        if slots:
            tz = ZoneInfo(loc.timezone)
            value = local_start(slots[0].start, tz)
            first_free = TimeChoice(
                value,
                clock_time(slots[0].start.astimezone(tz)),
                course_plan_url(loc, svc, course, value)
                if course is not None
                else url_for(
                    "patient.details", location=loc.slug, service=svc.slug, start=value, **extra
                ),
                when(slots[0].start, tz),
                leave_time(slots[0].end, svc.recovery_minutes, tz),
            )
    return render_template(
        "patient/days.html",
        location=loc,
        service=svc,
        course=course,
        cal=cal,
        first_free=first_free,
        # A consultation's prescriber is chosen here ("any" by default); not for a course.
        prescribers=_prescribers(loc, svc) if course is None else [],
        chosen=chosen,
        step=3,
    )


@bp.route("/book/<location>/<service>/<day>")
@limiter.limit(browse_limit)
def times(location: str, service: str, day: str) -> ResponseReturnValue:
    loc = _location_or_404(location)
    svc = _service_or_404(loc, service)
    course = _course_or_404(loc, svc)
    chosen = _prescriber_or_404(loc, svc, request.args.get("clinician"))
    date = parse_day(day)
    tz = ZoneInfo(loc.timezone)
    slots = availability.location_slots(
        db.session(), loc, svc, date, 1, now(), clinician=chosen.id if chosen else None
    )
    groups = time_groups(
        slots,
        tz,
        (lambda value: course_plan_url(loc, svc, course, value))
        if course is not None
        else (
            lambda value: url_for(
                "patient.details",
                location=loc.slug,
                service=svc.slug,
                start=value,
                **_prescriber_arg(chosen),
            )
        ),
        svc.recovery_minutes,
    )
    return render_template(
        "patient/times.html",
        location=loc,
        service=svc,
        day=date,
        day_label=long_day(date),
        groups=groups,
        zone_note=zone_note(loc, date),
        course=course,
        chosen=chosen,
        back_url=url_for(
            "patient.days",
            location=loc.slug,
            service=svc.slug,
            month=f"{date:%Y-%m}",
            **_course_arg(course),
            **_prescriber_arg(chosen),
        ),
        step=4,
    )


@bp.route("/book/<location>/<service>/details", methods=["GET", "POST"])
@marks_form_problems
@limiter.limit(browse_limit, methods=["GET"])
@limiter.limit(booking_limit, methods=["POST"])
def details(location: str, service: str) -> ResponseReturnValue:
    loc = _location_or_404(location)
    svc = _service_or_404(loc, service)
    tz = ZoneInfo(loc.timezone)
    if request.method == "GET":
        chosen = _prescriber_or_404(loc, svc, request.args.get("clinician"))
        start = parse_start(request.args.get("start"), tz)
        if start is None:
            return _bad_request(
                "That is not a time we offer. Please choose a time from the list.",
                url_for(
                    "patient.days", location=loc.slug, service=svc.slug, **_prescriber_arg(chosen)
                ),
            )
        return _details_page(
            loc, svc, start, start, {}, {}, "", 200, secrets.token_urlsafe(18), chosen=chosen
        )
    chosen = _prescriber_or_404(loc, svc, without_controls(request.form.get("clinician", "")))
    form = posted_details()
    # One key per rendered form: a double click or a resent POST finds the first booking.
    submission = without_controls(request.form.get("submission", ""))[:64]
    submission = submission or secrets.token_urlsafe(18)
    start = parse_start(request.form.get("start"), tz)
    wanted = parse_start(request.form.get("wanted"), tz) or start
    if (refused := refused_characters()) is not None:
        # Before the submission is looked up: nothing is booked, the form shows again.
        return _details_page(
            loc,
            svc,
            start,
            wanted,
            form,
            _field_errors(refused),
            refused.message,
            refused.http_status,
            submission,
            chosen=chosen,
        )
    if start is None:
        return _details_page(
            loc,
            svc,
            None,
            wanted,
            form,
            {"start": "Choose one of the times."},
            "Choose a time.",
            422,
            submission,
            chosen=chosen,
        )
    digest = idempotency.request_hash(
        {"start": start.isoformat(), **form, "at": loc.slug, **_prescriber_arg(chosen)}
    )
    form_sent = FormSubmission(SUBMISSION_SCOPE, submission, digest)
    again = form_sent.first_answer()
    if again is not None:
        return again
    try:
        appt = booking.book(
            db.session(),
            booking.BookingRequest(
                location=loc.slug,
                service=svc.slug,
                start=start,
                patient=_patient_details(form),
                note=form["note"],
                escort=day_of.Escort(form["escort_name"], form["escort_phone"]),
                require_escort=True,
                clinician=chosen.id if chosen is not None else None,
            ),
            now=now(),
            settings=settings(),
        )
        form_sent.remember(appt.manage_token)
        db.session.commit()
    except SlotUnavailable as exc:
        db.session.rollback()
        return _details_page(
            loc, svc, None, start, form, {}, exc.message, 409, submission, chosen=chosen
        )
    except NotCleared:
        db.session.rollback()
        return _consultation_first(loc, svc)
    except (InvalidInput, Conflict, TooSoon) as exc:
        db.session.rollback()
        errors = _field_errors(exc)
        # A problem with the time itself (passed, overlapping another visit) offers others.
        at = None if "start" in errors else start
        return _details_page(
            loc, svc, at, start, form, errors, exc.message, 422, submission, chosen=chosen
        )
    except NotFound:
        db.session.rollback()
        abort(404)
    flash("booked", "event")
    return redirect(url_for("manage.show", token=appt.manage_token), 303)


BIRTH_DATE_HINT = "enter your date of birth, like 1980-04-02"


def posted_details(fields: Iterable[str] = DETAIL_FIELDS) -> dict[str, str]:
    """The details form as posted (a single visit's, a course's, the waitlist's), without the
    characters `refused_characters` names: what the form shows again."""
    form = {name: without_controls(request.form.get(name, "")) for name in fields}
    form["sms_consent"] = "1" if request.form.get("sms_consent") else ""
    return form


# The fields of the pages that show one problem line, some of them hidden in the form.
SUMMARY_LABELS = {
    **FIELD_LABELS,
    "start": "chosen time",
    "wanted": "chosen time",
    "csrf_token": "form",
    "code": "code",
    "patient": "who you are",
}


def refused_summary(refused: DomainError, labels: Mapping[str, str] = SUMMARY_LABELS) -> str:
    """The fields `refused_characters` names, in the patient's words, for a page that shows
    one problem line rather than an error by each box (the manage pages, "my visits")."""
    names = dict.fromkeys(labels.get(name, name.replace("_", " ")) for name in refused.fields)
    return " ".join(f"{name[:1].upper()}{name[1:]}: {CONTROL_HINT}" for name in names)


def form_birth_date(raw: str) -> dt.date | None:
    """A form's birth date as `patients.parse_birth_date` reads it; None when empty or not a
    date (the form then says BIRTH_DATE_HINT)."""
    try:
        return patients.parse_birth_date(raw) if raw.strip() else None
    except InvalidInput:
        return None


def _patient_details(form: dict[str, str]) -> PatientDetails:
    """The form's details; the patient pages always ask for the birth date."""
    raw = form["date_of_birth"].strip()
    dob = form_birth_date(raw)
    if dob is None:
        problem = "required" if not raw else BIRTH_DATE_HINT
        # Name every field that needs correcting at once, the birth date among them.
        fields = {"date_of_birth": problem}
        try:
            patients.validate_details(
                PatientDetails(form["name"], form["phone"], form["email"]),
            )
        except InvalidInput as exc:
            fields = {**exc.fields, **fields}
        raise InvalidInput("Some details need correcting.", fields)
    return PatientDetails(
        form["name"], form["phone"], form["email"], bool(form["sms_consent"]), dob
    )


def _consultation_first(location: Location, service: Service) -> ResponseReturnValue:
    """Not an error: an infusion needs a prescriber's clearance, so a consultation comes first."""
    consultation = patients.consultation_for(db.session(), location)
    return render_template(
        "patient/consultation_first.html",
        location=location,
        service=service,
        consultation=consultation,
        step=5,
    )


def _details_page(
    location: Location,
    service: Service,
    start: dt.datetime | None,
    wanted: dt.datetime | None,
    form: dict[str, str],
    errors: dict[str, str],
    problem: str,
    status: int,
    submission: str,
    *,
    chosen: Clinician | None = None,
) -> ResponseReturnValue:
    """The details form, for the chosen time; or with the free times nearest the wanted one
    (with the chosen prescriber, if any)."""
    tz = ZoneInfo(location.timezone)
    clinician = chosen.id if chosen is not None else None
    if start is not None and not _is_free(location, service, start, clinician=clinician):
        start, problem = None, problem or "Sorry, that time is no longer available."
        status = 409 if status == 200 else status
    alternatives = (
        _alternatives(location, service, wanted, clinician=clinician)
        if start is None and wanted
        else []
    )
    if start is None and "start" not in errors and not problem:
        problem = "Choose a time."
    return (
        render_template(
            "patient/details.html",
            location=location,
            service=service,
            start_value=local_start(start, tz) if start else "",
            start_label=when(start, tz) if start else "",
            wanted_value=local_start(wanted, tz) if wanted else "",
            wanted_label=when(wanted, tz) if wanted else "",
            form={name: form.get(name, "") for name in (*DETAIL_FIELDS, "sms_consent")},
            errors=errors,
            start_error=errors.get("start", ""),
            problem=problem,
            alternatives=alternatives,
            submission=submission,
            chosen=chosen,
            times_url=url_for(
                "patient.times",
                location=location.slug,
                service=service.slug,
                day=(wanted or now()).astimezone(tz).date().isoformat(),
                **_prescriber_arg(chosen),
            ),
            late=start is not None and booking.inside_change_window(service, start, now()),
            phone=display_phone(location.phone) if location.phone else "",
            phone_uri=f"tel:{location.phone}" if location.phone else "",
            step=5,
        ),
        status,
    )


def _field_errors(exc: DomainError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for raw, detail in exc.fields.items():
        name = ESCORT_FIELDS.get(raw, raw)
        if name in errors:
            continue
        if raw == "escort":
            detail = "required"
        if name not in (*DETAIL_FIELDS, "start"):
            continue
        if detail == CONTROL_CHARACTER:
            errors[name] = CONTROL_HINT
        elif detail == "required" and name in FIELD_LABELS:
            errors[name] = f"Enter your {FIELD_LABELS[name]}."
        elif name in FIELD_HINTS:
            errors[name] = FIELD_HINTS[name]
        else:
            errors[name] = detail[:1].upper() + detail[1:] + ("" if detail.endswith(".") else ".")
    return errors


# --- the appointment's own page (/a/<token>) ------------------------------------------------------


def _appointment(token: str) -> Appointment:
    try:
        return booking.get_by_token(db.session(), token)
    except NotFound:
        abort(404)


def _changeable(appt: Appointment) -> tuple[bool, bool]:
    """(can change online, too late to change online) for a booked appointment."""
    if appt.status != AppointmentStatus.BOOKED or appt.start_at <= now():
        return False, False
    too_late = booking.inside_change_window(appt.service, appt.start_at, now())
    return not too_late, too_late


def _appointment_context(appt: Appointment) -> dict[str, Any]:
    tz = ZoneInfo(appt.location.timezone)
    can_change, too_late = _changeable(appt)
    course = courses.course_of(appt)
    return {
        "course": course,
        "course_label": f"Session {appt.course_session} of {course.sessions}"
        if course is not None
        else "",
        "course_url": url_for("manage.show", token=course.manage_token) if course else "",
        "course_rules": courses.describe(course.template) if course else "",
        "held": bool(course is not None and appt.awaiting_review and appt.active),
        "appt": appt,
        "location": appt.location,
        "service": appt.service,
        "start_label": when(appt.start_at, tz),
        # When the patient can leave: recovery included (the chair's occupied end).
        "leave_label": f"{clock_time(appt.occupied_end.astimezone(tz))} "
        f"{appt.occupied_end.astimezone(tz):%Z}",
        "day_label": long_day(appt.start_at.astimezone(tz).date()),
        "can_change": can_change,
        "too_late": too_late,
        "late_hours": appt.service.late_cancel_hours,
        "phone": display_phone(appt.location.phone) if appt.location.phone else "",
        "phone_uri": f"tel:{appt.location.phone}" if appt.location.phone else "",
        "map_url": map_url(appt.location.address) if appt.location.address else "",
        "gcal_url": google_calendar_url(appt),
        "ics_url": url_for("manage.invite", token=appt.manage_token),
        "manage_url": settings().manage_url(appt.manage_token),
        "token": appt.manage_token,
        "cancelled": appt.status == AppointmentStatus.CANCELLED,
        "infusion": appt.service.kind == ServiceKind.INFUSION,
        # A consultation's prescriber; a chosen one is kept when the visit moves.
        "prescriber": appt.clinician if appt.service.kind == ServiceKind.CONSULTATION else None,
        "prescriber_kept": booking.move_clinician(appt) is not None,
        "instructions": day_of.Instructions.of(appt.service).lines(),
    }


@manage_bp.before_request
def _check_csrf() -> None:
    if request.method != "POST" or not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as exc:
        raise CSRFError(exc.args[0]) from exc


@manage_bp.route("/<token>")
def show(token: str) -> ResponseReturnValue:
    course = courses.find_by_token(db.session(), token)
    if course is not None:
        return patient_courses.course_page(course)
    appt = _appointment(token)
    events = get_flashed_messages(category_filter=["event"])
    return render_template(
        "patient/manage.html", event=events[-1] if events else "", **_appointment_context(appt)
    )


@manage_bp.route("/<token>/invite.ics")
def invite(token: str) -> ResponseReturnValue:
    appt = _appointment(token)
    return Response(
        invites.current_invite(appt, settings(), now()),
        mimetype="text/calendar",
        headers={"Content-Disposition": 'attachment; filename="appointment.ics"'},
    )


@manage_bp.route("/<token>/cancel", methods=["GET", "POST"])
@marks_form_problems
def cancel(token: str) -> ResponseReturnValue:
    appt = _appointment(token)
    if appt.status == AppointmentStatus.CANCELLED:
        return redirect(url_for("manage.show", token=token), 303)
    problem = ""
    status = 200
    if (refused := refused_characters()) is not None:
        problem, status = refused_summary(refused), refused.http_status
    elif request.method == "POST":
        try:
            booking.cancel(db.session(), appt, now=now(), settings=settings())
            db.session.commit()
            flash("cancelled", "event")
            return redirect(url_for("manage.show", token=token), 303)
        except (TooLate, Conflict) as exc:
            db.session.rollback()
            problem, status = exc.message, 409
            appt = _appointment(token)
    return render_template(
        "patient/cancel.html", problem=problem, **_appointment_context(appt)
    ), status


def _reschedule_guard(appt: Appointment) -> ResponseReturnValue | None:
    can_change, _ = _changeable(appt)
    if not can_change:
        return redirect(url_for("manage.show", token=appt.manage_token), 303)
    return None


@manage_bp.route("/<token>/reschedule")
def reschedule_days(token: str) -> ResponseReturnValue:
    appt = _appointment(token)
    if (guard := _reschedule_guard(appt)) is not None:
        return guard
    cal = month_calendar(
        appt.location,
        appt.service,
        parse_month(request.args.get("month")),
        lambda d: url_for("manage.reschedule_times", token=token, day=d.isoformat()),
        lambda m: url_for("manage.reschedule_days", token=token, month=f"{m:%Y-%m}"),
        exclude=appt.id,
        rule=courses.move_rule(db.session(), appt),
        clinician=booking.move_clinician(appt),
    )
    return render_template("patient/reschedule_days.html", cal=cal, **_appointment_context(appt))


@manage_bp.route("/<token>/reschedule/<day>")
def reschedule_times(token: str, day: str) -> ResponseReturnValue:
    appt = _appointment(token)
    if (guard := _reschedule_guard(appt)) is not None:
        return guard
    date = parse_day(day)
    tz = ZoneInfo(appt.location.timezone)
    slots = availability.location_slots(
        db.session(),
        appt.location,
        appt.service,
        date,
        1,
        now(),
        exclude_appointment_id=appt.id,
        clinician=booking.move_clinician(appt),
    )
    rule = courses.move_rule(db.session(), appt)
    slots = [x for x in slots if x.start != appt.start_at and (rule is None or rule.keeps(x.start))]
    groups = time_groups(
        slots,
        tz,
        lambda value: url_for("manage.reschedule_confirm", token=token, start=value),
        appt.service.recovery_minutes,
    )
    return render_template(
        "patient/reschedule_times.html",
        new_day_label=long_day(date),
        groups=groups,
        zone_note=zone_note(appt.location, date),
        back_url=url_for("manage.reschedule_days", token=token, month=f"{date:%Y-%m}"),
        **_appointment_context(appt),
    )


@manage_bp.route("/<token>/reschedule/confirm", methods=["GET", "POST"])
@marks_form_problems
def reschedule_confirm(token: str) -> ResponseReturnValue:
    appt = _appointment(token)
    if (guard := _reschedule_guard(appt)) is not None:
        return guard
    tz = ZoneInfo(appt.location.timezone)
    source = request.form if request.method == "POST" else request.args
    start = parse_start(without_controls(source.get("start", "")), tz)
    wanted = parse_start(without_controls(request.form.get("wanted", "")), tz) or start
    problem, start_error, status = "", "", 200
    refused = refused_characters()
    if refused is not None and start is not None:
        # Nothing moves: the chosen time shows again, the field named.
        problem, status = refused_summary(refused), refused.http_status
    elif start is None:
        if request.method == "GET" or wanted is None:
            return _bad_request(
                "That is not a time we offer. Please choose a time from the list.",
                url_for("manage.reschedule_days", token=token),
            )
        problem, start_error, status = "Choose a time.", "Choose one of the times.", 422
    elif request.method == "POST":
        try:
            # A course's session moves within the course's rules (too_soon, too_far).
            courses.move_session(db.session(), appt, start, now=now(), settings=settings())
            db.session.commit()
            flash("rescheduled", "event")
            return redirect(url_for("manage.show", token=token), 303)
        except DomainError as exc:
            # TooSoon and NotCleared: the patient's spacing and clearance rules hold on a move.
            db.session.rollback()
            appt = _appointment(token)
            problem, status = exc.message, 422 if isinstance(exc, InvalidInput) else 409
            start = None
    rule = courses.move_rule(db.session(), appt)
    if start is not None and rule is not None:
        try:
            rule.check(start)  # a course session: shown the rule before the patient confirms
        except DomainError as exc:
            problem, start = exc.message, None
    if start is not None and not _is_free(
        appt.location, appt.service, start, appt.id, booking.move_clinician(appt)
    ):
        problem, start = "Sorry, that time is no longer available.", None
    alternatives: list[TimeChoice] = []
    if start is None and wanted is not None:
        current = local_start(appt.start_at, tz)
        alternatives = [x for x in _move_alternatives(appt, wanted, rule) if x.value != current]
    return render_template(
        "patient/reschedule_confirm.html",
        new_value=local_start(start, tz) if start else "",
        new_label=when(start, tz) if start else "",
        wanted_value=local_start(wanted, tz) if wanted else "",
        problem=problem,
        start_error=start_error,
        alternatives=alternatives,
        back_url=url_for("manage.reschedule_days", token=token),
        **_appointment_context(appt),
    ), status


@manage_bp.route("/<path:anything>", methods=["GET", "POST"])
@marks_form_problems  # not found, whatever was posted
def unknown(anything: str) -> ResponseReturnValue:
    abort(404)


# --- errors as pages --------------------------------------------------------------------------------


def _bad_request(message: str, back_url: str) -> ResponseReturnValue:
    return render_template(
        "patient/error.html", title="Please choose again", message=message, back_url=back_url
    ), 400


@bp.errorhandler(HTTPException)
@manage_bp.errorhandler(HTTPException)
def _error_page(exc: HTTPException) -> ResponseReturnValue:
    code = exc.code or 500
    if code == 404:
        return render_template("patient/not_found.html"), 404
    if code == 429:
        return render_template(
            "patient/error.html",
            title="Too many requests",
            message="You have made a lot of requests in a short time. "
            "Please wait a minute and try again.",
            back_url=url_for("patient.locations"),
        ), 429
    if isinstance(exc, CSRFError):
        return render_template(
            "patient/error.html",
            title="Please try again",
            message="This form has expired or was sent from another page. "
            "Go back, reload the page and submit it again.",
            back_url=url_for("patient.locations"),
        ), 400
    if isinstance(exc, RejectedInput):
        return render_template(
            "patient/error.html",
            title="Something was not right",
            message=f"{exc.description} Please go back and try again.",
            back_url=url_for("patient.locations"),
        ), code
    if isinstance(exc, BadRequest):
        return render_template(
            "patient/error.html",
            title="Something was not right",
            message="We could not read that request. Please go back and try again.",
            back_url=url_for("patient.locations"),
        ), 400
    if code == 413:
        return render_template(
            "patient/error.html",
            title="Too much to read",
            message="That request was too large. Please go back and try again.",
            back_url=url_for("patient.locations"),
        ), 413
    return exc


def init_app(app: Flask) -> None:
    app.add_template_filter(display_phone, "display_phone")
    app.add_template_filter(duration, "duration")
    app.register_blueprint(bp)
    app.register_blueprint(manage_bp)


# The course pages live in their own module on these blueprints.
from scheduler.web import patient_courses as patient_courses  # noqa: E402
