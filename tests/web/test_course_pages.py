"""Treatment courses on the patient pages: offered beside single visits, the plan from a first
time, booking every session at once, the course page (move one, cancel the rest), refusals
shown in place; and on the staff pages (templates, progress, review)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import Appointment, Course
from scheduler.services import booking, courses
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.web.staff_support import DAY, at, make_clinic, sign_in
from tests.web.test_courses_api import INDUCTION

PATIENT = {
    "name": "Robin Example",
    "phone": "(415) 555-0123",
    "email": "robin@example.com",
    "date_of_birth": "1980-04-02",
    "sms_consent": "1",
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FIRST = "2026-12-01T10:00"  # Tue 1 Dec, 10:00 in San Francisco
PLAN_URL = f"/book/sf/infusion/course/induction?start={FIRST}"
DETAILS = "/book/sf/infusion/course/induction/details"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": True}


def setup(session: Any) -> Any:
    clinic = make_clinic(session)
    courses.save_template(session, None, INDUCTION)
    session.commit()
    return clinic


def text_of(response: Any) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


def csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token"
    return match.group(1)


def starts_of(html: str) -> list[str]:
    return re.findall(r'name="starts" value="([^"]+)"', html)


def book_through_pages(client: Any, starts: list[str] | None = None, resend: bool = False) -> Any:
    page = client.get(DETAILS, query_string={"starts": starts or planned(client)})
    assert page.status_code == 200, page.status_code
    html = page.get_data(as_text=True)
    data = {
        **PATIENT,
        "csrf_token": csrf(html),
        "submission": re.search(r'name="submission" value="([^"]+)"', html).group(1),  # type: ignore[union-attr]
        "starts": starts_of(html),
    }
    first = client.post(DETAILS, data=data)
    if resend:  # a double click: the same form again finds the first booking
        again = client.post(DETAILS, data=data)
        assert again.status_code == 303 and again.headers["Location"] == first.headers["Location"]
    return first


def planned(client: Any) -> list[str]:
    plan = client.get(PLAN_URL)
    assert plan.status_code == 200, text_of(plan)
    return starts_of(plan.get_data(as_text=True))


def test_a_course_is_offered_planned_booked_and_managed(client, session, clock):
    setup(session)
    services = client.get("/book/sf")
    assert "Book a course: IV ketamine induction" in text_of(services)
    days = client.get("/book/sf/infusion?course=induction")
    assert days.status_code == 200 and "Choose the time of your first visit" in text_of(days)
    assert "course=induction" in days.get_data(as_text=True)
    times = client.get("/book/sf/infusion/2026-12-01?course=induction")
    assert f"/book/sf/infusion/course/induction?start={FIRST}" in times.get_data(as_text=True)
    assert client.get("/book/sf/infusion?course=nope").status_code == 404

    plan = client.get(PLAN_URL)
    words = text_of(plan)
    assert plan.status_code == 200
    assert "Session 1 : Tue 1 Dec, 10:00 AM PST" in words
    assert "Session 6 : Fri 11 Dec, 10:00 AM PST" in words
    assert words.count("Held for you until your clinician reviews") == 4
    starts = starts_of(plan.get_data(as_text=True))
    assert starts == [f"2026-12-{d:02d}T10:00" for d in (1, 3, 5, 7, 9, 11)]

    booked = book_through_pages(client, starts, resend=True)
    assert booked.status_code == 303, text_of(booked)
    course = session.scalars(select(Course)).one()
    assert booked.headers["Location"].endswith(f"/a/{course.manage_token}")
    page = client.get(booked.headers["Location"])
    words = text_of(page)
    assert "Your course is booked" in words and "robin@example.com" in words
    assert "calendar invitation for each session" in words
    assert words.count("Held until your review") == 4 and "0 of 6" in words
    assert session.scalar(select(func.count()).select_from(Appointment)) == 6

    # A session's own page says where it sits and links back to the course.
    third = courses.sessions(course)[2]
    one = text_of(client.get(f"/a/{third.manage_token}"))
    assert "Session 3 of 6" in one and "See the whole course" in one
    assert "held for you until your clinician reviews" in one

    days = text_of(client.get(f"/a/{third.manage_token}/reschedule"))
    assert "Session 3 of 6 of your course (6 sessions, 44 hours to 7 days apart" in days
    # Moving session 2 against the rules: too soon after session 1 is refused in place.
    second = courses.sessions(course)[1]
    url = f"/a/{second.manage_token}/reschedule/confirm"
    token = csrf(client.get(f"{url}?start=2026-12-02T10:00").get_data(as_text=True))
    refused = client.post(url, data={"start": "2026-12-02T10:00", "csrf_token": token})
    assert refused.status_code == 409
    assert "at least 44 hours after session 1" in text_of(refused)
    too_far = client.post(url, data={"start": "2026-12-09T11:00", "csrf_token": token})
    assert too_far.status_code == 409
    assert "at most 7 days after session 1" in text_of(too_far)
    moved = client.post(url, data={"start": "2026-12-03T11:00", "csrf_token": token})
    assert moved.status_code == 303
    session.expire_all()
    assert second.start_at == at(dt.date(2026, 12, 3), 11)

    # Cancel the rest, with session 1 inside the late window kept and listed.
    clock.now = at(DAY, 9)  # one hour before session 1
    confirm = client.get(f"/a/{course.manage_token}/cancel-rest")
    words = text_of(confirm)
    assert confirm.status_code == 200 and "These are kept" in words
    assert "Session 1: Tue 1 Dec, 10:00 AM PST" in words
    done = client.post(
        f"/a/{course.manage_token}/cancel-rest",
        data={"csrf_token": csrf(confirm.get_data(as_text=True))},
    )
    assert done.status_code == 303
    after = text_of(client.get(done.headers["Location"]))
    assert "The rest of your course is cancelled" in after
    assert after.count("Cancelled") >= 5 and "Too close to change online" in after
    session.expire_all()
    assert [a.status for a in courses.sessions(course)] == ["booked"] + ["cancelled"] * 5


def test_refusals_are_shown_in_place(client, session, clock):
    clinic = setup(session)
    starts = planned(client)
    # Another patient takes every chair at session 4's time: 409 naming session 4.
    taken = at(dt.date(2026, 12, 7), 10)
    for n in range(4):
        booking.book(
            session,
            booking.BookingRequest(
                location="sf",
                service="infusion",
                start=taken,
                patient=PatientDetails(f"Other {n}", f"+1415556{n:04d}", f"o{n}@example.com"),
                source="staff",
            ),
            now=clock.now,
            settings=ClinicSettings(),
        )
    session.commit()
    # A fresh plan moves session 4 and says why.
    replanned = text_of(client.get(PLAN_URL))
    assert "Nothing is free at 10:00 on Mon 7 Dec: moved to" in replanned
    refused = book_through_pages(client, starts)
    words = text_of(refused)
    assert refused.status_code == 409, words
    assert "Session 4" in words and "see the plan again" in words
    assert session.scalar(select(func.count()).select_from(Course)) == 0

    # Spacing broken (sessions 1 and 2 a day apart): 422 naming the session, nothing booked.
    spaced = [starts[0], "2026-12-02T10:00", *starts[2:]]
    refused = book_through_pages(client, spaced)
    assert refused.status_code == 422 and "Session 2" in text_of(refused)
    # The details themselves: the birth date is asked as for a single visit.
    page = client.get(DETAILS, query_string={"starts": starts})
    html = page.get_data(as_text=True)
    data = {**PATIENT, "date_of_birth": "", "csrf_token": csrf(html), "starts": starts}
    missing = client.post(DETAILS, data=data)
    assert missing.status_code == 422 and "Date of birth" in text_of(missing)
    # No plan from a time that is not free; a start that is not a time at all.
    no_plan = client.get("/book/sf/infusion/course/induction?start=2026-12-01T10:05")
    assert no_plan.status_code == 409 and "Choose another time" in text_of(no_plan)
    assert client.get("/book/sf/infusion/course/induction?start=junk").status_code == 400
    assert client.get(DETAILS, query_string={"starts": ["junk"]}).status_code == 400
    assert clinic.sf.slug == "sf"


def book_course(session: Any, clock: Any, n: int = 1) -> Course:
    course = courses.book_course(
        session,
        courses.CourseRequest(
            location="sf",
            course="induction",
            starts=[at(DAY, 10) + dt.timedelta(days=2 * i) for i in range(6)],
            patient=PatientDetails(f"Course Patient {n}", f"+1415557{n:04d}", f"c{n}@example.com"),
            source="staff",
        ),
        now=clock.now,
        settings=ClinicSettings(),
    )
    session.commit()
    return course


def test_staff_edit_templates_see_progress_and_record_the_review(client, session, clock):
    clinic = setup(session)
    sign_in(client, "admin@clinic.example")
    listed = client.get("/staff/settings/courses")
    assert listed.status_code == 200 and "IV ketamine induction" in text_of(listed)
    assert "review after session 2" in text_of(listed)
    new = client.get("/staff/settings/courses/new")
    form = {
        "csrf_token": csrf(new.get_data(as_text=True)),
        "slug": "crps-5",
        "name": "CRPS 5-day",
        "service": "infusion",
        "sessions": "5",
        "min_gap_hours": "20",
        "max_gap_hours": "96",
        "within_days": "7",
        "weekdays": "consecutive_weekdays",
        "review_after": "",
        "active": "on",
    }
    bad = client.post("/staff/settings/courses/new", data={**form, "max_gap_hours": "2"})
    assert bad.status_code == 422 and "must be at least the minimum gap" in text_of(bad)
    # A control character: the form again, the field marked and the rest as typed (no NUL).
    nul = client.post("/staff/settings/courses/new", data={**form, "name": "CRPS\x005-day"})
    page = nul.get_data(as_text=True)
    assert nul.status_code == 422 and "\x00" not in page
    assert 'value="CRPS5-day"' in page and 'value="crps-5"' in page
    assert "contains a control character" in text_of(nul)
    assert "crps-5" not in {t.slug for t in courses.all_templates(session)}
    made = client.post("/staff/settings/courses/new", data=form)
    assert made.status_code == 303 and made.headers["Location"].endswith("/courses/crps-5")
    edit = client.get("/staff/settings/courses/crps-5")
    assert "consecutive_weekdays" in edit.get_data(as_text=True)
    saved = client.post(
        "/staff/settings/courses/crps-5",
        data={**form, "csrf_token": csrf(edit.get_data(as_text=True)), "sessions": "6"},
    )
    assert saved.status_code == 303
    nul = client.post(
        "/staff/settings/courses/crps-5",
        data={**form, "csrf_token": csrf(edit.get_data(as_text=True)), "within_days": "7\x01"},
    )
    assert nul.status_code == 422 and 'value="CRPS 5-day"' in nul.get_data(as_text=True)
    crps = courses.get_template(session, clinic.sf, "crps-5")
    session.refresh(crps)
    assert crps.sessions == 6 and crps.weekdays == "consecutive_weekdays"

    course = book_course(session, clock)
    first, third = courses.sessions(course)[0], courses.sessions(course)[2]
    cal = text_of(client.get("/staff/sf/calendar?date=2026-12-01"))
    assert "Session 1 of 6" in cal
    cal = text_of(client.get("/staff/sf/calendar?date=2026-12-05"))
    assert "Session 3 of 6 · awaiting review" in cal
    record = text_of(client.get(f"/staff/patients/{course.patient_id}"))
    assert "IV ketamine induction" in record and "0 of 6" in record
    assert "Course reviews due" not in text_of(client.get("/staff/"))
    clock.now = at(dt.date(2026, 12, 3), 11)  # 46 hours before session 3, review still open
    home = text_of(client.get("/staff/"))
    assert "Course reviews due" in home and "Course Patient 1" in home
    assert "Course reviews due" in text_of(client.get("/staff/sf/calendar?date=2026-12-03"))

    visit = client.get(f"/staff/appointments/{third.id}")
    words = text_of(visit)
    assert "Session 3 of 6" in words and "awaiting review" in words
    assert "Record the review" in words
    token = csrf(visit.get_data(as_text=True))
    client.post("/staff/sign-out", data={"csrf_token": token})
    sign_in(client, "front_desk@clinic.example")
    front = client.get(f"/staff/appointments/{first.id}")
    assert "Record the review" not in text_of(front)
    refused = client.post(
        f"/staff/courses/{course.id}/review",
        data={"decision": "stop", "csrf_token": csrf(front.get_data(as_text=True))},
    )
    assert refused.status_code == 403
    client.post("/staff/sign-out", data={"csrf_token": csrf(front.get_data(as_text=True))})
    sign_in(client, "prescriber@clinic.example")
    visit = client.get(f"/staff/appointments/{third.id}")
    token = csrf(visit.get_data(as_text=True))
    junk = client.post(
        f"/staff/courses/{course.id}/review", data={"decision": "maybe", "csrf_token": token}
    )
    assert junk.status_code == 422 and "continue or stop" in text_of(junk)
    stopped = client.post(
        f"/staff/courses/{course.id}/review",
        data={"decision": "stop", "csrf_token": token, "appointment": str(third.id)},
    )
    assert stopped.status_code == 303
    assert stopped.headers["Location"].endswith(f"/staff/appointments/{third.id}")
    page = text_of(client.get(f"/staff/courses/{course.id}"))
    assert "review: stopped by Prescriber User" in page and "Record the review" not in page
    session.expire_all()
    assert [a.status for a in courses.sessions(course)] == ["booked"] * 2 + ["cancelled"] * 4
    again = client.post(
        f"/staff/courses/{course.id}/review", data={"decision": "stop", "csrf_token": token}
    )
    assert again.status_code == 409


def test_moving_a_session_offers_only_times_that_keep_the_course_rules(client, session, clock):
    setup(session)
    course = book_course(session, clock)  # Tue 1, Thu 3, Sat 5 ... Dec at 10:00
    second = courses.sessions(course)[1]
    token = second.manage_token
    rule = courses.move_rule(session, second)
    assert rule is not None

    def keeps(value: str) -> bool:
        local = dt.datetime.fromisoformat(value)
        return rule.keeps(at(local.date(), local.hour, local.minute))

    # 44 h after session 1 (Tue 22:00) to 44 h before session 3 (Thu 12:00): only Thursday.
    url = f"/a/{token}/reschedule/confirm"
    for start in ("2026-12-02T10:00", "2026-11-30T10:00", "2026-12-08T10:00"):
        page = client.get(url, query_string={"start": start})
        html = page.get_data(as_text=True)
        offered = re.findall(r'name="start" id="start-\d+" value="([^"]+)"', html)
        assert offered and all(keeps(v) for v in offered), (start, offered)
        assert "session 1" in text_of(page) or "session 3" in text_of(page)
        refused = client.post(url, data={"start": start, "csrf_token": csrf(html)})
        assert refused.status_code == 409
        offered = re.findall(
            r'name="start" id="start-\d+" value="([^"]+)"', refused.get_data(as_text=True)
        )
        assert offered and all(keeps(v) for v in offered), (start, offered)
        assert all(v.startswith("2026-12-03T") for v in offered)
    days = client.get(f"/a/{token}/reschedule", query_string={"month": "2026-12"})
    linked = re.findall(rf"/a/{token}/reschedule/(\d{{4}}-\d\d-\d\d)", days.get_data(as_text=True))
    assert set(linked) == {"2026-12-03"}
    free = client.get(f"/a/{token}/reschedule/2026-12-03").get_data(as_text=True)
    times = re.findall(r"reschedule/confirm\?start=([0-9T:-]+)", free)
    assert times and all(keeps(v) for v in times)
    empty = client.get(f"/a/{token}/reschedule/2026-12-02").get_data(as_text=True)
    assert "reschedule/confirm?start=" not in empty
