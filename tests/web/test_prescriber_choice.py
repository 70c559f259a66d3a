"""A patient's chosen prescriber (issue 11): chosen when booking, kept when the visit moves;
a visit booked for "any prescriber" moves to whoever is free. On both databases."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import Appointment, Clinician, Resource
from tests.factories import patient_json
from tests.test_staffing_support import rota
from tests.web.staff_support import DAY, LA, at, csrf_token, make_clinic, sign_in
from tests.web.test_patient_pages import PATIENT, csrf_from, text_of

LATER = DAY + dt.timedelta(days=1)  # outside every late-change window from the suite's "now"


@pytest.fixture
def clinic(session):
    """Two prescribers at SF: the morning one (08:00-12:00) and the all-day one (08:00-18:00)."""
    clinic = make_clinic(session)
    (morning,), _ = rota(session, clinic.sf, nurses=0, hours=(dt.time(8), dt.time(12)))
    (all_day,), _ = rota(session, clinic.sf, nurses=2, hours=(dt.time(8), dt.time(18)))
    morning.name, all_day.name = "Dr Morning", "Dr Allday"
    session.commit()
    return clinic, morning, all_day


def _book(client, start: dt.datetime, n: int, **extra: Any) -> Any:
    body = {
        "location": "sf",
        "service": "consult",
        "start": start.astimezone(LA).isoformat(),
        "patient": patient_json(n),
        **extra,
    }
    r = client.post("/api/v1/appointments", json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def _move(client, token: str, start: dt.datetime) -> Any:
    body = {"start": start.astimezone(LA).isoformat()}
    return client.post(f"/api/v1/manage/{token}/reschedule", json=body)


def test_a_move_keeps_the_chosen_prescriber_or_is_refused(client, session, clinic):
    _, morning, _ = clinic
    booked = _book(client, at(LATER, 9), 1, clinician=morning.id)
    assert booked["clinician"]["id"] == morning.id
    refused = _move(client, booked["manage_token"], at(LATER, 14))  # only Dr Allday then
    assert refused.status_code == 409, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "slot_unavailable" and "Dr Morning" in error["message"]
    assert error["fields"] == {"start": "the chosen prescriber is not free then"}
    shown = client.get(f"/api/v1/manage/{booked['manage_token']}").get_json()
    assert shown["start"] == booked["start"] and shown["clinician"]["id"] == morning.id
    moved = _move(client, booked["manage_token"], at(LATER, 11))
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json()["clinician"] == {"id": morning.id, "name": "Dr Morning"}
    assert moved.get_json()["clinician_chosen"] is True
    session.expire_all()
    assert session.get(Appointment, booked["id"]).clinician_chosen is True


def test_a_visit_for_any_prescriber_moves_to_whoever_is_free(client, session, clinic):
    _, morning, all_day = clinic
    booked = _book(client, at(LATER, 9), 2)
    assert booked["clinician"]["id"] in (morning.id, all_day.id)
    moved = _move(client, booked["manage_token"], at(LATER, 14))
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json()["clinician"]["id"] == all_day.id
    assert moved.get_json()["clinician_chosen"] is False
    session.expire_all()
    assert session.get(Appointment, booked["id"]).clinician_chosen is False


def test_a_move_to_a_time_the_chosen_prescriber_sees_someone_else_is_refused(
    client, session, clinic
):
    _, morning, all_day = clinic
    session.add(Resource(location_id=clinic[0].sf.id, name="Room 2", kind="room", position=9))
    session.commit()
    mine = _book(client, at(LATER, 9), 3, clinician=morning.id)
    _book(client, at(LATER, 11), 4, clinician=morning.id)
    refused = _move(client, mine["manage_token"], at(LATER, 11))  # a room is free, she is not
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "slot_unavailable"
    other = _book(client, at(LATER, 10), 5, clinician=all_day.id)
    assert _move(client, other["manage_token"], at(LATER, 11)).status_code == 200


# --- the patient pages ----------------------------------------------------------------------------


def _times(client, url: str) -> list[str]:
    """The times a day page offers, as its links' local start values."""
    return re.findall(r"start=(\d{4}-\d\d-\d\dT\d\d%3A\d\d|[\dT:-]{16})", client.get(url).text)


def test_the_booking_pages_offer_any_or_one_prescriber_and_book_them(client, session, clinic):
    _, morning, all_day = clinic
    page = client.get("/book/sf/consult")
    assert page.status_code == 200
    html = page.text
    assert "<legend>Who would you like to see?</legend>" in html
    assert re.search(r'id="clinician-any" value="" checked', html)
    assert f'id="clinician-{morning.id}"' in html and f'id="clinician-{all_day.id}"' in html
    assert "prescriber-choice" not in client.get("/book/sf/infusion").text
    day = LATER.isoformat()
    anyone = _times(client, f"/book/sf/consult/{day}")
    hers = _times(client, f"/book/sf/consult/{day}?clinician={morning.id}")
    assert hers and set(hers) < set(anyone)
    assert max(hers).endswith("11:00") and max(anyone).endswith("17:00")
    days = client.get(f"/book/sf/consult?clinician={morning.id}&month=2026-12").text
    assert f"/book/sf/consult/{day}?clinician={morning.id}" in days
    assert "with Dr Morning" in text_of(
        client.get(f"/book/sf/consult/{day}?clinician={morning.id}")
    )
    url = f"/book/sf/consult/details?start={day}T10:00&clinician={morning.id}"
    form = client.get(url).text
    assert f'name="clinician" value="{morning.id}"' in form and "with Dr Morning" in form
    token = csrf_from(client, url)
    data = {"csrf_token": token, "start": f"{day}T10:00", "clinician": str(morning.id), **PATIENT}
    response = client.post("/book/sf/consult/details", data=data)
    assert response.status_code == 303, text_of(response)
    session.expire_all()
    appt = session.scalars(select(Appointment)).one()
    assert (appt.clinician_id, appt.clinician_chosen) == (morning.id, True)
    page_text = text_of(client.get(response.headers["Location"]))
    assert "With Dr Morning (your choice: a new time is with them too)" in page_text


@pytest.mark.parametrize("who", ["unknown", "nurse", "text", "infusion"])
def test_a_prescriber_the_patient_cannot_choose_is_a_404(client, session, clinic, who):
    c, morning, _ = clinic
    nurse = next(x for x in session.scalars(select(Clinician)) if x.role == "nurse")
    service, clinician = {
        "unknown": ("consult", "999999"),
        "nurse": ("consult", str(nurse.id)),
        "text": ("consult", "x1"),
        "infusion": ("infusion", str(morning.id)),
    }[who]
    day = LATER.isoformat()
    for url in (
        f"/book/sf/{service}?clinician={clinician}",
        f"/book/sf/{service}/{day}?clinician={clinician}",
        f"/book/sf/{service}/details?start={day}T10:00&clinician={clinician}",
    ):
        assert client.get(url).status_code == 404, url


def test_the_move_pages_offer_and_accept_only_the_chosen_prescribers_times(client, session, clinic):
    _, morning, _ = clinic
    chosen = _book(client, at(LATER, 9), 1, clinician=morning.id)["manage_token"]
    anyone = _book(client, at(LATER, 8), 2)["manage_token"]
    day = LATER.isoformat()
    kept = _times(client, f"/a/{chosen}/reschedule/{day}")
    free = _times(client, f"/a/{anyone}/reschedule/{day}")
    assert kept and max(kept).endswith("11:00") and max(free).endswith("17:00")
    assert "Only times Dr Morning is free are shown" in text_of(
        client.get(f"/a/{chosen}/reschedule/{day}")
    )
    url = f"/a/{chosen}/reschedule/confirm?start={day}T14:00"
    page = client.get(url)
    assert "Sorry, that time is no longer available." in text_of(page)
    others = re.findall(r'name="start" id="start-\d+" value="([^"]+)"', page.text)
    assert others and all(v[11:] < "12:00" for v in others)
    token = csrf_from(client, f"/a/{chosen}/reschedule/confirm?start={day}T10:30")
    refused = client.post(
        f"/a/{chosen}/reschedule/confirm", data={"csrf_token": token, "start": f"{day}T14:00"}
    )
    assert refused.status_code == 409
    assert "not free with Dr Morning" in text_of(refused)
    moved = client.post(
        f"/a/{chosen}/reschedule/confirm", data={"csrf_token": token, "start": f"{day}T10:30"}
    )
    assert moved.status_code == 303


# --- the staff booking form -----------------------------------------------------------------------


def test_the_front_desk_books_a_chosen_prescriber_and_sees_only_their_times(
    client, session, clinic
):
    c, morning, all_day = clinic
    assert sign_in(client, c.users["front_desk"].email).status_code == 302
    day = LATER.isoformat()
    page = client.get(f"/staff/sf/book?service=consult&date={day}&clinician={morning.id}")
    html = page.text
    assert html.count('<option value="">Any prescriber</option>') == 2  # finding and booking
    assert f'<option value="{morning.id}" selected>Dr Morning</option>' in html
    times = re.findall(r'data-time="(\d\d:\d\d)"', html)
    assert times and max(times) == "11:00"
    assert f"clinician={morning.id}" in html and f'data-clinician="{morning.id}"' in html
    anyone = re.findall(
        r'data-time="(\d\d:\d\d)"', client.get(f"/staff/sf/book?service=consult&date={day}").text
    )
    assert max(anyone) == "17:00"
    form = {
        "csrf_token": csrf_token(html),
        "service": "consult",
        "date": day,
        "name": "Phone Caller",
        "phone": "(415) 555-0133",
        "date_of_birth": "1980-04-02",
        "clinician": str(morning.id),
    }
    refused = client.post("/staff/sf/book", data={**form, "time": "14:00"})
    assert refused.status_code == 409
    nearest = re.findall(r'id="nearest".*', refused.text, re.S)
    assert nearest and max(re.findall(r'data-time="(\d\d:\d\d)"', nearest[0])) <= "11:00"
    bad = client.post("/staff/sf/book", data={**form, "time": "10:00", "clinician": "x"})
    assert bad.status_code == 422 and "Choose a prescriber from the list." in bad.text
    booked = client.post("/staff/sf/book", data={**form, "time": "10:00"})
    assert booked.status_code == 303, text_of(booked)
    assert "with Dr Morning at" in text_of(client.get(booked.headers["Location"]))  # flashed
    session.expire_all()
    appt = session.scalars(select(Appointment)).one()
    assert (appt.clinician_id, appt.clinician_chosen) == (morning.id, True)
    session.rollback()
    visit = text_of(client.get(f"/staff/appointments/{appt.id}"))
    assert "Dr Morning (chosen at booking: a move keeps them)" in visit
