"""Browser: the details step of a service that needs an escort, on a 360 px phone: the escort's
name and mobile are asked, a missing escort is an error tied to its field, and the confirmation
shows the pre-visit instructions and who takes the patient home (screenshots)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import Appointment
from tests.browser.test_patient_booking import Steps, fill_details
from tests.factories import make_location, make_service


@pytest.fixture
def clinic(session: Any) -> None:
    location = make_location(session, slug="sf", name="San Francisco", phone="+14155550100")
    location.address = "500 Mission St, San Francisco, CA 94105"
    service = make_service(session, [location], slug="infusion", name="Infusion (40 minutes)")
    service.escort_required = True
    service.fasting_hours = 4
    service.arrive_early_minutes = 30
    service.no_driving = True
    session.commit()


def test_the_details_step_asks_for_the_escort_at_360_px(
    page, live_server, session, clinic, output_dir
):
    steps = Steps(page, output_dir, "escort")
    page.goto(live_server.url + "/book/sf/infusion/details?start=2026-12-01T10:00")
    assert page.viewport_size["width"] == 360
    page.get_by_role("group", name="Who will take you home?").wait_for()
    steps.shot("details")

    fill_details(page)
    page.get_by_label("Escort's name").fill("")
    page.get_by_label("Escort's mobile").fill("")
    page.get_by_role("button", name="Book this appointment").click()
    page.get_by_role("alert").wait_for()
    assert "Enter your escort's name." in page.inner_text("#escort_name-error")
    assert "escort_name-error" in (page.get_attribute("#escort_name", "aria-describedby") or "")
    steps.shot("escort-missing")

    page.get_by_label("Escort's name").fill("Sam Driver")
    page.get_by_label("Escort's mobile").fill("415 555 01")  # too short
    page.get_by_role("button", name="Book this appointment").click()
    page.get_by_role("alert").wait_for()
    assert "valid mobile number for your escort" in page.inner_text("#escort_phone-error")
    # what the patient typed is kept
    assert page.input_value("#escort_name") == "Sam Driver"
    steps.shot("escort-phone-error")

    page.get_by_label("Escort's mobile").fill("(415) 555-0188")
    page.get_by_role("button", name="Book this appointment").click()
    page.get_by_role("heading", name="You're booked").wait_for()
    main = page.inner_text("main")
    assert "Nothing to eat for 4 hours before your visit." in main
    assert "Please arrive 30 minutes early." in main
    assert "Sam Driver: we text them when you are ready." in main
    steps.shot("booked")

    session.expire_all()
    appt = session.scalars(select(Appointment)).one()
    assert (appt.escort_name, appt.escort_phone) == ("Sam Driver", "+14155550188")
    session.rollback()
