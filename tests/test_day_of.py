"""The day of the visit through HTTP and the worker: escorts (booking, flags, the "ready" text
once, STOP honoured), instructions and the day-before text whose YES confirms the ride (both
databases; texts go through the real twilio client to the local Twilio server)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import icalendar
import pytest
from sqlalchemy import select

from scheduler.models import Appointment, Reminder, Service, SmsOptOut
from tests import icaljs
from tests.factories import make_location, make_service, make_staff
from tests.test_sms_reply_flow import PUBLIC, la, reply, send_due
from tests.twilio_server import TwilioServer
from tests.web.staff_support import csrf_token, sign_in

PATIENT = "+14155550123"
ESCORT = "+14155550188"
THU = "2026-12-03T11:00:00-08:00"


@pytest.fixture
def app_config(app_config: dict[str, Any], twilio: TwilioServer) -> dict[str, Any]:
    return {**app_config, **twilio.config(), "PUBLIC_BASE_URL": PUBLIC}


@pytest.fixture
def clinic(session):
    sf = make_location(session, slug="sf", phone="+14155550100", name="San Francisco")
    sf.address = "500 Mission St, San Francisco"
    oak = make_location(session, slug="oak", phone="+15105550100", name="Oakland")
    service = make_service(session, [sf, oak], slug="inf", name="Ketamine infusion")
    service.escort_required = True
    service.fasting_hours = 4
    service.arrive_early_minutes = 30
    service.no_driving = True
    make_service(session, [sf], slug="consult", name="Consultation", kind="consultation")
    _, token = make_staff(session, role="nurse", locations=[sf])
    _, other = make_staff(session, role="nurse", locations=[oak])
    session.commit()
    return {"sf": sf, "token": token, "other": other}


def book(client, escort: dict[str, str] | None = None, start: str = THU, service: str = "inf"):
    body: dict[str, Any] = {
        "location": "sf",
        "service": service,
        "start": start,
        "patient": {"name": "Pat Patient", "phone": PATIENT, "email": "pat@example.com"},
        "sms_consent": True,
    }
    if escort is not None:
        body["escort"] = escort
    return client.post("/api/v1/appointments", json=body)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_services_say_whether_an_escort_is_needed_and_give_instructions(client, clinic):
    services = {s["slug"]: s for s in client.get("/api/v1/locations/sf/services").get_json()}
    assert services["inf"]["escort_required"] is True
    assert services["inf"]["instructions"] == {
        "fasting_hours": 4,
        "arrive_early_minutes": 30,
        "no_driving": True,
    }
    assert services["consult"]["escort_required"] is False


@pytest.mark.parametrize(
    ("escort", "field"),
    [
        ({"name": "Sam Driver", "phone": "12"}, "escort.phone"),
        ({"name": "", "phone": "+14155550188"}, "escort.name"),
    ],
    ids=["bad-phone", "no-name"],
)
def test_a_bad_escort_is_a_422_naming_the_field(client, clinic, escort, field):
    response = book(client, escort)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_the_api_books_without_an_escort_and_flags_it_missing(client, session, clinic):
    missing = book(client)
    assert missing.status_code == 201
    assert missing.get_json()["escort_missing"] is True and "escort" not in missing.get_json()
    given = book(
        client, {"name": "Sam Driver", "phone": "(415) 555-0188"}, start=THU[:11] + "13:00:00-08:00"
    )
    assert given.status_code == 201, given.get_json()
    assert given.get_json()["escort"] == {"name": "Sam Driver", "phone": ESCORT}
    assert given.get_json()["escort_missing"] is False
    day = client.get(
        "/api/v1/locations/sf/calendar?date=2026-12-03", headers=auth(clinic["token"])
    ).get_json()
    flags = {a["id"]: a["escort_missing"] for r in day["resources"] for a in r["appointments"]}
    assert flags == {missing.get_json()["id"]: True, given.get_json()["id"]: False}


def test_staff_pages_flag_a_missing_escort_and_the_ready_button_texts_once(
    app, client, session, clock, twilio, clinic
):
    make_staff(session, role="nurse", locations=[clinic["sf"]], email="desk@clinic.example")
    session.commit()
    missing = book(client).get_json()
    given = book(
        client, {"name": "Sam Driver", "phone": ESCORT}, start="2026-12-03T13:00:00-08:00"
    ).get_json()
    assert sign_in(client, "desk@clinic.example").status_code == 302
    day = client.get("/staff/sf/calendar?date=2026-12-03").get_data(as_text=True)
    assert day.count('data-testid="escort-missing"') == 1
    sheet = client.get("/staff/sf/day-sheet?date=2026-12-03").get_data(as_text=True)
    assert sheet.count('data-testid="escort-missing"') == 1
    assert "Sam Driver (ride not confirmed)" in sheet
    page = client.get(f"/staff/appointments/{missing['id']}").get_data(as_text=True)
    assert "Missing" in page and 'id="ready"' not in page
    page = client.get(f"/staff/appointments/{given['id']}").get_data(as_text=True)
    assert "Sam Driver, +14155550188" in page and "not confirmed" in page
    # Not checked in yet: no button, and a press is refused naming the status.
    assert 'id="ready"' not in page and 'data-testid="ready-later"' in page
    refused = client.post(
        f"/staff/appointments/{given['id']}/ready", data={"csrf_token": csrf_token(page)}
    )
    assert refused.status_code == 409
    assert "not checked in (the visit is booked)" in refused.get_data(as_text=True)
    checked_in = client.post(
        f"/staff/appointments/{given['id']}/status",
        data={"status": "checked_in", "csrf_token": csrf_token(page)},
    )
    assert checked_in.status_code == 303
    page = client.get(f"/staff/appointments/{given['id']}").get_data(as_text=True)
    assert 'id="ready"' in page
    for _ in range(2):
        response = client.post(
            f"/staff/appointments/{given['id']}/ready", data={"csrf_token": csrf_token(page)}
        )
        assert response.status_code == 303
        page = client.get(f"/staff/appointments/{given['id']}").get_data(as_text=True)
        assert 'data-testid="escort-notified"' in page and 'id="ready"' not in page
    assert send_due(app, clock.now) == "sent=1 skipped=0 failed=0"
    assert [m.to for m in twilio.messages] == [ESCORT]


def test_ready_texts_the_escort_once_with_the_address_and_no_treatment(
    app, client, session, clock, twilio, clinic
):
    appt = book(client, {"name": "Sam Driver", "phone": ESCORT}).get_json()
    url = f"/api/v1/appointments/{appt['id']}/ready"
    assert client.post(url).status_code == 401
    assert client.post(url, headers=auth(clinic["other"])).status_code == 403
    assert (
        client.post("/api/v1/appointments/999999/ready", headers=auth(clinic["token"])).status_code
        == 404
    )
    early = client.post(url, headers=auth(clinic["token"]))
    assert early.status_code == 409
    assert early.get_json()["error"]["fields"] == {"status": "is booked, not checked_in"}
    status = f"/api/v1/appointments/{appt['id']}/status"
    checked_in = client.post(status, json={"status": "checked_in"}, headers=auth(clinic["token"]))
    assert checked_in.status_code == 200
    first = client.post(url, headers=auth(clinic["token"]))
    assert first.status_code == 200 and first.get_json()["already_sent"] is False
    again = client.post(url, headers=auth(clinic["token"]))
    assert again.status_code == 200 and again.get_json()["already_sent"] is True

    assert send_due(app, clock.now) == "sent=1 skipped=0 failed=0"
    assert send_due(app, clock.now + dt.timedelta(minutes=5)) == "sent=0 skipped=0 failed=0"
    (text,) = twilio.messages
    assert text.to == ESCORT
    assert "Pat is ready to be picked up at San Francisco, 500 Mission St" in text.body
    assert "ketamine" not in text.body.lower() and "infusion" not in text.body.lower()
    assert text.form["StatusCallback"].endswith(
        f"?r={session.scalars(select(Reminder.id).where(Reminder.to_phone == ESCORT)).one()}"
    )

    # the escort's C is not taken as a confirmation of anything
    answer = reply(client, clock, clock.now + dt.timedelta(minutes=10), "C", phone=ESCORT)
    assert "no upcoming visit" in answer
    session.expire_all()
    assert session.get(Appointment, appt["id"]).confirmed_at is None


def test_an_escorts_stop_is_honoured(app, client, session, clock, twilio, clinic):
    one = book(client, {"name": "Sam Driver", "phone": ESCORT}).get_json()
    two = book(
        client, {"name": "Sam Driver", "phone": ESCORT}, start="2026-12-05T11:00:00-08:00"
    ).get_json()
    assert (
        client.post(
            f"/api/v1/appointments/{one['id']}/status",
            json={"status": "checked_in"},
            headers=auth(clinic["token"]),
        ).status_code
        == 200
    )
    # pressed, then STOP arrives before the worker sends: nothing goes out
    assert (
        client.post(
            f"/api/v1/appointments/{one['id']}/ready", headers=auth(clinic["token"])
        ).status_code
        == 200
    )
    reply(client, clock, clock.now, "STOP", phone=ESCORT)
    assert session.scalars(select(SmsOptOut.phone).where(SmsOptOut.opted_out)).all() == [ESCORT]
    assert send_due(app, clock.now) == "sent=0 skipped=1 failed=0"
    assert twilio.messages == []
    # a later visit with the same escort: refused up front
    refused = client.post(f"/api/v1/appointments/{two['id']}/ready", headers=auth(clinic["token"]))
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "escort_opted_out"
    # the patient's own reminders still go (those of the visit not yet checked in)
    assert send_due(app, la(2026, 12, 3, 11)) == "sent=1 skipped=0 failed=0"
    assert twilio.messages[0].to == PATIENT


def test_yes_to_the_day_before_text_confirms_the_visit_and_the_ride(
    app, client, session, clock, twilio, clinic
):
    appt = book(client, {"name": "Sam Driver", "phone": ESCORT}).get_json()
    kinds = session.scalars(
        select(Reminder.kind).where(Reminder.appointment_id == appt["id"]).order_by(Reminder.due_at)
    ).all()
    assert kinds == ["reminder", "day_before", "reminder"]  # 48 h, 24 h, 2 h

    # C to the 48 h reminder confirms the visit only
    send_due(app, la(2026, 12, 1, 11))
    reply(client, clock, la(2026, 12, 1, 12), "C")
    session.expire_all()
    visit = session.get(Appointment, appt["id"])
    assert visit.confirmed_at is not None and visit.ride_confirmed_at is None

    assert send_due(app, la(2026, 12, 2, 11)) == "sent=1 skipped=0 failed=0"
    text = twilio.messages[-1].body
    assert "Thu 3 Dec, 11:00 AM PST" in text
    assert "Nothing to eat for 4 h before" in text and "arrive 30 min early" in text
    assert "No driving until the next day" in text and "Reply YES" in text
    assert "ketamine" not in text.lower() and "infusion" not in text.lower()

    answer = reply(client, clock, la(2026, 12, 2, 12), "YES")
    assert "Thu 3 Dec, 11:00 AM PST" in answer and "ride home too" in answer
    session.expire_all()
    assert session.get(Appointment, appt["id"]).ride_confirmed_at == la(2026, 12, 2, 12)
    got = client.get(f"/api/v1/manage/{appt['manage_token']}").get_json()
    assert got["ride_confirmed"] is True


def test_the_details_step_asks_for_the_escort_and_requires_one(client, session, clinic):
    start = "2026-12-03T11:00"
    page = client.get(f"/book/sf/inf/details?start={start}").get_data(as_text=True)
    assert 'name="escort_name"' in page and 'name="escort_phone"' in page
    patient = {
        "name": "Pat Patient",
        "phone": "(415) 555-0123",
        "email": "pat@example.com",
        "date_of_birth": "1980-01-01",
    }
    base = {"csrf_token": csrf_token(page), "start": start, "sms_consent": "1", **patient}
    refused = client.post("/book/sf/inf/details", data=base)
    assert refused.status_code == 422
    assert 'id="escort_name-error"' in refused.get_data(as_text=True)
    bad = client.post(
        "/book/sf/inf/details", data={**base, "escort_name": "Sam", "escort_phone": "12"}
    )
    assert bad.status_code == 422 and 'id="escort_phone-error"' in bad.get_data(as_text=True)
    booked = client.post(
        "/book/sf/inf/details",
        data={**base, "escort_name": "Sam Driver", "escort_phone": "415 555 0188"},
    )
    assert booked.status_code == 303
    appt = session.scalars(select(Appointment)).one()
    assert (appt.escort_name, appt.escort_phone) == ("Sam Driver", ESCORT)


def test_instructions_on_the_confirmation_page_and_in_the_invite(client, clinic):
    appt = book(client, {"name": "Sam Driver", "phone": ESCORT}).get_json()
    page = client.get(f"/a/{appt['manage_token']}").get_data(as_text=True)
    for line in (
        "Nothing to eat for 4 hours before your visit.",
        "Please arrive 30 minutes early.",
        "Do not drive until the next day",
        "Sam Driver: we text them when you are ready.",
    ):
        assert line in page
    ics = client.get(f"/api/v1/manage/{appt['manage_token']}/invite.ics").get_data()
    event = icalendar.Calendar.from_ical(ics).walk("VEVENT")[0]
    described = str(event["DESCRIPTION"])
    assert "Before you come:\n- Nothing to eat for 4 hours before your visit." in described
    (parsed,) = icaljs.parse([ics])
    assert parsed["events"][0]["description"] == described
    assert "Please arrive 30 minutes early." in parsed["events"][0]["description"]
    assert "ketamine" not in str(event["SUMMARY"]).lower()


def test_settings_page_edits_the_escort_flag_and_instructions(client, session, clinic):
    make_staff(session, role="admin", email="admin@clinic.example")
    session.commit()
    sign_in(client, "admin@clinic.example")
    service = session.scalars(select(Service).where(Service.slug == "consult")).one()
    url = f"/staff/settings/services/{service.slug}"
    page = client.get(url).get_data(as_text=True)
    assert 'name="escort_required"' in page and 'name="fasting_hours"' in page
    form = dict(re.findall(r'<input name="(\w+)" value="([^"]*)"', page))
    form.update(
        csrf_token=csrf_token(page),
        name=service.name,
        kind="consultation",
        resource_kind="room",
        locations=str(clinic["sf"].id),
        active="on",
        escort_required="on",
        fasting_hours="6",
        arrive_early_minutes="",
    )
    assert client.post(url, data=form).status_code == 303
    session.expire_all()
    assert (service.escort_required, service.fasting_hours, service.arrive_early_minutes) == (
        True,
        6,
        0,
    )
    assert service.no_driving is False
    form.update(csrf_token=csrf_token(client.get(url).get_data(as_text=True)), fasting_hours="x")
    assert client.post(url, data=form).status_code == 422


def test_a_service_with_instructions_but_no_ride_asks_yes_for_the_visit_only(
    app, client, session, clock, twilio, clinic
):
    consult = session.scalars(select(Service).where(Service.slug == "consult")).one()
    consult.fasting_hours = 2
    session.commit()
    appt = book(client, service="consult").get_json()
    assert send_due(app, la(2026, 12, 1, 11)) == "sent=1 skipped=0 failed=0"  # 48 h
    assert send_due(app, la(2026, 12, 2, 11)) == "sent=1 skipped=0 failed=0"  # day before
    text = twilio.messages[-1].body
    assert "Nothing to eat for 2 h before" in text and "Reply YES to confirm your visit." in text
    assert "ride" not in text
    answer = reply(client, clock, la(2026, 12, 2, 12), "YES")
    assert "ride" not in answer
    session.expire_all()
    visit = session.get(Appointment, appt["id"])
    assert visit.confirmed_at is not None and visit.ride_confirmed_at is None
