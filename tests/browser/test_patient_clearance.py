"""Browser: an uncleared patient is led to a consultation; Back after booking books nothing twice.

Debian's Chromium through Playwright, on the demo clinic (its infusions need clearance).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import Appointment
from scheduler.services.demo import seed_demo
from tests.browser.test_patient_booking import Steps, fill_details
from tests.conftest import DEFAULT_NOW
from tests.factories import HASHER


@pytest.fixture
def demo(session: Any) -> None:
    seed_demo(session, HASHER, DEFAULT_NOW)
    session.commit()


def booked(session: Any) -> int:
    session.expire_all()
    try:
        return session.scalar(select(func.count()).select_from(Appointment))
    finally:
        session.rollback()


def choose_first_time(page: Any, service: str) -> None:
    page.get_by_role("link", name="San Francisco – Mission").click()
    page.get_by_role("link", name=service).click()
    page.get_by_role("link", name="Later month").click()
    page.get_by_role("link", name=re.compile("^Tuesday 1 December 2026")).click()
    page.get_by_role("heading", name="Afternoon").wait_for()
    page.get_by_role("link", name=re.compile("^Tue 1 Dec, ")).first.click()


def test_an_uncleared_patient_is_led_to_a_consultation(
    page, live_server, session, demo, output_dir
):
    steps = Steps(page, output_dir, "clearance")
    page.goto(live_server.url + "/")
    choose_first_time(page, "Infusion (40 minutes)")
    fill_details(page)
    steps.shot("details")
    page.get_by_role("button", name="Book this appointment").click()
    page.get_by_role("heading", name="A consultation comes first").wait_for()
    steps.shot("consultation-first")
    assert "nothing has been booked" in page.inner_text("main")
    assert booked(session) == 0
    page.get_by_role("link", name="Book initial consultation").click()
    page.wait_for_url(re.compile(r"/book/sf-mission/initial-consultation$"))
    assert page.get_by_role("link", name="Later month").is_visible()
    steps.shot("consultation-calendar")


def test_back_after_booking_shows_no_resubmission_and_books_nothing_twice(
    page, live_server, session, demo, output_dir
):
    steps = Steps(page, output_dir, "back")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(live_server.url + "/")
    choose_first_time(page, "Initial consultation")
    fill_details(page)
    page.get_by_role("button", name="Book this appointment").click()
    page.get_by_role("heading", name="You're booked").wait_for()
    steps.shot("booked")
    confirmation = page.url
    page.go_back()
    page.get_by_role("heading", name="Your details").wait_for()
    steps.shot("back")
    assert dialogs == [] and booked(session) == 1
    page.go_forward()
    assert page.url == confirmation
    page.go_back()
    page.reload()  # a reload of the page Back shows is a GET: nothing is sent again
    page.get_by_role("heading", name="Your details").wait_for()
    assert dialogs == [] and booked(session) == 1
    # The time shown again is the patient's own visit now: the page offers others instead.
    assert "no longer available" in page.inner_text("main")
    assert page.get_by_role("button", name="Book this appointment").count() == 0
    steps.shot("back-reloaded")
    assert booked(session) == 1
