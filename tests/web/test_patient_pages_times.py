"""Patient pages: the day picker's first free time, when the patient can leave (recovery
included), and the clinic's phone in the footer."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import Appointment, Clearance, Closure
from scheduler.services import booking, patients
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service
from tests.web.test_patient_pages import book, csrf_from, text_of

FOOTER = re.compile(r'<p id="clinic-phone">(.*?)</p>', re.S)


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "CLINIC_PHONE": "+14155550199"}


@pytest.fixture
def clinic(session: Any) -> dict[str, Any]:
    sf = make_location(session, slug="sf", name="SF Mission", phone="+14155550100")
    ny = make_location(session, slug="ny", name="NY Flatiron", phone="")
    # 40 minutes in the chair, then 10 of recovery: a 9:15 start leaves at 10:05, not 9:55.
    infusion = make_service(session, [sf, ny], slug="infusion", name="Infusion", recovery=10)
    spaced = make_service(
        session,
        [sf],
        slug="spaced",
        name="Spaced infusion",
        min_gap_hours=20,
        requires_clearance=True,
    )
    session.commit()
    return {"sf": sf, "ny": ny, "infusion": infusion, "spaced": spaced}


def footer(response: Any) -> str:
    match = FOOTER.search(response.get_data(as_text=True))
    assert match, "the page has no clinic phone footer"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def test_the_day_picker_opens_on_the_first_month_with_openings_and_its_first_free_time(
    client, session, clinic
):
    # Closed from today (30 Nov) to the end of December: the picker opens on January.
    session.add(
        Closure(
            location_id=clinic["sf"].id,
            first_day=dt.date(2026, 11, 30),
            last_day=dt.date(2026, 12, 31),
        )
    )
    session.commit()
    html = client.get("/book/sf/infusion").get_data(as_text=True)
    assert "January 2027" in html and "November 2026" not in html
    assert 'href="/book/sf/infusion/2027-01-01"' in html
    first = re.search(r'id="first-free">First free: <a href="([^"]+)">([^<]+)</a>', html)
    assert first, html
    assert first.group(1) == "/book/sf/infusion/details?start=2027-01-01T09:10"
    assert first.group(2) == "Fri 1 Jan, 9:10 AM PST"
    assert "(leave by about 10:00 AM)" in html
    # The link leads straight to the details step for that time.
    details = client.get(first.group(1))
    assert details.status_code == 200
    assert "Fri 1 Jan, 9:10 AM PST" in text_of(details)
    # A month chosen by the patient has no "first free" line.
    later = client.get("/book/sf/infusion?month=2027-01").get_data(as_text=True)
    assert 'id="first-free"' not in later


def test_the_first_free_time_is_today_when_today_has_openings(client, clinic):
    # Now is 8:00 AM PST on 30 Nov with an hour's notice, and 10 minutes of preparation after 9:00 opening: 9:10.
    html = client.get("/book/sf/infusion").get_data(as_text=True)
    assert "November 2026" in html
    assert 'href="/book/sf/infusion/details?start=2026-11-30T09:10">Mon 30 Nov, 9:10 AM PST' in html


def test_the_time_list_says_when_the_patient_can_leave_recovery_included(client, clinic):
    html = client.get("/book/sf/infusion/2026-12-01").get_data(as_text=True)
    # The link's name holds its visible words in order (axe: label-content-name-mismatch).
    assert 'aria-label="Tue 1 Dec, 9:15 AM, leave by about 10:05 AM PST"' in html
    assert '9:15 AM <span class="leave">leave by about 10:05 AM</span>' in html
    assert "leave by about 9:55 AM" not in html  # the infusion's end, before recovery


def test_the_appointment_page_says_when_to_leave_recovery_included(client, session, clinic):
    appt = book(session, dt.datetime(2026, 12, 1, 17, 15, tzinfo=dt.UTC))
    page = text_of(client.get(f"/a/{appt.manage_token}"))
    assert "Tue 1 Dec, 9:15 AM PST – leave by about 10:05 AM PST (recovery included)" in page
    assert "until 9:55" not in page


def test_the_footer_shows_the_clinic_phone(client, clinic):
    # A location's own number where the page has one; else the clinic's (CLINIC_PHONE).
    assert footer(client.get("/book/sf")) == "Need help? Call the clinic on (415) 555-0100 ."
    assert footer(client.get("/book/ny")) == "Need help? Call the clinic on (415) 555-0199 ."
    assert footer(client.get("/")) == "Need help? Call the clinic on (415) 555-0199 ."
    assert 'href="tel:+14155550199"' in client.get("/my-visits").get_data(as_text=True)


def test_without_a_clinic_phone_the_footer_still_says_to_call(app, client, clinic):
    app.config["CLINIC_PHONE"] = ""  # the default
    assert footer(client.get("/")) == "Need help? Call the clinic."
    assert footer(client.get("/book/sf")) == "Need help? Call the clinic on (415) 555-0100 ."


ROBIN = PatientDetails(
    "Robin Example", "+14155550123", "robin@example.com", False, dt.date(1980, 4, 2)
)


def _book_spaced(session: Any, start: dt.datetime) -> Appointment:
    appt = booking.book(
        session,
        booking.BookingRequest(location="sf", service="spaced", start=start, patient=ROBIN),
        now=dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC),
        settings=ClinicSettings(),
    )
    session.commit()
    return appt


@pytest.mark.parametrize(
    ("new_start", "says"),
    [
        ("2026-12-01T15:00", "these visits need at least 20 hours between them"),
        ("2026-12-10T10:00", "needs a prescriber's clearance first"),
    ],
    ids=["too-soon", "clearance-ends-before"],
)
def test_a_patient_move_the_rules_refuse_is_a_page_not_an_error(
    client, session, clinic, new_start, says
):
    # Cleared until 5 Dec; visits on 1 and 3 Dec need 20 hours between them.
    patient = patients.find_or_create(session, ROBIN, dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
    session.add(
        Clearance(
            patient_id=patient.id,
            service_id=clinic["spaced"].id,
            until=dt.date(2026, 12, 5),
            recorded_by_name="Dr Test",
        )
    )
    session.commit()
    _book_spaced(session, dt.datetime(2026, 12, 1, 17, 15, tzinfo=dt.UTC))
    second = _book_spaced(session, dt.datetime(2026, 12, 3, 17, 15, tzinfo=dt.UTC))
    assert second.patient_id == patient.id
    url = f"/a/{second.manage_token}/reschedule/confirm"
    token = csrf_from(client, f"{url}?start={new_start}")
    response = client.post(url, data={"csrf_token": token, "start": new_start})
    assert response.status_code == 409
    assert says in unescape(text_of(response))
    session.rollback()
    assert session.get(Appointment, second.id).start_at == dt.datetime(
        2026, 12, 3, 17, 15, tzinfo=dt.UTC
    )


def test_an_online_booking_too_soon_after_another_visit_says_so(client, session, clinic):
    patient = patients.find_or_create(session, ROBIN, dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
    session.add(
        Clearance(
            patient_id=patient.id,
            service_id=clinic["spaced"].id,
            until=dt.date(2026, 12, 31),
            recorded_by_name="Dr Test",
        )
    )
    session.commit()
    _book_spaced(session, dt.datetime(2026, 12, 1, 17, 15, tzinfo=dt.UTC))
    start = "2026-12-01T15:00"
    token = csrf_from(client, f"/book/sf/spaced/details?start={start}")
    form = {
        "csrf_token": token,
        "start": start,
        "name": "robin  EXAMPLE",  # the same person, typed differently
        "phone": "(415) 555-0123",
        "email": "robin@example.com",
        "date_of_birth": "1980-04-02",
    }
    response = client.post("/book/sf/spaced/details", data=form)
    assert response.status_code == 422
    assert "these visits need at least 20 hours between them" in text_of(response)
    session.rollback()
    assert len(session.scalars(select(Appointment)).all()) == 1
