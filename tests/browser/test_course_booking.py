"""Browser: a patient books a 6-session course end to end on a 360 x 740 phone (by keyboard
where it matters), sees the plan and the course page (screenshots, axe-core), and a prescriber
records the review from the staff course page.

Screenshots go to tests/output/patient-course-*.png and desk-course-*.png for reviewers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import Course
from scheduler.services import courses
from tests.browser.conftest import LiveServer
from tests.browser.test_patient_booking import Steps, fill_details
from tests.web.staff_support import PASSWORD, make_clinic
from tests.web.test_courses_api import INDUCTION

pytestmark = pytest.mark.browser


def violations(page: Any, source: str) -> list[str]:
    """axe-core's violations on the current page, one line per rule and element."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=source)
    result = page.evaluate(
        "async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))"
    )
    return [
        f"{v['id']} ({v['impact']}): {node['target']} {node['failureSummary']}"
        for v in json.loads(result)["violations"]
        for node in v["nodes"][:3]
    ]


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A 360 x 740 page; CSP is bypassed only so that the test can inject axe-core."""
    context = browser.new_context(viewport={"width": 360, "height": 740}, bypass_csp=True)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


@pytest.fixture
def clinic(session: Any) -> Any:
    clinic = make_clinic(session)
    courses.save_template(session, None, INDUCTION)
    session.commit()
    return clinic


def test_book_a_six_session_course_on_a_phone_then_review_it(
    phone, browser, live_server: LiveServer, session, clinic, output_dir, axe_source
):
    page, base = phone, live_server.url
    steps = Steps(page, output_dir, "course")
    page.goto(f"{base}/book/sf")
    offer = page.get_by_role("link", name="Book a course: IV ketamine induction")
    offer.focus()
    page.keyboard.press("Enter")  # by keyboard
    page.get_by_role("heading", name="Choose a day").wait_for()
    assert "Course: IV ketamine induction" in page.inner_text("#course-note")
    page.get_by_role("link", name="Later month").click()  # "now" is 30 November
    page.get_by_role("link", name="Tuesday 1 December 2026").click()
    page.get_by_role("heading", name="Choose a time").wait_for()
    page.locator('a[href*="start=2026-12-01T10:00"]').click()

    page.get_by_role("heading", name="Your course plan").wait_for()
    items = page.locator("#plan > li")
    assert items.count() == 6
    assert "Session 1: Tue 1 Dec, 10:00 AM PST" in items.nth(0).inner_text()
    assert "Session 6: Fri 11 Dec, 10:00 AM PST" in items.nth(5).inner_text()
    steps.shot("plan")
    assert violations(page, axe_source) == []
    page.get_by_role("button", name="Continue with these 6 sessions").focus()
    page.keyboard.press("Enter")

    page.get_by_role("heading", name="Your details").wait_for()
    fill_details(page)
    steps.shot("details")
    assert violations(page, axe_source) == []
    page.get_by_role("button", name="Book all 6 sessions").click()
    page.get_by_role("heading", name="Your course is booked").wait_for()
    sessions = page.locator("#sessions > li")
    assert sessions.count() == 6
    assert "Held until your review" in sessions.nth(2).inner_text()
    assert "calendar invitation for each session" in page.inner_text("#booked")
    steps.shot("course-page")
    assert violations(page, axe_source) == []

    # A session's own page links back to the course.
    sessions.nth(2).get_by_role("link", name="Details of session 3").click()
    assert "Session 3 of 6" in page.inner_text("#course-link")
    assert violations(page, axe_source) == []
    page.get_by_role("link", name="See the whole course").click()
    page.get_by_role("heading", name="Your course").wait_for()

    session.rollback()
    course_id = session.scalars(select(Course.id)).one()
    session.rollback()  # end the read: the live server needs SQLite's write lock

    desk = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        staff = desk.new_page()
        staff.set_default_timeout(10_000)
        staff.goto(f"{base}/staff/sign-in")
        staff.get_by_label("E-mail").fill("prescriber@clinic.example")
        staff.get_by_label("Password").fill(PASSWORD)
        staff.get_by_role("button", name="Sign in").click()
        staff.wait_for_url(f"{base}/staff/")
        staff.goto(f"{base}/staff/courses/{course_id}")
        assert "awaiting review" in staff.inner_text("#course-state")
        assert violations(staff, axe_source) == []
        staff.get_by_label("Continue: the held sessions go ahead").check()
        staff.screenshot(path=str(output_dir / "desk-course-review.png"), full_page=True)
        staff.get_by_role("button", name="Record the review").click()
        staff.get_by_text("Review recorded: the course continues.").wait_for()
        assert "review: continued by Prescriber User" in staff.inner_text("#course-state")
    finally:
        desk.close()
    page.reload()
    assert "Held until your review" not in page.inner_text("#sessions")
    page.get_by_role("link", name="Cancel the rest of the course").click()
    page.get_by_role("heading", name="Cancel the rest of your course?").wait_for()
    assert page.locator("#to-cancel li").count() == 6
    steps.shot("cancel-rest")
    assert violations(page, axe_source) == []
