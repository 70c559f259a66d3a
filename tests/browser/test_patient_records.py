"""Browser: "my visits" by one-time code on a 360 px phone; staff find a patient from the search
box by phone fragment and by birth date. Screenshots: tests/output/{visits,staff-search}-*.png."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import Patient
from scheduler.services import booking
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from scheduler.services.sms import SendResult
from tests.browser.test_staff_calendar import Desk
from tests.conftest import DEFAULT_NOW
from tests.web.staff_support import DAY, at, make_clinic

pytestmark = pytest.mark.browser
PHONE = "+14155550142"


class FakeSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        self.sent.append((to, body))
        return SendResult(sid=f"SM{len(self.sent)}", status="queued")


@pytest.fixture
def clinic(session: Any) -> Any:
    clinic = make_clinic(session)
    for name, dob, hour in (("Ana Diaz", "1975-01-01", 10), ("Luis Diaz", "1978-05-05", 11)):
        booking.book(
            session,
            booking.BookingRequest(
                location="sf",
                service="consult",
                start=at(DAY, hour),
                patient=PatientDetails(
                    name, PHONE, "d@example.com", True, dt.date.fromisoformat(dob)
                ),
            ),
            now=DEFAULT_NOW,
            settings=ClinicSettings(),
        )
    session.commit()
    return clinic


def test_my_visits_by_one_time_code_on_a_phone(page, live_app, live_server, clinic, output_dir):
    sms = FakeSms()
    live_app.extensions["chairside_sms"] = sms
    page.goto(f"{live_server.url}/my-visits")
    page.screenshot(path=str(output_dir / "visits-1-phone.png"), full_page=True)
    page.get_by_label("Mobile number").fill("(415) 555-0142")
    page.get_by_role("button", name="Text me a code").click()
    page.get_by_role("heading", name="Enter your code").wait_for()
    code = re.search(r"\b(\d{6})\b", sms.sent[-1][1]).group(1)  # type: ignore[union-attr]
    page.get_by_label("Code").fill(code)
    page.screenshot(path=str(output_dir / "visits-2-code.png"), full_page=True)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Who are you?").wait_for()
    page.get_by_label("Luis Diaz").check()
    page.get_by_label("Your date of birth").fill("1978-05-05")
    page.screenshot(path=str(output_dir / "visits-3-who.png"), full_page=True)
    page.get_by_role("button", name="Show my visits").click()
    page.get_by_role("heading", name="Your upcoming visits").wait_for()
    page.screenshot(path=str(output_dir / "visits-4-list.png"), full_page=True)
    assert "Tue 1 Dec, 11:00 AM PST" in page.inner_text("#visits")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.get_by_role("link", name="Change or cancel").click()
    page.wait_for_url(re.compile(r"/a/"))


def test_staff_find_a_patient_by_phone_fragment_and_birth_date(
    browser, live_server, session, clinic, output_dir
):
    email = clinic.users["front_desk"].email
    session.rollback()  # a read holds SQLite's write lock until it ends
    desk = Desk(browser, live_server.url, output_dir)
    try:
        desk.sign_in(email)
        box = desk.page.get_by_placeholder("Find a patient")
        box.fill("555-0142")
        box.press("Enter")
        desk.page.locator("#patient-results").wait_for()
        assert desk.page.locator("#patient-results tbody tr").count() == 2
        desk.shot("search-phone")
        desk.page.get_by_placeholder("Find a patient").fill("1978-05-05")
        desk.page.get_by_placeholder("Find a patient").press("Enter")
        desk.page.locator("#patient-results").wait_for()
        rows = desk.page.locator("#patient-results tbody tr")
        assert rows.count() == 1 and "Luis Diaz" in rows.inner_text()
        desk.shot("search-birth-date")
        desk.page.get_by_role("link", name="Luis Diaz").click()
        desk.page.get_by_role("heading", name=re.compile("Luis Diaz")).wait_for()
        assert "1978-05-05" in desk.page.inner_text("#patient-details")
        desk.shot("patient-record")
        luis = session.scalars(select(Patient.id).where(Patient.name == "Luis Diaz")).one()
        session.rollback()
        assert desk.page.url.endswith(f"/staff/patients/{luis}")
    finally:
        desk.context.close()
