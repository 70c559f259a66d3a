"""Twilio webhooks through HTTP: signatures (behind a proxy too), keywords, status callbacks."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from scheduler.models import Appointment, Reminder, ReminderStatus, SmsInbound, SmsOptOut
from scheduler.services import booking
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service

TOKEN = "webhook-test-auth-token"
PUBLIC = "https://book.chairside.example"  # what Twilio calls; the test client uses localhost
PHONE = "+14155550123"
START = dt.datetime(2026, 12, 3, 19, 0, tzinfo=dt.UTC)  # Thu 11:00 in Los Angeles


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **app_config,
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM_NUMBER": "+14155550000",
        "PUBLIC_BASE_URL": PUBLIC,
        "WTF_CSRF_ENABLED": True,  # the webhooks must be exempt from CSRF
    }


@pytest.fixture
def appt(session, clock) -> Appointment:
    loc = make_location(session, slug="sf", phone="+14155550100")
    make_service(session, [loc], slug="inf")
    session.commit()
    appointment = booking.book(
        session,
        booking.BookingRequest(
            "sf", "inf", START, PatientDetails("Pat Patient", PHONE, "pat@example.com", True)
        ),
        now=clock.now,
        settings=ClinicSettings(),
    )
    session.commit()
    return appointment


def sign(path: str, form: dict[str, str], token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(PUBLIC + path, form)


def post(client, path: str, form: dict[str, str], signature: str | None = None):
    headers = {"X-Twilio-Signature": signature if signature is not None else sign(path, form)}
    return client.post(
        path,
        data=urlencode(form),
        headers=headers,
        content_type="application/x-www-form-urlencoded",
    )


def sms(body: str, sid: str = "SM" + "a" * 32, phone: str = PHONE) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "AccountSid": "AC" + "1" * 32,
        "From": phone,
        "To": "+14155550000",
        "Body": body,
        "NumMedia": "0",
    }


def test_signed_stop_opts_the_number_out_and_replies_nothing(client, session, appt):
    response = post(client, "/webhooks/twilio/sms", sms("STOP"))
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert "<Message>" not in response.get_data(as_text=True)
    row = session.scalars(select(SmsOptOut)).one()
    assert (row.phone, row.opted_out, row.keyword) == (PHONE, True, "STOP")


def test_forged_signature_is_refused_and_changes_nothing(client, session, appt):
    form = sms("STOP")
    forged = sign("/webhooks/twilio/sms", form, token="not-the-token")
    assert post(client, "/webhooks/twilio/sms", form, forged).status_code == 403
    tampered = dict(form, Body="C")  # signed STOP, body swapped
    signature = sign("/webhooks/twilio/sms", form)
    assert post(client, "/webhooks/twilio/sms", tampered, signature).status_code == 403
    assert post(client, "/webhooks/twilio/sms", form, "").status_code == 403
    session.expire_all()
    assert session.scalars(select(SmsOptOut)).all() == []
    assert session.scalars(select(SmsInbound)).all() == []
    assert session.get(Appointment, appt.id).confirmed_at is None


def test_signature_for_the_internal_url_is_refused(client, appt):
    # Behind a proxy Flask sees http://localhost/...; Twilio signs the public URL.
    form = sms("C")
    internal = RequestValidator(TOKEN).compute_signature(
        "http://localhost/webhooks/twilio/sms", form
    )
    assert post(client, "/webhooks/twilio/sms", form, internal).status_code == 403


def test_without_an_auth_token_every_webhook_is_refused(app, client, appt):
    app.config["TWILIO_AUTH_TOKEN"] = ""
    assert post(client, "/webhooks/twilio/sms", sms("C")).status_code == 403


def test_c_confirms_the_next_visit_and_replies_in_twiml(client, session, appt):
    response = post(client, "/webhooks/twilio/sms", sms(" c "))
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "<Response><Message>" in text and "confirmed" in text
    assert "Thu 3 Dec, 11:00 AM PST" in text
    session.expire_all()
    assert session.get(Appointment, appt.id).confirmed_at is not None


def test_redelivered_message_is_applied_once(client, session, appt):
    assert post(client, "/webhooks/twilio/sms", sms("C")).status_code == 200
    again = post(client, "/webhooks/twilio/sms", sms("C"))
    assert again.status_code == 200 and "<Message>" not in again.get_data(as_text=True)
    assert len(session.scalars(select(SmsInbound)).all()) == 1


def test_help_answers_with_the_clinic_phone(client, appt):
    text = post(client, "/webhooks/twilio/sms", sms("help")).get_data(as_text=True)
    assert "+14155550100" in text and "CANCEL" not in text.upper()


def test_start_resumes_after_stop(client, session, appt):
    post(client, "/webhooks/twilio/sms", sms("STOP", sid="SM1"))
    post(client, "/webhooks/twilio/sms", sms("START", sid="SM2"))
    session.expire_all()
    assert session.scalars(select(SmsOptOut.opted_out)).one() is False


def test_twilio_opt_out_type_is_honoured(client, session, appt):
    form = dict(sms("arret"), OptOutType="STOP")  # a localized opt-out word
    assert post(client, "/webhooks/twilio/sms", form).status_code == 200
    assert session.scalars(select(SmsOptOut.opted_out)).one() is True


def test_missing_fields_are_a_400_not_a_500(client, appt):
    form = {"Body": "C"}
    assert post(client, "/webhooks/twilio/sms", form).status_code == 400


def _sent_reminder(session, appt, sid="SMout1") -> Reminder:
    row = session.scalars(
        select(Reminder).where(Reminder.appointment_id == appt.id).order_by(Reminder.id)
    ).first()
    row.status, row.provider_sid, row.provider_status = ReminderStatus.SENT, sid, "queued"
    session.commit()
    return row


def status_form(status: str, sid: str = "SMout1", code: str = "") -> dict[str, str]:
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "1" * 32}
    if code:
        form["ErrorCode"] = code
    return form


def test_status_callbacks_tolerate_out_of_order_and_duplicates(client, session, appt):
    row = _sent_reminder(session, appt)
    path = f"/webhooks/twilio/status?r={row.id}"
    for status in ("sent", "delivered", "sent", "delivered", "queued"):
        assert post(client, path, status_form(status)).status_code == 204
    session.expire_all()
    row = session.get(Reminder, row.id)
    assert (row.status, row.provider_status) == ("delivered", "delivered")
    assert row.delivered_at is not None


def test_status_callback_records_undelivered_with_its_error(client, session, appt):
    row = _sent_reminder(session, appt)
    path = f"/webhooks/twilio/status?r={row.id}"
    assert post(client, path, status_form("undelivered", code="30003")).status_code == 204
    session.expire_all()
    row = session.get(Reminder, row.id)
    assert (row.status, row.error_code) == ("failed", "30003")


def test_status_callback_signature_covers_the_query_string(client, session, appt):
    row = _sent_reminder(session, appt)
    form = status_form("delivered")
    signed_for_other = sign(f"/webhooks/twilio/status?r={row.id + 1}", form)
    response = post(client, f"/webhooks/twilio/status?r={row.id}", form, signed_for_other)
    assert response.status_code == 403
    session.expire_all()
    assert session.get(Reminder, row.id).status == "sent"


def test_status_for_an_unknown_message_is_accepted_and_ignored(client, appt):
    assert (
        post(client, "/webhooks/twilio/status", status_form("delivered", sid="SMx")).status_code
        == 204
    )
