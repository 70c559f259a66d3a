"""Patient pages and patients as people: birth date, clearance first, the cancel policy."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import Appointment, Patient
from tests.factories import make_location, make_service
from tests.web.test_patient_pages import PATIENT, csrf_from, text_of


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": True}


@pytest.fixture
def clinic(session: Any) -> None:
    sf = make_location(session, slug="sf", name="SF Mission", phone="+14155550100")
    make_service(session, [sf], slug="infusion", name="Infusion", requires_clearance=True)
    make_service(session, [sf], slug="plain", name="Plain visit")
    make_service(
        session,
        [sf],
        slug="consult",
        name="Initial consultation",
        kind="consultation",
        resource_kind="room",
        duration=60,
        prep=0,
        recovery=0,
    )
    session.commit()


def post_details(client, service: str, start: str, **changes: str):
    token = csrf_from(client, f"/book/sf/{service}/details?start={start}")
    data = {"csrf_token": token, "start": start, **PATIENT, **changes}
    return client.post(f"/book/sf/{service}/details", data=data)


def count(session, model) -> int:
    session.expire_all()
    n = session.scalar(select(func.count()).select_from(model))
    session.rollback()
    return n


@pytest.mark.parametrize(
    ("dob", "says"),
    [
        ("", "Enter your date of birth."),
        ("1980-02-30", "Enter your date of birth, like 1980-04-02."),
        ("2030-01-01", "Is in the future."),
        ("1850-01-01", "Is before 1900."),
        ("2015-01-01", "Patients must be at least 18."),
    ],
    ids=["missing", "no-such-day", "future", "before-1900", "under-age"],
)
def test_the_details_step_asks_for_a_believable_birth_date(client, session, clinic, dob, says):
    r = post_details(client, "plain", "2026-12-01T10:00", date_of_birth=dob, name="")
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert 'id="date_of_birth-error"' in html and says in text_of(r)
    assert 'id="name-error"' in html  # every problem is named at once
    assert count(session, Appointment) == 0


def test_an_uncleared_patient_is_offered_the_consultation_not_an_error(client, session, clinic):
    r = post_details(client, "infusion", "2026-12-01T10:00")
    page = text_of(r)
    assert "A consultation comes first" in page
    assert "nothing has been booked" in page
    assert 'href="/book/sf/consult"' in r.get_data(as_text=True)
    assert count(session, Appointment) == 0
    # The consultation books; the patient is then known with their birth date.
    r = post_details(client, "consult", "2026-12-01T10:00")
    assert r.status_code == 303
    session.expire_all()
    assert session.scalars(select(Patient.date_of_birth)).one().isoformat() == "1980-04-02"


def test_the_cancel_policy_is_shown_before_booking_and_a_late_booking_says_so(
    client, session, clinic
):
    far = text_of(client.get("/book/sf/plain/details?start=2026-12-03T10:00"))
    assert "You can cancel or change online until 24 hours before your appointment" in far
    near = text_of(client.get("/book/sf/plain/details?start=2026-11-30T14:00"))
    assert "This time is less than 24 hours away." in near
    assert "cannot be cancelled or changed online" in near and "(415) 555-0100" in near


def test_services_that_need_clearance_say_so_up_front(client, clinic):
    page = text_of(client.get("/book/sf"))
    assert "A consultation with a prescriber, who clears you for treatment." in page
