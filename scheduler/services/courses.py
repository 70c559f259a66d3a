"""Treatment courses: templates, the planner (pure), booking a whole course, and its lifecycle.

Interface (stable; the patient and staff pages code against it; add, do not rename):

    CourseTemplate, Course, CourseStatus, ReviewState   models (scheduler.models.courses)
    Appointment.course_id / course_session (1-based) / awaiting_review
    TemplateRules (.of(template), .on_pattern(day))      a template's rules as plain values
    PlannedSession(start, end, moved)          one session of a plan (moved: why, else None)
    Plan(template, location, sessions)         a proposal the patient confirms
    CourseRequest                              booking.BookingRequest's fields, with `starts`
    CancelResult(cancelled, kept_late)         what cancel_rest did
    NoPlan (409 no_plan), TooFar (409 too_far), OffPattern (409 off_pattern); a move closer
    than the minimum gap is errors.TooSoon (409 too_soon)

    list_templates(session, location) -> list[CourseTemplate]       active, offered there
    all_templates(session) -> list[CourseTemplate]                  the settings page
    get_template(session, location, slug) -> CourseTemplate         NotFound names `course`
    save_template(session, template | None, fields) -> CourseTemplate   InvalidInput per field
    describe(template) -> str                "6 sessions, 44 hours to 7 days apart, ..."
    plan_sessions(rules, first_start, *, tz, free_starts, closed_days) -> list[PlannedSession]
    check_starts(rules, starts, *, tz) -> None                      InvalidInput naming starts
    plan(session, location_slug, course_slug, first_start, *, now, settings) -> Plan
    book_course(session, request, *, now, settings) -> Course       all or nothing
    get_by_token(session, token) -> Course; find_by_token(...) -> Course | None
    get_course(session, course_id) -> Course
    sessions(course) -> list[Appointment]                           by session number
    held_sessions(course) -> list[Appointment]; next_held_start(course) -> datetime | None
    next_held_starts(session, course_ids) -> {course id: datetime}  one statement
    progress(course) -> (done, total); progress_label(course) -> "3 of 6"
    status_of(course) -> str                                        "completed" once all held
    course_of(appointment) -> Course | None
    check_move(session, appointment, new_start) -> None             (booking.reschedule calls it)
    move_session(session, appointment, new_start, *, now, settings, by_staff=False,
                 resource_id=None) -> Appointment
    cancel_rest(session, course, *, now, settings, by_staff=False) -> CancelResult
    review(session, course, decision, *, now, settings, staff=None) -> Course
    reviews_due(session, location_ids, now) -> list[Course]         open, <= 48 h to next held
    patient_courses(session, patient_id) -> list[Course]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, object_session, selectinload

from scheduler.models import (
    Appointment,
    AppointmentStatus,
    Course,
    CourseStatus,
    CourseTemplate,
    Location,
    Reminder,
    ReminderKind,
    ReminderStatus,
    ReviewState,
    Service,
    StaffRole,
    StaffUser,
    WeekdayPattern,
    service_locations,
)
from scheduler.services import availability, booking, mail, reminders
from scheduler.services.clock import NonexistentLocalTime, is_ambiguous, local_to_utc
from scheduler.services.day_of import Escort
from scheduler.services.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    SlotUnavailable,
    TooSoon,
)
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings

UTC = dt.UTC
# A review still open this long before the next held session is flagged to staff.
REVIEW_DUE_BEFORE = dt.timedelta(hours=48)
# The planner gives up (no_plan) after trying this many placements: a plan is found in a few
# dozen when one exists; a hopeless one should not take the request's time.
PLAN_BUDGET = 5000
MAX_SESSIONS = 30
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WORKDAYS = frozenset(range(5))
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")

Decision = Literal["continue", "stop"]
# Who records the review decision: whether a course goes on after the response review is a
# prescriber's call (clinics review response after the 2nd or 3rd infusion and stop when there is
# none); managers and admins record it on the prescriber's word. Nurses and the front desk read.
REVIEWERS = frozenset({StaffRole.ADMIN, StaffRole.MANAGER, StaffRole.PRESCRIBER})


def may_review(staff: StaffUser) -> bool:
    """Whether `staff` may record a course's review decision (the API and the pages ask this)."""
    return staff.role in REVIEWERS


class NoPlan(DomainError):
    """No placement of the course's sessions keeps its rules from that first start."""

    code = "no_plan"
    http_status = 409


class TooFar(Conflict):
    """A session would be past the maximum gap after the one before, or outside the window.
    (A Conflict, so every page that shows a refused move shows this one too.)"""

    code = "too_far"


class OffPattern(Conflict):
    """A session would fall on a weekday the course's pattern does not use."""

    code = "off_pattern"


def parse_weekdays(text: str | None) -> tuple[frozenset[int] | None, bool]:
    """(allowed weekdays or None for any, consecutive weekdays?) from a template's `weekdays`.

    Raises ValueError for an unknown day name."""
    value = (text or "").strip().lower()
    if not value:
        return None, False
    if value == WeekdayPattern.CONSECUTIVE_WEEKDAYS:
        return WORKDAYS, True
    days = set()
    for part in value.split(","):
        name = part.strip()[:3]
        if name not in WEEKDAYS:
            raise ValueError(f"unknown weekday {part.strip()!r}")
        days.add(WEEKDAYS.index(name))
    return frozenset(days), False


@dataclass(frozen=True)
class TemplateRules:
    """A template's spacing rules as plain values (what the pure planner needs)."""

    sessions: int
    min_gap: dt.timedelta
    max_gap: dt.timedelta
    within_days: int
    weekdays: frozenset[int] | None = None  # 0 = Monday; None: any day
    consecutive_weekdays: bool = False
    duration: dt.timedelta = dt.timedelta(minutes=40)  # of one session (start to end)

    @classmethod
    def of(cls, template: CourseTemplate) -> TemplateRules:
        """The rules of `template` (its service gives the session length)."""
        days, consecutive = parse_weekdays(template.weekdays)
        return cls(
            sessions=template.sessions,
            min_gap=dt.timedelta(hours=template.min_gap_hours),
            max_gap=dt.timedelta(hours=template.max_gap_hours),
            within_days=template.within_days,
            weekdays=days,
            consecutive_weekdays=consecutive,
            duration=dt.timedelta(minutes=template.service.duration_minutes),
        )

    def on_pattern(self, day: dt.date) -> bool:
        return self.weekdays is None or day.weekday() in self.weekdays


@dataclass(frozen=True)
class PlannedSession:
    start: dt.datetime  # aware, UTC
    end: dt.datetime
    # Why this session is not at the first one's local time on the expected day (None: it is).
    moved: str | None = None


@dataclass(frozen=True)
class Plan:
    template: CourseTemplate
    location: Location
    sessions: list[PlannedSession]


@dataclass(frozen=True)
class CourseRequest:
    """A whole course to book; mirrors booking.BookingRequest with one start per session."""

    location: str  # slug
    course: str  # template slug
    starts: Sequence[dt.datetime]  # aware, one per session, in order
    patient: PatientDetails
    note: str = ""
    source: str = "online"  # online | staff
    allow_short_notice: bool = False
    require_email: bool = True
    override_clearance: bool = False
    escort: Escort | None = None
    require_escort: bool = False


@dataclass(frozen=True)
class CancelResult:
    cancelled: list[Appointment] = field(default_factory=list)
    # Future sessions inside the late-cancel window: kept (the patient calls the clinic).
    kept_late: list[Appointment] = field(default_factory=list)


def _day(day: dt.date) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def _when(instant: dt.datetime, tz: ZoneInfo) -> str:
    local = instant.astimezone(tz)
    return f"{_day(local.date())} at {local:%H:%M}"


def _hours(delta: dt.timedelta) -> str:
    hours = delta / dt.timedelta(hours=1)
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    return f"{hours:g} hours"


# --- templates ------------------------------------------------------------------------------------


def _offered(location: Location) -> Select[CourseTemplate]:
    return (
        select(CourseTemplate)
        .join(Service, Service.id == CourseTemplate.service_id)
        .join(service_locations, service_locations.c.service_id == Service.id)
        .where(
            service_locations.c.location_id == location.id,
            CourseTemplate.active.is_(True),
            Service.active.is_(True),
        )
    )


def list_templates(session: Session, location: Location) -> list[CourseTemplate]:
    """The active templates whose service is offered (and active) at `location`, by name."""
    return list(session.scalars(_offered(location).order_by(CourseTemplate.name)))


def all_templates(session: Session) -> list[CourseTemplate]:
    """Every template, active or not, by name (the settings page)."""
    return list(session.scalars(select(CourseTemplate).order_by(CourseTemplate.name)))


def get_template(session: Session, location: Location, slug: str) -> CourseTemplate:
    """The active template `slug` offered at `location`; NotFound naming `course`."""
    template = session.scalars(_offered(location).where(CourseTemplate.slug == slug)).first()
    if template is None:
        raise NotFound("This course is not offered at this location.", {"course": "unknown course"})
    return template


def describe(template: CourseTemplate) -> str:
    """'6 sessions, 44 hours to 7 days apart, within 21 days; review after session 2'."""
    text = (
        f"{template.sessions} sessions, "
        f"{_hours(dt.timedelta(hours=template.min_gap_hours))} to "
        f"{_hours(dt.timedelta(hours=template.max_gap_hours))} apart, "
        f"within {template.within_days} days"
    )
    days, consecutive = parse_weekdays(template.weekdays)
    if consecutive:
        text += ", on consecutive weekdays"
    elif days is not None:
        text += ", on " + "/".join(WEEKDAYS[d].capitalize() for d in sorted(days))
    if template.review_after is not None and template.review_after < template.sessions:
        text += f"; review after session {template.review_after}"
    return text


def _int_field(
    errors: dict[str, str], fields: Mapping[str, Any], name: str, low: int, high: int
) -> int | None:
    raw = fields.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        errors[name] = "required"
        return None
    if isinstance(raw, bool):
        errors[name] = "must be a whole number"
        return None
    try:
        value = int(str(raw).strip()) if not isinstance(raw, int) else raw
    except ValueError:
        errors[name] = "must be a whole number"
        return None
    if not low <= value <= high:
        errors[name] = f"must be between {low} and {high}"
        return None
    return value


def save_template(
    session: Session, template: CourseTemplate | None, fields: Mapping[str, Any]
) -> CourseTemplate:
    """Create (template None) or update a template from form/API fields.

    Fields: slug, name, service (slug or id), sessions, min_gap_hours, max_gap_hours,
    within_days, weekdays (None | "mon,wed,fri" | "consecutive_weekdays"), review_after, active.
    On update a missing field keeps its value. InvalidInput names each bad field.
    """
    current: dict[str, Any] = {}
    if template is not None:
        current = {
            "slug": template.slug,
            "name": template.name,
            "service": template.service_id,
            "sessions": template.sessions,
            "min_gap_hours": template.min_gap_hours,
            "max_gap_hours": template.max_gap_hours,
            "within_days": template.within_days,
            "weekdays": template.weekdays,
            "review_after": template.review_after,
            "active": template.active,
        }
    values = {**current, **dict(fields)}
    errors: dict[str, str] = {}
    slug = str(values.get("slug") or "").strip().lower()
    if not _SLUG.match(slug):
        errors["slug"] = "lower-case letters, digits and dashes (at most 64)"
    else:
        taken = session.scalars(
            select(CourseTemplate.id).where(CourseTemplate.slug == slug)
        ).first()
        if taken is not None and (template is None or taken != template.id):
            errors["slug"] = "already used by another course"
    name = " ".join(str(values.get("name") or "").split())
    if not name or len(name) > 200:
        errors["name"] = "required (at most 200 characters)"
    service_value = values.get("service")
    service = None
    if isinstance(service_value, int) and not isinstance(service_value, bool):
        service = session.get(Service, service_value)
    elif isinstance(service_value, str) and service_value.strip():
        service = session.scalars(
            select(Service).where(Service.slug == service_value.strip())
        ).first()
    if service is None:
        errors["service"] = "unknown service"
    sessions = _int_field(errors, values, "sessions", 1, MAX_SESSIONS)
    min_gap = _int_field(errors, values, "min_gap_hours", 0, 24 * 60)
    max_gap = _int_field(errors, values, "max_gap_hours", 1, 24 * 90)
    within = _int_field(errors, values, "within_days", 1, 365)
    if min_gap is not None and max_gap is not None and max_gap < min_gap:
        errors["max_gap_hours"] = "must be at least the minimum gap"
    if (
        sessions is not None
        and min_gap is not None
        and within is not None
        and (sessions - 1) * min_gap >= within * 24
    ):
        errors["within_days"] = f"too short for {sessions} sessions {min_gap} hours apart"
    weekdays_raw = values.get("weekdays")
    weekdays: str | None = None
    try:
        days, consecutive = parse_weekdays(str(weekdays_raw) if weekdays_raw else None)
        if consecutive:
            weekdays = WeekdayPattern.CONSECUTIVE_WEEKDAYS.value
        elif days is not None:
            weekdays = ",".join(WEEKDAYS[d] for d in sorted(days))
    except ValueError:
        errors["weekdays"] = "days as mon,tue,... or consecutive_weekdays"
    review_raw = values.get("review_after")
    review_after: int | None = None
    if review_raw is not None and not (isinstance(review_raw, str) and not review_raw.strip()):
        review_after = _int_field(errors, values, "review_after", 1, MAX_SESSIONS)
        if review_after is not None and sessions is not None and review_after >= sessions:
            errors["review_after"] = "must be before the last session"
    active_raw = values.get("active", True)
    active = (
        active_raw.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(active_raw, str)
        else bool(active_raw)
    )
    if errors:
        raise InvalidInput("Some fields of the course are invalid.", errors)
    assert service is not None and sessions is not None and within is not None
    assert min_gap is not None and max_gap is not None
    if template is None:
        template = CourseTemplate()
        session.add(template)
    template.slug, template.name, template.service_id = slug, name, service.id
    template.service = service
    template.sessions, template.within_days = sessions, within
    template.min_gap_hours, template.max_gap_hours = min_gap, max_gap
    template.weekdays, template.review_after, template.active = weekdays, review_after, active
    session.flush()
    return template


# --- the planner (pure) ---------------------------------------------------------------------------


def _local(day: dt.date, wall: dt.time, tz: ZoneInfo) -> dt.datetime | None:
    """The instant of `wall` on `day`, None when the clocks skip it."""
    try:
        return local_to_utc(day, wall, tz)
    except NonexistentLocalTime:
        return None


def _midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(UTC)


@dataclass
class _Planner:
    """One planning run: the rules, the first session's wall time and window, what is free."""

    rules: TemplateRules
    tz: ZoneInfo
    wall: dt.time
    last_day: dt.date
    window_end: dt.datetime
    free: list[dt.datetime]
    free_set: frozenset[dt.datetime]
    closed: Collection[dt.date]
    tried: int = 0

    def ideal(self, prev: dt.datetime) -> tuple[dt.date, dt.datetime | None]:
        """The next course day at the first session's wall time that keeps the minimum gap after
        `prev`, and its instant (None when the clocks skip that time that day)."""
        day = prev.astimezone(self.tz).date() + dt.timedelta(days=1)
        while day <= self.last_day:
            if self.rules.on_pattern(day):
                instant = _local(day, self.wall, self.tz)
                if instant is None or instant - prev >= self.rules.min_gap:
                    return day, instant
            day += dt.timedelta(days=1)
        return day, None

    def candidates(self, prev: dt.datetime, remaining: int) -> list[dt.datetime]:
        """Free starts that keep the rules after `prev`, nearest the ideal first."""
        day, _ = self.ideal(prev)
        wall = self.wall.hour * 60 + self.wall.minute
        lo = prev + self.rules.min_gap
        hi = min(prev + self.rules.max_gap, self.window_end - remaining * self.rules.min_gap)
        found: list[tuple[int, int, dt.datetime]] = []
        tz, on_pattern = self.tz, self.rules.on_pattern
        for start in self.free[bisect_left(self.free, lo) :]:
            if start > hi or (start == hi and remaining):
                break
            local = start.astimezone(tz)
            if start < self.window_end and on_pattern(local.date()):
                # Nearest day first, then the nearest wall-clock time on it: the same time a
                # day later beats an hour earlier on the next day.
                days = abs((local.date() - day).days)
                found.append((days, abs(local.hour * 60 + local.minute - wall), start))
        found.sort()
        return [start for _, _, start in found]

    def place(self, prev: dt.datetime, remaining: int) -> list[dt.datetime] | None:
        """The starts of the `remaining` sessions after `prev` (depth first), or None."""
        if remaining == 0:
            return []
        for start in self.candidates(prev, remaining - 1):
            self.tried += 1
            if self.tried > PLAN_BUDGET:
                return None
            rest = self.place(start, remaining - 1)
            if rest is not None:
                return [start, *rest]
        return None

    def why_moved(self, prev: dt.datetime, start: dt.datetime) -> str | None:
        day, ideal = self.ideal(prev)
        if ideal == start:
            return None
        at = f"{self.wall:%H:%M}"
        if day > self.last_day:
            why = f"no course day after the session before has {at} inside the course's window"
        elif day in self.closed:
            why = f"the clinic is closed on {_day(day)}"
        elif ideal is None:
            why = f"{at} does not exist on {_day(day)} (the clocks go forward)"
        elif is_ambiguous(day, self.wall, self.tz):
            why = f"{at} happens twice on {_day(day)} (the clocks go back)"
        elif ideal not in self.free_set:
            why = f"nothing is free at {at} on {_day(day)}"
        elif ideal - prev > self.rules.max_gap:
            why = f"{at} on {_day(day)} is more than {_hours(self.rules.max_gap)} after the session before"
        else:
            why = f"{at} on {_day(day)} would leave no room for the later sessions"
        local = start.astimezone(self.tz)
        return f"{why[0].upper()}{why[1:]}: moved to {_day(local.date())} at {local:%H:%M}."


def plan_sessions(
    rules: TemplateRules,
    first_start: dt.datetime,
    *,
    tz: ZoneInfo,
    free_starts: Sequence[dt.datetime],
    closed_days: Collection[dt.date] = (),
) -> list[PlannedSession]:
    """Place every session from `first_start` (which must be free): each on the next course day
    at the same local time when that start is free and keeps the rules, else the free start
    nearest to it that keeps them (minimum and maximum gap, the window, the weekday pattern).
    No database: `free_starts` are the bookable starts (UTC) over the window, `closed_days` the
    local dates without opening hours (used to explain moves).

    Raises NoPlan (naming `first_start` when it is the first start that cannot be used).
    """
    first = first_start.astimezone(UTC)
    local = first.astimezone(tz)
    first_day = local.date()
    last_day = first_day + dt.timedelta(days=rules.within_days - 1)
    free = sorted(free_starts)
    planner = _Planner(
        rules=rules,
        tz=tz,
        wall=local.time().replace(tzinfo=None),
        last_day=last_day,
        window_end=_midnight(last_day + dt.timedelta(days=1), tz),
        free=free,
        free_set=frozenset(free),
        closed=closed_days,
    )
    if not rules.on_pattern(first_day):
        raise NoPlan(
            "The course's sessions are not held on that weekday.",
            {"first_start": "not on one of the course's weekdays"},
        )
    if first not in planner.free_set:
        raise NoPlan(
            "The first session's time is not free: choose another.",
            {"first_start": "not a free time"},
        )
    rest = planner.place(first, rules.sessions - 1)
    if rest is None:
        raise NoPlan(
            f"No plan keeps the course's rules from {_when(first, tz)}: "
            "try another first day or time.",
            {"first_start": "no plan fits from this start"},
        )
    starts = [first, *rest]
    out = [PlannedSession(first, first + rules.duration)]
    for prev, start in zip(starts, starts[1:], strict=False):
        out.append(PlannedSession(start, start + rules.duration, planner.why_moved(prev, start)))
    return out


def check_starts(rules: TemplateRules, starts: Sequence[dt.datetime], *, tz: str) -> None:
    """The starts keep the template's rules (count, order, gaps, window, weekday pattern);
    else InvalidInput naming `starts` and the session (`starts[i]`, 0-based)."""
    zone = ZoneInfo(tz)
    if len(starts) != rules.sessions:
        raise InvalidInput(
            f"This course has {rules.sessions} sessions: give one start for each.",
            {"starts": f"needs {rules.sessions} starts"},
        )

    def refuse(i: int, problem: str) -> InvalidInput:
        message = f"Session {i + 1} ({_when(starts[i], zone)}) {problem}."
        return InvalidInput(message, {"starts": message, f"starts[{i}]": problem})

    first_day = starts[0].astimezone(zone).date()
    for i, start in enumerate(starts):
        day = start.astimezone(zone).date()
        if not rules.on_pattern(day):
            raise refuse(i, "is not on one of the course's weekdays")
        if (day - first_day).days >= rules.within_days:
            raise refuse(i, f"is not within {rules.within_days} days of the first session")
        if i:
            gap = start - starts[i - 1]
            if gap < rules.min_gap:
                raise refuse(i, f"is less than {_hours(rules.min_gap)} after the session before")
            if gap > rules.max_gap:
                raise refuse(i, f"is more than {_hours(rules.max_gap)} after the session before")


def _instant(value: dt.datetime, name: str, now: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("A start time needs a UTC offset.", {name: "must include a UTC offset"})
    try:
        instant = value.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInput("That time is out of range.", {name: "out of range"}) from exc
    if instant <= now:
        raise InvalidInput("That time has passed.", {name: "is in the past"})
    return instant


def plan(
    session: Session,
    location_slug: str,
    course_slug: str,
    first_start: dt.datetime,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
) -> Plan:
    """A plan for the course from `first_start`, using the availability engine for what is
    free; NotFound (location, course), InvalidInput (first_start), NoPlan."""
    location = booking.get_location(session, location_slug)
    template = get_template(session, location, course_slug)
    first = _instant(first_start, "first_start", now)
    tz = ZoneInfo(location.timezone)
    first_day = first.astimezone(tz).date()
    last_day = first_day + dt.timedelta(days=template.within_days - 1)
    slots = availability.location_slots(
        session, location, template.service, first_day, template.within_days, now
    )
    hours = availability.opening_hours(location)
    closed = availability.closed_days(session, location.id, first_day, last_day)
    day = first_day
    while day <= last_day:
        if not hours.get(day.weekday()):
            closed.add(day)
        day += dt.timedelta(days=1)
    planned = plan_sessions(
        TemplateRules.of(template),
        first,
        tz=tz,
        free_starts=[slot.start for slot in slots],
        closed_days=closed,
    )
    return Plan(template=template, location=location, sessions=planned)


# --- booking and the course's life ----------------------------------------------------------------


def _book_one(
    session: Session,
    request: booking.BookingRequest,
    now: dt.datetime,
    settings: ClinicSettings,
) -> Appointment:
    """One session through booking.book, on the first session's chair when it is free."""
    if request.resource_id is not None:
        try:
            return booking.book(session, request, now=now, settings=settings)
        except SlotUnavailable as exc:
            # Refused before anything was written: that chair is taken, any other will do.
            if "resource" not in exc.fields:
                raise
        request = dataclasses.replace(request, resource_id=None)
    return booking.book(session, request, now=now, settings=settings)


def _held(template: CourseTemplate, number: int) -> bool:
    return template.review_after is not None and number > template.review_after


def book_course(
    session: Session, request: CourseRequest, *, now: dt.datetime, settings: ClinicSettings
) -> Course:
    """Book every session through booking.book in the caller's transaction, all or nothing.

    A session that cannot be booked raises its error (slot_unavailable, too_soon, ...) with
    fields naming `starts[i]` (0-based) and a message naming the session; the caller rolls
    back. Starts that break the course's rules raise InvalidInput naming `starts`. The patient
    gets one e-mail with every session's invite (`mail.queue_course_mail`).
    """
    location = booking.get_location(session, request.location)
    template = get_template(session, location, request.course)
    if not request.starts:
        raise InvalidInput("Give the start of every session.", {"starts": "required"})
    if len(request.starts) > MAX_SESSIONS:
        raise InvalidInput("Too many starts.", {"starts": f"at most {MAX_SESSIONS}"})
    starts = [_instant(x, f"starts[{i}]", now) for i, x in enumerate(request.starts)]
    tz = ZoneInfo(location.timezone)
    check_starts(TemplateRules.of(template), starts, tz=location.timezone)
    course: Course | None = None
    chair: int | None = None
    booked: list[Appointment] = []
    for i, start in enumerate(starts):
        number = i + 1
        one = booking.BookingRequest(
            location=location.slug,
            service=template.service.slug,
            start=start,
            patient=request.patient,
            note=request.note,
            source=request.source,
            allow_short_notice=request.allow_short_notice,
            resource_id=chair,
            require_email=request.require_email,
            override_clearance=request.override_clearance,
            escort=request.escort,
            require_escort=request.require_escort,
            course_id=course.id if course is not None else None,
            course_session=number,
            awaiting_review=_held(template, number),
            send_invite=False,
        )
        try:
            appt = _book_one(session, one, now, settings)
        except NotFound:
            raise
        except InvalidInput as exc:
            if "start" not in exc.fields:
                raise  # the patient's details: the same for every session
            raise InvalidInput(
                f"Session {number} ({_when(start, tz)}): {exc.message}",
                {f"starts[{i}]": exc.fields["start"]},
            ) from exc
        except DomainError as exc:
            raise type(exc)(
                f"Session {number} ({_when(start, tz)}): {exc.message}",
                {f"starts[{i}]": exc.message},
                appointments=exc.appointments,
            ) from exc
        if course is None:
            review = template.review_after is not None and template.review_after < len(starts)
            course = Course(
                template_id=template.id,
                patient_id=appt.patient_id,
                location_id=location.id,
                sessions=len(starts),
                status=CourseStatus.ACTIVE,
                manage_token=secrets.token_urlsafe(32),
                review_state=ReviewState.PENDING if review else ReviewState.NONE,
                reviewed_by_name="",
                created_at=now,
                updated_at=now,
            )
            course.template, course.location = template, location
            session.add(course)
            session.flush()
            appt.course_id = course.id
            chair = appt.resource_id
        booked.append(appt)
    assert course is not None
    session.flush()
    mail.queue_course_mail(session, booked, "booked", now, settings, course.manage_token)
    return course


def get_by_token(session: Session, token: str) -> Course:
    """The course with this manage token; NotFound otherwise."""
    course = None
    if 20 <= len(token) <= 64:
        course = session.scalars(select(Course).where(Course.manage_token == token)).first()
    if course is None:
        raise NotFound("No such course.")
    return course


def find_by_token(session: Session, token: str) -> Course | None:
    """The course with this manage token, or None (a token may be an appointment's instead)."""
    try:
        return get_by_token(session, token)
    except NotFound:
        return None


def get_course(session: Session, course_id: int) -> Course:
    """The course by id; NotFound otherwise."""
    course = session.get(Course, course_id)
    if course is None:
        raise NotFound("No such course.")
    return course


def _session_of(course: Course) -> Session:
    session = object_session(course)
    if session is None:
        raise RuntimeError("the course is not in a session")
    return session


def sessions(course: Course) -> list[Appointment]:
    """Every session of the course (cancelled ones too), by session number."""
    return list(
        _session_of(course).scalars(
            select(Appointment)
            .where(Appointment.course_id == course.id)
            .order_by(Appointment.course_session, Appointment.id)
        )
    )


HELD_STATUSES = frozenset({AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED})


def progress(course: Course) -> tuple[int, int]:
    """(sessions held, sessions in the course): held = checked in or completed; the total
    leaves out sessions cancelled by a stop or a cancel-the-rest."""
    return _progress([a.status for a in sessions(course)])


def _progress(statuses: Sequence[str]) -> tuple[int, int]:
    done = sum(1 for status in statuses if status in HELD_STATUSES)
    total = sum(1 for status in statuses if status != AppointmentStatus.CANCELLED) or len(statuses)
    return done, max(total, done)


def status_of(course: Course) -> str:
    """The course's status, `completed` once it is active with every session that stands
    held (checked in, completed or no-show: nothing left booked)."""
    if course.status != CourseStatus.ACTIVE:
        return course.status
    standing = [a for a in sessions(course) if a.status != AppointmentStatus.CANCELLED]
    if standing and all(a.status != AppointmentStatus.BOOKED for a in standing):
        return CourseStatus.COMPLETED.value
    return course.status


def progress_label(course: Course) -> str:
    """'3 of 6'."""
    return _label(progress(course))


def _label(progress: tuple[int, int]) -> str:
    done, total = progress
    return f"{done} of {total}"


def progress_labels(session: Session, course_ids: Iterable[int]) -> dict[int, str]:
    """`progress_label` of every course in `course_ids`, read in one statement (a calendar or
    a list shows many courses)."""
    ids = sorted(set(course_ids))
    if not ids:
        return {}
    statuses: dict[int, list[str]] = {cid: [] for cid in ids}
    rows = session.execute(
        select(Appointment.course_id, Appointment.status).where(Appointment.course_id.in_(ids))
    )
    for course_id, status in rows:
        if course_id is not None:
            statuses[course_id].append(status)
    return {cid: _label(_progress(found)) for cid, found in statuses.items()}


def course_of(appointment: Appointment) -> Course | None:
    """The course `appointment` is a session of, if any."""
    if appointment.course_id is None:
        return None
    session = object_session(appointment)
    return session.get(Course, appointment.course_id) if session is not None else None


def check_move(session: Session, appointment: Appointment, new_start: dt.datetime) -> None:
    """Moving a course session to `new_start` keeps the course's rules: TooSoon (closer than the
    minimum gap to a neighbouring session), TooFar (past the maximum gap, or the window),
    OffPattern (a weekday the course does not use). A single visit passes."""
    rule = move_rule(session, appointment)
    if rule is not None:
        rule.check(new_start)


@dataclass(frozen=True)
class MoveRule:
    """The course's rules for moving one session, its neighbours read once: `check` is the
    rule (check_move), `keeps` asks it of a candidate start (the pickers and the alternatives
    offered after a refusal), `earliest`/`latest` bound where any start can keep it."""

    rules: TemplateRules
    tz: ZoneInfo
    number: int
    before: Appointment | None
    after: Appointment | None
    days: tuple[dt.date, ...]  # the other active sessions' local days

    @property
    def earliest(self) -> dt.datetime | None:
        if not self.days:
            return None
        bounds = [
            _midnight(max(self.days) - dt.timedelta(days=self.rules.within_days - 1), self.tz)
        ]
        if self.before is not None:
            bounds.append(self.before.start_at + self.rules.min_gap)
        if self.after is not None:
            bounds.append(self.after.start_at - self.rules.max_gap)
        return max(bounds)

    @property
    def latest(self) -> dt.datetime | None:
        if not self.days:
            return None
        day_after = min(self.days) + dt.timedelta(days=self.rules.within_days)
        bounds = [_midnight(day_after, self.tz)]
        if self.before is not None:
            bounds.append(self.before.start_at + self.rules.max_gap)
        if self.after is not None:
            bounds.append(self.after.start_at - self.rules.min_gap)
        return min(bounds)

    def keeps(self, start: dt.datetime) -> bool:
        try:
            self.check(start)
        except DomainError:
            return False
        return True

    def _check_gap(self, gap: dt.timedelta, other: Appointment, side: str, near: str) -> None:
        """The gap to the neighbouring session `other` (`side`: this one is "after" or "before"
        it) within the course's minimum and maximum; `near` names a gap too small."""
        rules, session = self.rules, other.course_session
        when = _when(other.start_at, self.tz)
        if gap < rules.min_gap:
            raise TooSoon(
                f"Session {self.number} must be at least {_hours(rules.min_gap)} {side} session "
                f"{session} ({when}).",
                {"start": f"{near} session {session}"},
            )
        if gap > rules.max_gap:
            raise TooFar(
                f"Session {self.number} must be at most {_hours(rules.max_gap)} {side} session "
                f"{session} ({when}).",
                {"start": f"too long {side} session {session}"},
            )

    def check(self, new_start: dt.datetime) -> None:
        rules, tz = self.rules, self.tz
        start = new_start.astimezone(UTC)
        if not rules.on_pattern(start.astimezone(tz).date()):
            raise OffPattern(
                "This course's sessions are not held on that weekday.",
                {"start": "not on one of the course's weekdays"},
            )
        if self.before is not None:
            self._check_gap(start - self.before.start_at, self.before, "after", "too soon after")
        if self.after is not None:
            self._check_gap(self.after.start_at - start, self.after, "before", "too close to")
        days = [*self.days, start.astimezone(tz).date()]
        if (max(days) - min(days)).days >= rules.within_days:
            raise TooFar(
                f"Every session of this course falls within {rules.within_days} days.",
                {"start": f"outside the course's {rules.within_days} days"},
            )


def move_rule(session: Session, appointment: Appointment) -> MoveRule | None:
    """The rule a move of `appointment` must keep; None for a single visit."""
    course = course_of(appointment)
    if course is None or appointment.course_session is None:
        return None
    tz = ZoneInfo(course.location.timezone)
    number = appointment.course_session
    others = [
        a for a in sessions(course) if a.id != appointment.id and a.active and a.course_session
    ]
    before = [a for a in others if (a.course_session or 0) < number]
    after = [a for a in others if (a.course_session or 0) > number]
    return MoveRule(
        rules=TemplateRules.of(course.template),
        tz=tz,
        number=number,
        before=before[-1] if before else None,
        after=after[0] if after else None,
        days=tuple(a.start_at.astimezone(tz).date() for a in others),
    )


def move_session(
    session: Session,
    appointment: Appointment,
    new_start: dt.datetime,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    by_staff: bool = False,
    resource_id: int | None = None,
) -> Appointment:
    """Move one session (booking.reschedule, which checks the course's rules with check_move);
    only its own invite changes (same UID, SEQUENCE + 1)."""
    return booking.reschedule(
        session,
        appointment,
        new_start,
        now=now,
        settings=settings,
        by_staff=by_staff,
        resource_id=resource_id,
    )


def _future_booked(course: Course, now: dt.datetime) -> list[Appointment]:
    return [
        a
        for a in sessions(course)
        if a.status == AppointmentStatus.BOOKED and a.active and a.start_at > now
    ]


def cancel_rest(
    session: Session,
    course: Course,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    by_staff: bool = False,
) -> CancelResult:
    """Cancel every future booked session outside the late-cancel window (staff: all future
    ones); those inside it are kept and listed. One e-mail carries the CANCEL invites."""
    result = CancelResult()
    for appt in _future_booked(course, now):
        if not by_staff and booking.inside_change_window(appt.service, appt.start_at, now):
            result.kept_late.append(appt)
            continue
        booking.cancel(
            session,
            appt,
            now=now,
            settings=settings,
            by_staff=True,
            reason="course cancelled",
            invite=False,
        )
        appt.awaiting_review = False
        result.cancelled.append(appt)
    if result.cancelled:
        if not result.kept_late:
            course.status = CourseStatus.CANCELLED
        if course.review_state == ReviewState.PENDING and not any(
            a.awaiting_review for a in _future_booked(course, now)
        ):
            course.review_state = ReviewState.NONE
        course.updated_at = now
        session.flush()
        mail.queue_course_mail(
            session, result.cancelled, "cancelled", now, settings, course.manage_token
        )
    return result


def held_sessions(course: Course) -> list[Appointment]:
    """The sessions waiting for the review (chair held), by session number."""
    return [a for a in sessions(course) if a.awaiting_review and a.active]


def review(
    session: Session,
    course: Course,
    decision: str,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    staff: StaffUser | None = None,
) -> Course:
    """Record the clinician's decision at the review point: `continue` releases the held
    sessions (their reminders are planned now); `stop` cancels them (one e-mail with the
    CANCEL invites, one SMS) and stops the course."""
    if decision not in ("continue", "stop"):
        raise InvalidInput("The decision is continue or stop.", {"decision": "continue or stop"})
    if course.review_state != ReviewState.PENDING:
        raise Conflict(
            "This course has no review waiting for a decision.",
            {"decision": f"review is {course.review_state}"},
        )
    held = held_sessions(course)
    if decision == "continue":
        for appt in held:
            appt.awaiting_review = False
            appt.updated_at = now
        session.flush()
        for appt in held:
            reminders.sync_plan(session, appt, "status", now, settings)
        course.review_state = ReviewState.CONTINUED
    else:
        cancelled = []
        for appt in held:
            appt.awaiting_review = False
            if appt.status == AppointmentStatus.BOOKED:
                booking.cancel(
                    session,
                    appt,
                    now=now,
                    settings=settings,
                    by_staff=True,
                    reason="course stopped at review",
                    invite=False,
                )
                cancelled.append(appt)
        course.review_state = ReviewState.STOPPED
        course.status = CourseStatus.STOPPED
        if cancelled:
            session.flush()
            mail.queue_course_mail(
                session, cancelled, "stopped", now, settings, course.manage_token
            )
            _queue_stopped_sms(session, cancelled[0], now)
    course.reviewed_at = now
    course.reviewed_by_id = staff.id if staff is not None else None
    course.reviewed_by_name = staff.name if staff is not None else ""
    course.updated_at = now
    session.flush()
    return course


def _queue_stopped_sms(session: Session, first: Appointment, now: dt.datetime) -> None:
    """One text that the held sessions are cancelled (the worker checks consent and opt-out)."""
    patient = first.patient
    wanted = patient.sms_consent and not reminders.is_opted_out(session, patient.phone)
    session.add(
        Reminder(
            appointment_id=first.id,
            appointment_start_at=first.start_at,
            offset_minutes=0,
            kind=ReminderKind.COURSE_STOPPED.value,
            to_phone=patient.phone,
            due_at=now,
            next_attempt_at=now,
            status=ReminderStatus.PENDING if wanted else ReminderStatus.SKIPPED,
            reason="" if wanted else "no SMS consent or opted out",
            closed_at=None if wanted else now,
            created_at=now,
            attempts=0,
            provider_status="",
            error_code="",
        )
    )
    session.flush()


def reviews_due(session: Session, location_ids: Sequence[int], now: dt.datetime) -> list[Course]:
    """Courses whose review is still open 48 h or less before their next held session (those
    past it too: never silently cancelled), soonest first; with their patients and templates
    (the list names them), in three statements however many courses."""
    if not location_ids:
        return []
    next_held = func.min(Appointment.start_at)
    rows = session.execute(
        select(Course, next_held)
        .join(Appointment, Appointment.course_id == Course.id)
        .where(
            Course.location_id.in_(list(location_ids)),
            Course.review_state == ReviewState.PENDING,
            Appointment.awaiting_review.is_(True),
            Appointment.active.is_(True),
        )
        .group_by(Course.id)
        .having(next_held <= now + REVIEW_DUE_BEFORE)
        .order_by(next_held)
        .options(selectinload(Course.patient), selectinload(Course.template))
    )
    return [row[0] for row in rows]


def next_held_start(course: Course) -> dt.datetime | None:
    """When the first held session starts (None: none held)."""
    held = held_sessions(course)
    return min((a.start_at for a in held), default=None)


def next_held_starts(session: Session, course_ids: Iterable[int]) -> dict[int, dt.datetime]:
    """`next_held_start` of every course in `course_ids` that has a held session, read in one
    statement (a list shows many courses)."""
    ids = sorted(set(course_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Appointment.course_id, func.min(Appointment.start_at))
        .where(
            Appointment.course_id.in_(ids),
            Appointment.awaiting_review.is_(True),
            Appointment.active.is_(True),
        )
        .group_by(Appointment.course_id)
    )
    return {course_id: start for course_id, start in rows if course_id is not None}


def patient_courses(session: Session, patient_id: int) -> list[Course]:
    """A patient's courses, newest first."""
    return list(
        session.scalars(
            select(Course)
            .where(Course.patient_id == patient_id)
            .order_by(Course.created_at.desc(), Course.id.desc())
        )
    )
