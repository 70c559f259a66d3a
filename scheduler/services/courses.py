"""Treatment courses: templates, the planner (pure), booking a whole course, and its lifecycle.

Interface (stable; the patient and staff pages code against it):

    CourseTemplate, Course                         models (scheduler.models.courses)
    TemplateRules                                  a template's rules as plain values
    PlannedSession(start, end, moved)              one session of a plan (moved: why, or None)
    Plan(template, location, sessions)             a proposal the patient confirms
    CourseRequest                                  like booking.BookingRequest, with `starts`
    CancelResult(cancelled, kept_late)             what cancel_rest did
    NoPlan, TooFar                                 errors (409 no_plan, 409 too_far;
                                                   too close is errors.TooSoon, 409 too_soon)

    list_templates(session, location) -> list[CourseTemplate]          active, offered there
    get_template(session, location, slug) -> CourseTemplate            NotFound names `course`
    save_template(session, template | None, fields) -> CourseTemplate  InvalidInput names fields
    plan_sessions(rules, first_start, *, tz, is_free, now) -> list[PlannedSession]   pure
    check_starts(rules, starts, *, tz) -> None                         InvalidInput naming starts
    plan(session, location_slug, course_slug, first_start, *, now, settings) -> Plan
    book_course(session, request, *, now, settings) -> Course          all or nothing
    get_by_token(session, token) -> Course
    get_course(session, course_id) -> Course
    sessions(course) -> list[Appointment]                              by session number
    progress(course) -> tuple[int, int]; progress_label(course) -> "3 of 6"
    course_of(appointment) -> Course | None
    move_session(session, appointment, new_start, *, now, settings, by_staff=False,
                 resource_id=None) -> Appointment                    too_soon / too_far
    check_move(session, appointment, new_start) -> None              the course rules for a move
    cancel_rest(session, course, *, now, settings, by_staff=False) -> CancelResult
    review(session, course, decision, *, now, settings, staff=None) -> Course
    reviews_due(session, location_ids, now) -> list[Course]          open, <= 48 h to next held
    patient_courses(session, patient_id) -> list[Course]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from scheduler.models import Appointment, Course, CourseTemplate, Location, StaffUser
from scheduler.services.day_of import Escort
from scheduler.services.errors import DomainError
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings

# A review still open this long before the next held session is flagged to staff.
REVIEW_DUE_BEFORE = dt.timedelta(hours=48)

Decision = Literal["continue", "stop"]


class NoPlan(DomainError):
    """No placement of the course's sessions keeps its rules from that first start."""

    code = "no_plan"
    http_status = 409


class TooFar(DomainError):
    """A session would be past the maximum gap after the one before, or outside the window."""

    code = "too_far"
    http_status = 409


@dataclass(frozen=True)
class TemplateRules:
    """A template's spacing rules as plain values (what the pure planner needs)."""

    sessions: int
    min_gap: dt.timedelta
    max_gap: dt.timedelta
    within_days: int
    weekdays: frozenset[int] | None  # 0 = Monday; None: any day
    consecutive_weekdays: bool
    duration: dt.timedelta  # of one session (start to end)

    @classmethod
    def of(cls, template: CourseTemplate) -> TemplateRules:
        """The rules of `template` (its service gives the session length)."""
        raise NotImplementedError


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


# --- templates ------------------------------------------------------------------------------------


def list_templates(session: Session, location: Location) -> list[CourseTemplate]:
    """The active templates whose service is offered (and active) at `location`, by name."""
    raise NotImplementedError


def get_template(session: Session, location: Location, slug: str) -> CourseTemplate:
    """The active template `slug` offered at `location`; NotFound naming `course`."""
    raise NotImplementedError


def save_template(
    session: Session, template: CourseTemplate | None, fields: Mapping[str, Any]
) -> CourseTemplate:
    """Create (template None) or update a template from form/API fields.

    Fields: slug, name, service (slug or id), sessions, min_gap_hours, max_gap_hours,
    within_days, weekdays (None | "mon,wed,fri" | "consecutive_weekdays"), review_after, active.
    InvalidInput names each bad field.
    """
    raise NotImplementedError


# --- the planner (pure) ---------------------------------------------------------------------------


def plan_sessions(
    rules: TemplateRules,
    first_start: dt.datetime,
    *,
    tz: str,
    is_free: Callable[[dt.datetime], bool],
    candidates: Callable[[dt.date], Sequence[dt.datetime]],
    now: dt.datetime,
) -> list[PlannedSession]:
    """Place every session from `first_start`: each at the same local time where `is_free`,
    else the nearest start from `candidates(local_date)` keeping the rules. No database.

    Raises NoPlan when no placement keeps the rules.
    """
    raise NotImplementedError


def check_starts(rules: TemplateRules, starts: Sequence[dt.datetime], *, tz: str) -> None:
    """The starts keep the template's rules (count, order, gaps, window, weekday pattern);
    else InvalidInput naming `starts` (or `starts[i]`)."""
    raise NotImplementedError


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
    raise NotImplementedError


# --- booking and the course's life ----------------------------------------------------------------


def book_course(
    session: Session, request: CourseRequest, *, now: dt.datetime, settings: ClinicSettings
) -> Course:
    """Book every session through booking.book in the caller's transaction, all or nothing.

    A session that cannot be booked raises its error with fields naming `starts[i]` (the
    caller rolls back); starts that break the rules raise InvalidInput naming `starts`.
    """
    raise NotImplementedError


def get_by_token(session: Session, token: str) -> Course:
    """The course with this manage token; NotFound otherwise."""
    raise NotImplementedError


def get_course(session: Session, course_id: int) -> Course:
    """The course by id; NotFound otherwise."""
    raise NotImplementedError


def sessions(course: Course) -> list[Appointment]:
    """Every session of the course (cancelled ones too), by session number."""
    raise NotImplementedError


def progress(course: Course) -> tuple[int, int]:
    """(sessions held, sessions in the course): held = completed or checked in."""
    raise NotImplementedError


def progress_label(course: Course) -> str:
    """'3 of 6'."""
    done, total = progress(course)
    return f"{done} of {total}"


def course_of(appointment: Appointment) -> Course | None:
    """The course `appointment` is a session of, if any."""
    raise NotImplementedError


def check_move(session: Session, appointment: Appointment, new_start: dt.datetime) -> None:
    """Moving a course session to `new_start` keeps the course's rules: TooSoon (closer than the
    minimum gap to a neighbouring session) or TooFar (past the maximum gap, or the window)."""
    raise NotImplementedError


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
    """Move one session (booking.reschedule) after check_move; only its own invite changes."""
    raise NotImplementedError


def cancel_rest(
    session: Session,
    course: Course,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    by_staff: bool = False,
) -> CancelResult:
    """Cancel every future booked session outside the late-cancel window (staff: all future
    ones); those inside it are kept and listed."""
    raise NotImplementedError


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
    sessions (reminders planned); `stop` cancels them (CANCEL invites, one SMS)."""
    raise NotImplementedError


def reviews_due(session: Session, location_ids: Sequence[int], now: dt.datetime) -> list[Course]:
    """Courses whose review is still open 48 h or less before their next held session."""
    raise NotImplementedError


def patient_courses(session: Session, patient_id: int) -> list[Course]:
    """A patient's courses, newest first."""
    raise NotImplementedError
