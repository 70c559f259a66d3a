"""Replies answer the text they follow: the worker sends through the real twilio client to the
local Twilio server, and the patient's replies come back as signed webhooks (both databases)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode, urlparse
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from scheduler.extensions import db
from scheduler.models import Appointment, Reminder, SmsInbound, SmsOptOut
from tests.factories import make_location, make_service
from tests.twilio_server import AUTH_TOKEN, TwilioServer

UTC = dt.UTC
LA = ZoneInfo("America/Los_Angeles")
PUBLIC = "https://book.chairside.example"
FAMILY = "+14155550123"


def la(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=LA).astimezone(UTC)  # type: ignore[misc]


@pytest.fixture
def app_config(app_config: dict[str, Any], twilio: TwilioServer) -> dict[str, Any]:
    return {**app_config, **twilio.config(), "PUBLIC_BASE_URL": PUBLIC}


@pytest.fixture
def clinic(session):
    sf = make_location(session, slug="sf", phone="+14155550100", name="San Francisco")
    oak = make_location(session, slug="oak", phone="+15105550100", name="Oakland")
    make_service(session, [sf, oak], slug="inf", name="Ketamine infusion")
    session.commit()
    return sf


def book(
    client, start: str, name: str = "Pat Patient", dob: str = "1980-01-01", location: str = "sf"
) -> dict[str, Any]:
    body = {
        "location": location,
        "service": "inf",
        "start": start,
        "patient": {
            "name": name,
            "phone": FAMILY,
            "email": "family@example.com",
            "date_of_birth": dob,
        },
        "sms_consent": True,
    }
    response = client.post("/api/v1/appointments", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def send_due(app, at: dt.datetime) -> str:
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["reminders", "send-due", "--now", at.isoformat()])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    return result.output.strip()


_sids = iter(range(1, 10_000))


def reply(client, clock, at: dt.datetime, body: str, phone: str = FAMILY) -> str:
    """A signed inbound SMS at `at`; the TwiML answer's text ('' when none)."""
    clock.now = at
    form = {
        "MessageSid": f"SMin{next(_sids):030d}",
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": "+14155550000",
        "Body": body,
    }
    path = "/webhooks/twilio/sms"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path, form)
    response = client.post(
        path,
        data=urlencode(form),
        headers={"X-Twilio-Signature": signature},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    if "<Message>" not in text:
        return ""
    return text.split("<Message>")[1].split("</Message>")[0].replace("&#x27;", "'")


def confirmed(session, *ids: int) -> list[bool]:
    session.expire_all()
    return [session.get(Appointment, i).confirmed_at is not None for i in ids]


def test_two_visits_c_after_each_reminder_confirms_thursday_then_friday(
    app, client, session, clock, twilio, clinic
):
    thu = book(client, "2026-12-03T11:00:00-08:00")
    fri = book(client, "2026-12-04T11:00:00-08:00")

    assert send_due(app, la(2026, 12, 1, 11)) == "sent=1 skipped=0 failed=0"  # Thursday's 48 h
    answer = reply(client, clock, la(2026, 12, 1, 11, 5), "C")
    assert confirmed(session, thu["id"], fri["id"]) == [True, False]
    assert "Thu 3 Dec, 11:00 AM PST" in answer and "San Francisco" in answer
    assert "ketamine" not in answer.lower()

    assert send_due(app, la(2026, 12, 2, 11)) == "sent=1 skipped=0 failed=0"  # Friday's 48 h
    answer = reply(client, clock, la(2026, 12, 2, 11, 5), "c ")
    assert confirmed(session, thu["id"], fri["id"]) == [True, True]
    assert "Fri 4 Dec, 11:00 AM PST" in answer

    inbound = session.scalars(select(SmsInbound).order_by(SmsInbound.id)).all()
    answered = [session.get(Reminder, i.reminder_id) for i in inbound]
    assert [r.appointment_id for r in answered] == [thu["id"], fri["id"]]
    assert [i.appointment_id for i in inbound] == [thu["id"], fri["id"]]
    # one number, one patient: the texts carry no name
    assert not any(m.body.startswith("Chairside Clinic: Pat") for m in twilio.messages)


def test_a_shared_phone_names_the_patient_and_c_confirms_that_patients_visit(
    app, client, session, clock, twilio, clinic
):
    ana = book(client, "2026-12-03T11:00:00-08:00", name="Ana Reyes", dob="1990-02-02")
    ben = book(client, "2026-12-04T11:00:00-08:00", name="Ben Reyes", dob="2001-03-03")
    assert ana["id"] != ben["id"]

    # Ben's reminder goes out last: a C confirms Ben's visit, not Ana's earlier one.
    assert send_due(app, la(2026, 12, 1, 11)) == "sent=1 skipped=0 failed=0"
    assert send_due(app, la(2026, 12, 2, 11)) == "sent=1 skipped=0 failed=0"
    bodies = [m.body for m in twilio.messages]
    # the short form (one segment) starts with the first name
    assert bodies[0].startswith("Ana: Thu 3 Dec, 11:00 AM PST, San Francisco. Reply C")
    assert bodies[1].startswith("Ben: Fri 4 Dec, 11:00 AM PST, San Francisco. Reply C")
    assert all(m.to == FAMILY for m in twilio.messages)

    answer = reply(client, clock, la(2026, 12, 2, 12), "C")
    assert confirmed(session, ana["id"], ben["id"]) == [False, True]
    assert "Ben's visit Fri 4 Dec, 11:00 AM PST" in answer


def test_a_shared_phone_without_a_recent_text_confirms_nobody(
    app, client, session, clock, twilio, clinic
):
    ana = book(client, "2026-12-03T11:00:00-08:00", name="Ana Reyes", dob="1990-02-02")
    ben = book(client, "2026-12-04T11:00:00-08:00", name="Ben Reyes", dob="2001-03-03")
    answer = reply(client, clock, la(2026, 11, 30, 12), "C")
    assert confirmed(session, ana["id"], ben["id"]) == [False, False]
    assert "no upcoming visit" in answer

    # a text older than the 72 h window is not what a reply answers
    assert send_due(app, la(2026, 12, 1, 11)) == "sent=1 skipped=0 failed=0"
    reply(client, clock, la(2026, 12, 1, 11) + dt.timedelta(hours=72, minutes=1), "C")
    assert confirmed(session, ana["id"], ben["id"]) == [False, False]


def test_help_and_stop_answer_the_latest_text(app, client, session, clock, twilio, clinic):
    book(client, "2026-12-03T11:00:00-08:00", location="sf")
    oak = book(client, "2026-12-04T11:00:00-08:00", location="oak")
    send_due(app, la(2026, 12, 1, 11))
    assert "+14155550100" in reply(client, clock, la(2026, 12, 1, 12), "HELP")
    send_due(app, la(2026, 12, 2, 11))
    assert "+15105550100" in reply(client, clock, la(2026, 12, 2, 12), "HELP")  # Oakland's
    assert reply(client, clock, la(2026, 12, 2, 13), "STOP") == ""
    stop = session.scalars(select(SmsInbound).where(SmsInbound.action == "opt_out")).one()
    assert session.get(Reminder, stop.reminder_id).appointment_id == oak["id"]
    assert session.scalars(select(SmsOptOut.opted_out)).one() is True
    # no more texts to that number
    assert send_due(app, la(2026, 12, 3, 9)) == "sent=0 skipped=1 failed=0"


def test_status_callbacks_update_the_text_they_name(app, client, session, clock, twilio, clinic):
    book(client, "2026-12-03T11:00:00-08:00")
    book(client, "2026-12-04T11:00:00-08:00")
    send_due(app, la(2026, 12, 1, 11))
    send_due(app, la(2026, 12, 2, 11))
    first, second = twilio.messages
    for message, status in ((second, "delivered"), (first, "undelivered")):
        callback = message.form["StatusCallback"]
        url = urlparse(callback)
        form = {"MessageSid": message.sid or "", "MessageStatus": status, "ErrorCode": "30003"}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(callback, form)
        response = client.post(
            f"{url.path}?{url.query}",
            data=urlencode(form),
            headers={"X-Twilio-Signature": signature},
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code == 204
    session.expire_all()
    rows = {r.provider_sid: r.status for r in session.scalars(select(Reminder))}
    assert rows[second.sid] == "delivered" and rows[first.sid] == "failed"
