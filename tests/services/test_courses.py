"""Courses on both databases: plan, book all or nothing, move within and against the rules,
cancel the rest, the review point, invites (read back by ical.js) and reminders per session."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from scheduler.models import (
    Appointment,
    Closure,
    Course,
    MailOutbox,
    Patient,
    Reminder,
    ReminderKind,
    ReminderStatus,
)
from scheduler.services import booking, courses, mail
from scheduler.services.errors import Conflict, InvalidInput, SlotUnavailable, TooSoon
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests import icaljs
from tests.factories import make_location, make_service

LA = ZoneInfo("America/Los_Angeles")
SETTINGS = ClinicSettings()
TUESDAY = dt.date(2026, 12, 1)  # the day after the suite's fixed now (Mon 30 Nov, 08:00 in LA)


def at(day: dt.date, hour: int, minute: int = 0, plus_days: int = 0) -> dt.datetime:
    local = dt.datetime.combine(day + dt.timedelta(days=plus_days), dt.time(hour, minute))
    return local.replace(tzinfo=LA).astimezone(dt.UTC)


# Tue 1, Thu 3, Sat 5, Mon 7, Wed 9, Fri 11 December at 10:00.
STARTS = [at(TUESDAY, 10, plus_days=2 * i) for i in range(6)]


def clinic(session, *, chairs: int = 2):
    loc = make_location(session, slug="sf", chairs=chairs, rooms=0)
    make_service(session, [loc], slug="infusion", name="Infusion")
    courses.save_template(
        session,
        None,
        {
            "slug": "induction",
            "name": "IV ketamine induction",
            "service": "infusion",
            "sessions": 6,
            "min_gap_hours": 44,
            "max_gap_hours": 168,
            "within_days": 21,
            "review_after": 2,
        },
    )
    session.commit()
    return loc


def patient(n: int = 1) -> PatientDetails:
    return PatientDetails(f"Pat Patient {n}", f"+1415555{n:04d}", f"pat{n}@example.com", True)


def book(session, now, starts=STARTS, n: int = 1) -> Course:
    request = courses.CourseRequest(
        location="sf", course="induction", starts=starts, patient=patient(n)
    )
    course = courses.book_course(session, request, now=now, settings=SETTINGS)
    session.commit()
    return course


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_plan_then_book_a_whole_course(session, clock):
    loc = clinic(session)
    plan = courses.plan(session, "sf", "induction", STARTS[0], now=clock.now, settings=SETTINGS)
    assert [s.start for s in plan.sessions] == STARTS
    assert all(s.moved is None for s in plan.sessions)

    course = book(session, clock.now, [s.start for s in plan.sessions])
    visits = courses.sessions(course)
    assert [a.course_session for a in visits] == [1, 2, 3, 4, 5, 6]
    assert [a.start_at for a in visits] == STARTS
    assert len({a.resource_id for a in visits}) == 1  # the same chair throughout
    assert [a.awaiting_review for a in visits] == [False, False, True, True, True, True]
    assert course.review_state == "pending" and course.status == "active"
    assert courses.progress_label(course) == "0 of 6"
    assert courses.get_by_token(session, course.manage_token) is course
    assert courses.course_of(visits[3]) is course
    assert course.location_id == loc.id and course.sessions == 6
    # One e-mail for the whole course; reminders only for the sessions before the review.
    rows = list(session.scalars(select(MailOutbox)))
    assert [(r.kind, r.method) for r in rows] == [("course", "REQUEST")]
    reminded = set(session.scalars(select(Reminder.appointment_id)))
    assert reminded == {visits[0].id, visits[1].id}

    visits[0].status = "completed"
    visits[1].status = "checked_in"
    session.commit()
    assert courses.progress(course) == (2, 6)
    assert courses.status_of(course) == "active"
    for visit in visits[2:]:
        visit.status = "completed"
    session.commit()
    assert courses.status_of(course) == "completed" and courses.progress_label(course) == "6 of 6"


def test_a_closure_inside_the_course_moves_one_session(session, clock):
    loc = clinic(session)
    thursday = TUESDAY + dt.timedelta(days=2)
    session.add(Closure(location_id=loc.id, first_day=thursday, last_day=thursday))
    session.commit()
    plan = courses.plan(session, "sf", "induction", STARTS[0], now=clock.now, settings=SETTINGS)
    assert plan.sessions[1].start == at(TUESDAY, 10, plus_days=3)
    assert plan.sessions[1].moved == (
        "The clinic is closed on Thu 3 Dec: moved to Fri 4 Dec at 10:00."
    )


def test_booking_is_all_or_nothing_under_a_block_and_a_concurrent_booking(session, clock):
    loc = clinic(session, chairs=1)
    chair = loc.resources[0]
    block = booking.create_block(
        session,
        chair,
        STARTS[3] - dt.timedelta(hours=1),
        STARTS[3] + dt.timedelta(hours=2),
        now=clock.now,
    )
    session.commit()
    with pytest.raises(SlotUnavailable) as caught:
        book(session, clock.now)
    assert caught.value.code == "slot_unavailable"
    assert list(caught.value.fields) == ["starts[3]"]
    assert caught.value.message.startswith("Session 4 (Mon 7 Dec at 10:00)")
    session.rollback()
    session.expunge_all()  # rows booking attached as detached stay otherwise
    assert count(session, Appointment) == count(session, Course) == count(session, Patient) == 0
    assert count(session, MailOutbox) == count(session, Reminder) == 0

    booking.delete_block(session, block)
    other = booking.book(
        session,
        booking.BookingRequest(
            location="sf", service="infusion", start=STARTS[4], patient=patient(2)
        ),
        now=clock.now,
        settings=SETTINGS,
    )
    session.commit()
    other_id = other.id
    with pytest.raises(SlotUnavailable) as caught:
        book(session, clock.now)
    assert list(caught.value.fields) == ["starts[4]"]
    session.rollback()
    session.expunge_all()  # rows booking attached as detached stay otherwise
    assert session.scalars(select(Appointment.id)).all() == [other_id]


def test_starts_that_break_the_spacing_are_refused_naming_the_session(session, clock):
    clinic(session)
    starts = [*STARTS]
    starts[2] = starts[1] + dt.timedelta(hours=30)
    with pytest.raises(InvalidInput) as caught:
        book(session, clock.now, starts)
    assert set(caught.value.fields) == {"starts", "starts[2]"}
    session.rollback()
    session.expunge_all()  # rows booking attached as detached stay otherwise
    assert count(session, Appointment) == 0


def test_moving_one_session_within_and_against_the_rules(session, clock):
    clinic(session)
    course = book(session, clock.now)
    visits = courses.sessions(course)
    third = visits[2]
    uid, sequence = third.ics_uid, third.ics_sequence
    mails_before = count(session, MailOutbox)

    courses.move_session(
        session, third, STARTS[2] + dt.timedelta(hours=3), now=clock.now, settings=SETTINGS
    )
    session.commit()
    assert third.start_at == STARTS[2] + dt.timedelta(hours=3)
    assert (third.ics_uid, third.ics_sequence) == (uid, sequence + 1)
    new = list(session.scalars(select(MailOutbox).order_by(MailOutbox.id)))[mails_before:]
    assert [(m.kind, m.appointment_id, m.ics_sequence) for m in new] == [
        ("invite", third.id, sequence + 1)
    ]
    assert [a.ics_sequence for a in courses.sessions(course)] == [0, 0, 1, 0, 0, 0]

    with pytest.raises(TooSoon) as soon:
        booking.reschedule(
            session, third, STARTS[1] + dt.timedelta(hours=20), now=clock.now, settings=SETTINGS
        )
    assert soon.value.code == "too_soon" and "session 2" in soon.value.message
    session.rollback()
    with pytest.raises(courses.TooFar) as far:
        courses.move_session(
            session,
            visits[5],
            STARTS[4] + dt.timedelta(days=8),
            now=clock.now,
            settings=SETTINGS,
            by_staff=True,
        )
    assert far.value.code == "too_far" and far.value.http_status == 409
    session.rollback()


def test_cancel_the_rest_keeps_and_lists_the_late_sessions(session, clock):
    clinic(session)
    course = book(session, clock.now)
    clock.now = STARTS[0] - dt.timedelta(hours=12)  # session 1 is inside the 24 h window
    mails_before = count(session, MailOutbox)
    result = courses.cancel_rest(session, course, now=clock.now, settings=SETTINGS)
    session.commit()
    visits = courses.sessions(course)
    assert result.kept_late == [visits[0]]
    assert result.cancelled == visits[1:]
    assert [a.status for a in visits] == ["booked"] + ["cancelled"] * 5
    assert course.status == "active"  # one session stands
    new = list(session.scalars(select(MailOutbox).order_by(MailOutbox.id)))[mails_before:]
    assert [(m.kind, m.method) for m in new] == [("course", "CANCEL")]
    assert courses.progress_label(course) == "0 of 1"


def test_review_continue_plans_reminders_once_per_session(session, clock):
    clinic(session)
    course = book(session, clock.now)
    visits = courses.sessions(course)
    assert courses.reviews_due(session, [course.location_id], clock.now) == []
    clock.now = STARTS[2] - dt.timedelta(hours=47)
    assert courses.reviews_due(session, [course.location_id], clock.now) == [course]
    courses.review(session, course, "continue", now=clock.now, settings=SETTINGS)
    session.commit()
    assert course.review_state == "continued" and not any(a.awaiting_review for a in visits)
    assert courses.reviews_due(session, [course.location_id], clock.now) == []
    per_visit = session.execute(
        select(Reminder.appointment_id, Reminder.offset_minutes, func.count()).group_by(
            Reminder.appointment_id, Reminder.offset_minutes
        )
    ).all()
    assert {row[0] for row in per_visit} == {a.id for a in visits}
    assert {row[2] for row in per_visit} == {1}  # exactly one row per session and offset
    with pytest.raises(Conflict):
        courses.review(session, course, "continue", now=clock.now, settings=SETTINGS)


def test_review_stop_cancels_the_held_sessions_with_one_mail_and_one_sms(session, clock):
    clinic(session)
    course = book(session, clock.now)
    mails_before = count(session, MailOutbox)
    courses.review(session, course, "stop", now=clock.now, settings=SETTINGS)
    session.commit()
    visits = courses.sessions(course)
    assert [a.status for a in visits] == ["booked"] * 2 + ["cancelled"] * 4
    assert course.status == "stopped" and course.review_state == "stopped"
    new = list(session.scalars(select(MailOutbox).order_by(MailOutbox.id)))[mails_before:]
    assert [(m.kind, m.method) for m in new] == [("course", "CANCEL")]
    texts = list(
        session.scalars(select(Reminder).where(Reminder.kind == ReminderKind.COURSE_STOPPED))
    )
    assert len(texts) == 1 and texts[0].status == ReminderStatus.PENDING
    assert texts[0].appointment_id == visits[2].id


def _calendar_parts(row: MailOutbox) -> list[bytes]:
    raw = mail.render(row.kind, row.payload, envelope_from="a@x.example", recipient="p@x.example")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return [
        part.get_payload(decode=True)
        for part in message.walk()
        if part.get_content_type() == "text/calendar"
    ]


def test_every_session_invite_is_read_by_icaljs_at_its_instant(session, clock):
    icaljs.require()
    clinic(session)
    course = book(session, clock.now)
    visits = courses.sessions(course)
    row = session.scalars(select(MailOutbox)).one()
    parts = _calendar_parts(row)
    assert len(parts) == 6
    parsed = icaljs.parse(parts)
    for doc, visit in zip(parsed, visits, strict=True):
        assert doc["method"] == "REQUEST"
        (event,) = doc["events"]
        assert event["uid"] == visit.ics_uid and event["sequence"] == 0
        assert dt.datetime.fromisoformat(event["start"].replace("Z", "+00:00")) == visit.start_at
    assert len({v.ics_uid for v in visits}) == 6
    payload = json.loads(row.payload)
    assert [s["held"] for s in payload["mail"]["sessions"]] == [
        False,
        False,
        True,
        True,
        True,
        True,
    ]

    # A moved session: its own invite mail, same UID, SEQUENCE 1, at the new instant.
    moved_to = STARTS[2] + dt.timedelta(hours=3)
    courses.move_session(session, visits[2], moved_to, now=clock.now, settings=SETTINGS)
    session.commit()
    update = session.scalars(select(MailOutbox).where(MailOutbox.kind == "invite")).one()
    (doc,) = icaljs.parse(_calendar_parts(update)[:1])
    (event,) = doc["events"]
    assert (event["uid"], event["sequence"]) == (visits[2].ics_uid, 1)
    assert dt.datetime.fromisoformat(event["start"].replace("Z", "+00:00")) == moved_to


def test_the_demo_offers_both_courses_and_plans_them(session, clock):
    from scheduler.services import demo
    from tests.factories import HASHER

    demo.seed_demo(session, HASHER, clock.now)
    demo.seed_demo(session, HASHER, clock.now)
    session.commit()
    location = booking.get_location(session, "sf-mission")
    offered = {t.slug: t for t in courses.list_templates(session, location)}
    assert set(offered) == {"iv-ketamine-induction", "crps-5-day"}
    induction = offered["iv-ketamine-induction"]
    assert (induction.sessions, induction.min_gap_hours, induction.max_gap_hours) == (6, 44, 168)
    assert (induction.within_days, induction.review_after) == (21, 2)
    assert offered["crps-5-day"].service.duration_minutes == 240

    plan = courses.plan(
        session, "sf-mission", "iv-ketamine-induction", STARTS[0], now=clock.now, settings=SETTINGS
    )
    assert len(plan.sessions) == 6
    crps = courses.plan(
        session,
        "sf-mission",
        "crps-5-day",
        at(TUESDAY, 8, 15, plus_days=1),
        now=clock.now,
        settings=SETTINGS,
    )
    assert [f"{s.start.astimezone(LA):%a %H:%M}" for s in crps.sessions] == [
        "Wed 08:15",
        "Thu 08:15",
        "Fri 08:15",
        "Mon 08:15",
        "Tue 08:15",
    ]


def test_save_template_names_every_bad_field_and_updates_in_place(session, clock):
    clinic(session)
    with pytest.raises(InvalidInput) as caught:
        courses.save_template(
            session,
            None,
            {
                "slug": "induction",  # taken
                "name": "",
                "service": "nope",
                "sessions": "six",
                "min_gap_hours": 48,
                "max_gap_hours": 24,
                "within_days": 0,
                "weekdays": "mon,funday",
                "review_after": 0,
            },
        )
    assert set(caught.value.fields) == {
        "slug",
        "name",
        "service",
        "sessions",
        "max_gap_hours",
        "within_days",
        "weekdays",
        "review_after",
    }
    with pytest.raises(InvalidInput) as caught:
        courses.save_template(
            session,
            None,
            {
                "slug": "tight",
                "name": "Tight",
                "service": "infusion",
                "sessions": 6,
                "min_gap_hours": 72,
                "max_gap_hours": 96,
                "within_days": 14,
            },
        )
    assert set(caught.value.fields) == {"within_days"}
    template = courses.get_template(session, booking.get_location(session, "sf"), "induction")
    courses.save_template(session, template, {"weekdays": "Fri, mon ,wed", "review_after": ""})
    assert (template.weekdays, template.review_after, template.sessions) == ("mon,wed,fri", None, 6)
    assert courses.describe(template) == (
        "6 sessions, 44 hours to 7 days apart, within 21 days, on Mon/Wed/Fri"
    )


def test_a_weekday_pattern_across_spring_forward_on_the_database(session, clock):
    loc = make_location(session, slug="sf", chairs=2, rooms=0)
    make_service(session, [loc], slug="infusion", horizon_days=200)
    courses.save_template(
        session,
        None,
        {
            "slug": "mwf",
            "name": "Mon/Wed/Fri",
            "service": "infusion",
            "sessions": 6,
            "min_gap_hours": 44,
            "max_gap_hours": 96,
            "within_days": 14,
            "weekdays": "mon,wed,fri",
        },
    )
    session.commit()
    monday = dt.date(2027, 3, 8)  # the clocks go forward on Sunday 14 March
    plan = courses.plan(session, "sf", "mwf", at(monday, 10), now=clock.now, settings=SETTINGS)
    local = [s.start.astimezone(LA) for s in plan.sessions]
    assert [f"{x:%a %d %H:%M %Z}" for x in local] == [
        "Mon 08 10:00 PST",
        "Wed 10 10:00 PST",
        "Fri 12 10:00 PST",
        "Mon 15 10:00 PDT",
        "Wed 17 10:00 PDT",
        "Fri 19 10:00 PDT",
    ]
    assert plan.sessions[3].start - plan.sessions[2].start == dt.timedelta(hours=71)
    request = courses.CourseRequest(
        location="sf", course="mwf", starts=[s.start for s in plan.sessions], patient=patient()
    )
    course = courses.book_course(session, request, now=clock.now, settings=SETTINGS)
    session.commit()
    assert [a.start_at for a in courses.sessions(course)] == [s.start for s in plan.sessions]
    with pytest.raises(courses.OffPattern):
        courses.move_session(
            session,
            courses.sessions(course)[1],
            at(monday, 10, plus_days=3),  # a Thursday
            now=clock.now,
            settings=SETTINGS,
        )
    session.rollback()
