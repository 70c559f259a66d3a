"""Read-only view models of treatment courses for the patient and staff pages (no Flask).

The rules stay in `courses`; this module only arranges what the pages show: the courses offered
beside each service, a course's sessions with their state, and the course badge of a visit
("Session 3 of 6", "awaiting review") on the calendar, the visit page and the patient record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import (
    Appointment,
    AppointmentStatus,
    Course,
    CourseTemplate,
    Location,
    ReviewState,
)
from scheduler.services import booking, courses
from scheduler.services.errors import NotFound

# What a session's state is called on the patient's course page.
SESSION_STATES = {
    "booked": "Booked",
    "held": "Held until your review",
    "checked_in": "Checked in",
    "completed": "Done",
    "no_show": "Missed",
    "cancelled": "Cancelled",
    "past": "Past",
}


def offers(session: Session, location: Location) -> dict[int, list[CourseTemplate]]:
    """The courses offered at `location`, by service id (the service step shows them beside
    the single visit)."""
    out: dict[int, list[CourseTemplate]] = {}
    for template in courses.list_templates(session, location):
        out.setdefault(template.service_id, []).append(template)
    return out


def offered(session: Session, location: Location, service_id: int, slug: str) -> CourseTemplate:
    """The course `slug` offered at `location` for that service; NotFound naming `course`."""
    template = courses.get_template(session, location, slug)
    if template.service_id != service_id:
        raise NotFound("This course is not offered for this service.", {"course": "unknown"})
    return template


@dataclass(frozen=True)
class SessionRow:
    """One session of a course as its page lists it."""

    number: int
    appointment: Appointment
    state: str  # a key of SESSION_STATES
    can_move: bool  # the patient may move it online now
    too_late: bool  # booked, in the future, inside the late-change window

    @property
    def state_label(self) -> str:
        return SESSION_STATES[self.state]


def _state(appt: Appointment, now: dt.datetime) -> str:
    if appt.status == AppointmentStatus.BOOKED:
        if appt.awaiting_review and appt.active:
            return "held"
        return "past" if appt.start_at <= now else "booked"
    return str(appt.status)


def session_rows(course: Course, now: dt.datetime) -> list[SessionRow]:
    """Every session of the course, by number, with what the patient may do with it."""
    rows = []
    for appt in courses.sessions(course):
        future = appt.status == AppointmentStatus.BOOKED and appt.start_at > now
        late = future and booking.inside_change_window(appt.service, appt.start_at, now)
        rows.append(
            SessionRow(
                number=appt.course_session or 0,
                appointment=appt,
                state=_state(appt, now),
                can_move=future and not late,
                too_late=late,
            )
        )
    return rows


@dataclass(frozen=True)
class RestPreview:
    """What "cancel the rest" would do now: sessions cancelled, sessions kept (too late)."""

    cancel: list[Appointment]
    keep_late: list[Appointment]


def rest_preview(course: Course, now: dt.datetime) -> RestPreview:
    """The split `courses.cancel_rest` makes for the patient, shown before they confirm."""
    rows = session_rows(course, now)
    cancel = [r.appointment for r in rows if r.can_move]
    keep = [r.appointment for r in rows if r.too_late]
    return RestPreview(cancel, keep)


@dataclass(frozen=True)
class CourseBadge:
    """A visit's place in its course, for staff: "Session 3 of 6", progress "2 of 6"."""

    course_id: int
    session: int
    sessions: int
    progress: str
    awaiting_review: bool
    review_pending: bool

    @property
    def label(self) -> str:
        return f"Session {self.session} of {self.sessions}"


def badges(session: Session, appointments: Iterable[Appointment | None]) -> dict[int, CourseBadge]:
    """The course badge of every course session among `appointments`, by appointment id: the
    staff calendar, the visit page and the API calendar. Two statements, however many courses."""
    visits = [
        a
        for a in appointments
        if a is not None and a.course_id is not None and a.course_session is not None
    ]
    if not visits:
        return {}
    ids = sorted({a.course_id for a in visits if a.course_id is not None})
    found = {c.id: c for c in session.scalars(select(Course).where(Course.id.in_(ids)))}
    progress = courses.progress_labels(session, found)
    out = {}
    for appt in visits:
        course = found.get(appt.course_id or 0)
        if course is None:
            continue
        out[appt.id] = CourseBadge(
            course_id=course.id,
            session=appt.course_session or 0,
            sessions=course.sessions,
            progress=progress[course.id],
            awaiting_review=bool(appt.awaiting_review and appt.active),
            review_pending=course.review_state == ReviewState.PENDING,
        )
    return out


@dataclass(frozen=True)
class CourseLine:
    """A course on the patient record or the review list."""

    course: Course
    name: str
    progress: str
    status: str
    review_pending: bool
    next_held: dt.datetime | None


def lines(session: Session, found: Sequence[Course]) -> list[CourseLine]:
    """The lines of `found`: two statements for their progress and next held sessions, however
    many courses (their templates are read if not loaded yet)."""
    progress = courses.progress_labels(session, [c.id for c in found])
    next_held = courses.next_held_starts(session, [c.id for c in found])
    return [
        CourseLine(
            course=c,
            name=c.template.name,
            progress=progress[c.id],
            status=str(c.status),
            review_pending=c.review_state == ReviewState.PENDING,
            next_held=next_held.get(c.id),
        )
        for c in found
    ]


def patient_lines(
    session: Session, patient_id: int, location_ids: Iterable[int] | None = None
) -> list[CourseLine]:
    """A patient's courses (at the locations the viewer may see), newest first."""
    allowed = None if location_ids is None else set(location_ids)
    found = [
        c
        for c in courses.patient_courses(session, patient_id)
        if allowed is None or c.location_id in allowed
    ]
    return lines(session, found)


def reviews_due(
    session: Session, locations: Sequence[Location], now: dt.datetime
) -> list[CourseLine]:
    """Courses whose review is due soon (or overdue) at these locations, soonest first."""
    return lines(session, courses.reviews_due(session, [x.id for x in locations], now))
