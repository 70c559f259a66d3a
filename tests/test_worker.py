"""The reminder worker end to end: the JSON API books, `reminders send-due --now` sends through the
real twilio client to a local Twilio-speaking server that records every request."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from scheduler import jobs
from scheduler.extensions import db
from scheduler.models import Reminder
from scheduler.services import reminders, sms_replies
from tests.factories import make_location, make_service
from tests.twilio_server import AUTH_TOKEN, TwilioServer

UTC = dt.UTC
LA = ZoneInfo("America/Los_Angeles")
PUBLIC = "https://book.chairside.example"


def la(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=LA).astimezone(UTC)  # type: ignore[misc]


@pytest.fixture
def app_config(app_config: dict[str, Any], twilio: TwilioServer) -> dict[str, Any]:
    return {**app_config, **twilio.config(), "PUBLIC_BASE_URL": PUBLIC}


@pytest.fixture
def clinic(session):
    loc = make_location(session, slug="sf", phone="+14155550100", name="San Francisco – Mission")
    make_service(session, [loc], slug="inf", name="Ketamine infusion")
    session.commit()
    return loc


def book(client, start: str, phone: str = "+14155550123", consent: bool = True) -> dict[str, Any]:
    body = {
        "location": "sf",
        "service": "inf",
        "start": start,
        "patient": {"name": "Pat Patient", "phone": phone, "email": "pat@example.com"},
        "sms_consent": consent,
    }
    response = client.post("/api/v1/appointments", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def send_due(app, at: dt.datetime) -> str:
    """`flask reminders send-due --now AT`, as an operator would run it."""
    db.session.commit()  # no transaction of the test's own may hold SQLite's lock
    result = app.test_cli_runner().invoke(args=["reminders", "send-due", "--now", at.isoformat()])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    return result.output.strip()


def planned(session, appointment_id: int) -> list[tuple[dt.datetime, str]]:
    session.expire_all()
    rows = session.scalars(
        select(Reminder).where(Reminder.appointment_id == appointment_id).order_by(Reminder.due_at)
    )
    return [(r.due_at, r.status) for r in rows]


SECOND = dt.timedelta(seconds=1)


def test_booking_sends_exactly_one_sms_at_each_planned_instant(
    app, client, session, twilio, clinic
):
    appt = book(client, "2026-12-03T11:00:00-08:00")
    due = [la(2026, 12, 1, 11), la(2026, 12, 3, 9)]
    assert planned(session, appt["id"]) == [(due[0], "pending"), (due[1], "pending")]

    assert send_due(app, due[0] - SECOND) == "sent=0 skipped=0 failed=0"
    assert send_due(app, due[0]) == "sent=1 skipped=0 failed=0"
    assert send_due(app, due[0]) == "sent=0 skipped=0 failed=0"
    assert send_due(app, due[1] - SECOND) == "sent=0 skipped=0 failed=0"
    assert send_due(app, due[1]) == "sent=1 skipped=0 failed=0"
    assert send_due(app, due[1] + dt.timedelta(minutes=30)) == "sent=0 skipped=0 failed=0"

    messages = twilio.messages
    assert len(messages) == len(twilio.requests) == 2
    first = messages[0]
    assert first.to == "+14155550123" and first.form["From"] == "+14155550000"
    # the full text would take 163 characters: the short form keeps it to one segment
    assert first.body == (
        "Thu 3 Dec, 11:00 AM PST, San Francisco - Mission. "
        f"Reply C to confirm. {appt['manage_url']}"
    )
    assert reminders.is_gsm7(first.body) and reminders.segments(first.body) == 1
    assert "ketamine" not in first.body.lower() and "CANCEL" not in first.body.upper()
    assert first.form["StatusCallback"].startswith(f"{PUBLIC}/webhooks/twilio/status?r=")
    assert [s for _, s in planned(session, appt["id"])] == ["sent", "sent"]
    sids = set(session.scalars(select(Reminder.provider_sid)))
    assert sids == {m.sid for m in messages}


def test_cancel_stops_everything_after_it(app, client, session, twilio, clinic):
    appt = book(client, "2026-12-03T11:00:00-08:00")
    assert send_due(app, la(2026, 12, 1, 11)) == "sent=1 skipped=0 failed=0"
    response = client.post(f"/api/v1/manage/{appt['manage_token']}/cancel")
    assert response.status_code == 200, response.get_json()
    for at in (la(2026, 12, 3, 9), la(2026, 12, 3, 10, 59)):
        assert send_due(app, at) == "sent=0 skipped=0 failed=0"
    assert len(twilio.requests) == 1
    assert planned(session, appt["id"])[1][1] == "cancelled"


def test_reschedule_never_sends_the_old_reminders_and_sends_the_new_ones(
    app, client, session, twilio, clinic
):
    appt = book(client, "2026-12-04T11:00:00-08:00")
    response = client.post(
        f"/api/v1/manage/{appt['manage_token']}/reschedule",
        json={"start": "2026-12-08T14:00:00-08:00"},
    )
    assert response.status_code == 200, response.get_json()
    old = [la(2026, 12, 2, 11), la(2026, 12, 4, 9)]
    new = [la(2026, 12, 6, 14), la(2026, 12, 8, 12)]
    for at in old:
        assert send_due(app, at) == "sent=0 skipped=0 failed=0"
    assert twilio.requests == []
    for at in new:
        assert send_due(app, at) == "sent=1 skipped=0 failed=0"
    bodies = [m.body for m in twilio.messages]
    assert len(bodies) == 2 and all("Tue 8 Dec, 2:00 PM PST" in b for b in bodies)


def test_stop_via_signed_webhook_stops_further_sms(app, client, session, twilio, clinic):
    book(client, "2026-12-03T11:00:00-08:00")
    assert send_due(app, la(2026, 12, 1, 11)) == "sent=1 skipped=0 failed=0"
    form = {"MessageSid": "SM" + "5" * 32, "From": "+14155550123", "To": "+1", "Body": "Stop"}
    url = f"{PUBLIC}/webhooks/twilio/sms"
    forged = RequestValidator("wrong-token").compute_signature(url, form)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    r = client.post(
        "/webhooks/twilio/sms",
        data=urlencode(form),
        headers={**headers, "X-Twilio-Signature": forged},
    )
    assert r.status_code == 403
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
    r = client.post(
        "/webhooks/twilio/sms",
        data=urlencode(form),
        headers={**headers, "X-Twilio-Signature": signature},
    )
    assert r.status_code == 200
    assert send_due(app, la(2026, 12, 3, 9)) == "sent=0 skipped=1 failed=0"
    assert len(twilio.requests) == 1
    # and no new plan for a later booking from that number
    later = book(client, "2026-12-10T11:00:00-08:00")
    assert planned(session, later["id"]) == []


def test_plan_across_dst_fires_at_the_right_local_times(app, client, session, twilio, clock):
    clock.now = dt.datetime(2027, 3, 10, 18, tzinfo=UTC)
    loc = make_location(session, slug="sf")
    make_service(session, [loc], slug="inf")
    session.commit()
    # Monday after the spring-forward Sunday (14 Mar 2027)
    appt = book(client, "2027-03-15T09:15:00-07:00")
    due_48h = dt.datetime(2027, 3, 13, 17, 15, tzinfo=UTC)  # Sat 09:15 PST, not 08:15
    due_2h = dt.datetime(2027, 3, 15, 15, tzinfo=UTC)  # Mon 08:00 PDT (07:15 is quiet)
    assert [d for d, _ in planned(session, appt["id"])] == [due_48h, due_2h]
    assert send_due(app, due_48h - dt.timedelta(hours=1)) == "sent=0 skipped=0 failed=0"
    assert send_due(app, due_48h) == "sent=1 skipped=0 failed=0"
    assert send_due(app, due_2h - SECOND) == "sent=0 skipped=0 failed=0"
    assert send_due(app, due_2h) == "sent=1 skipped=0 failed=0"
    assert all("Mon 15 Mar, 9:15 AM PDT" in m.body for m in twilio.messages)


def test_a_late_worker_sends_only_the_latest_reminder_and_never_in_quiet_hours(
    app, client, session, twilio, clinic
):
    appt = book(client, "2026-12-03T11:00:00-08:00")
    # The worker was down from before the 48 h reminder (Tue 11:00) until Tue 22:00.
    assert send_due(app, la(2026, 12, 1, 22)) == "sent=0 skipped=0 failed=0"
    assert twilio.requests == []
    assert planned(session, appt["id"])[0] == (la(2026, 12, 1, 11), "pending")
    assert send_due(app, la(2026, 12, 2, 7, 59)) == "sent=0 skipped=0 failed=0"
    assert send_due(app, la(2026, 12, 2, 8)) == "sent=1 skipped=0 failed=0"
    # Down again through the 2 h reminder's time: both due now, only the nearer one goes.
    other = book(client, "2026-12-04T11:00:00-08:00", phone="+14155550124")
    # (the first visit's 2 h reminder is skipped too: that visit has begun)
    assert send_due(app, la(2026, 12, 4, 10)) == "sent=1 skipped=2 failed=0"
    assert [s for _, s in planned(session, other["id"])] == ["skipped", "sent"]
    reasons = session.scalars(select(Reminder.reason).where(Reminder.status == "skipped"))
    assert sorted(reasons) == ["a later reminder is due too", "visit already started"]
    assert [m.to for m in twilio.messages] == ["+14155550123", "+14155550124"]


def test_busy_and_server_errors_retry_with_backoff(app, client, session, twilio, clinic):
    appt = book(client, "2026-12-03T11:00:00-08:00")
    twilio.script("+14155550123", "429", "500")
    t = la(2026, 12, 1, 11)
    assert send_due(app, t) == "sent=0 skipped=0 failed=1"
    row = session.scalars(
        select(Reminder).where(Reminder.appointment_id == appt["id"]).order_by(Reminder.due_at)
    ).first()
    assert (row.status, row.error_code, row.next_attempt_at) == (
        "pending",
        "20429",
        t + 30 * SECOND,
    )
    assert send_due(app, t + 29 * SECOND) == "sent=0 skipped=0 failed=0"
    assert send_due(app, t + 30 * SECOND) == "sent=0 skipped=0 failed=1"  # the 500
    session.refresh(row)
    assert (row.error_code, row.next_attempt_at) == ("20500", t + 90 * SECOND)
    assert send_due(app, t + 89 * SECOND) == "sent=0 skipped=0 failed=0"
    assert send_due(app, t + 90 * SECOND) == "sent=1 skipped=0 failed=0"
    assert [r.answer for r in twilio.requests] == [429, 500, 201]
    session.refresh(row)
    assert (row.status, row.attempts, row.error_code) == ("sent", 3, "")


@pytest.mark.parametrize("code", ["21211", "21610"])
def test_permanent_errors_are_recorded_and_not_retried(app, client, session, twilio, clinic, code):
    appt = book(client, "2026-12-03T11:00:00-08:00")
    twilio.always("+14155550123", code)
    t = la(2026, 12, 1, 11)
    assert send_due(app, t) == "sent=0 skipped=0 failed=1"
    for later in (t + dt.timedelta(minutes=1), t + dt.timedelta(hours=2)):
        assert send_due(app, later) == "sent=0 skipped=0 failed=0"
    assert len(twilio.requests) == 1
    row = session.scalars(
        select(Reminder).where(Reminder.appointment_id == appt["id"]).order_by(Reminder.due_at)
    ).first()
    assert (row.status, row.error_code, row.reason) == ("failed", code, "rejected")
    history = sms_replies.history(session, appt["id"])
    assert any(h.event == "failed" and code in h.detail for h in history)


def test_retries_stop_after_the_last_attempt(app, client, session, twilio, clinic):
    appt = book(client, "2026-12-03T11:00:00-08:00")
    twilio.always("+14155550123", "503")
    t = la(2026, 12, 1, 11)
    for _ in range(reminders.MAX_ATTEMPTS + 2):
        send_due(app, t)
        t += dt.timedelta(hours=1)
    assert len(twilio.requests) == reminders.MAX_ATTEMPTS
    row = session.scalars(
        select(Reminder).where(Reminder.appointment_id == appt["id"]).order_by(Reminder.due_at)
    ).first()
    assert (row.status, row.attempts) == ("failed", reminders.MAX_ATTEMPTS)
    assert row.reason == f"gave up after {reminders.MAX_ATTEMPTS} attempts"


def test_rows_of_a_dead_worker_are_reclaimed_after_the_lease(app, client, session, twilio, clinic):
    appt = book(client, "2026-12-03T11:00:00-08:00")
    t = la(2026, 12, 1, 11)
    lease = dt.timedelta(seconds=app.config.get("REMINDER_LEASE_SECONDS", 300))
    # A worker claimed the row and died before sending.
    claimed = reminders.claim_due(session, t, token="dead-worker", lease_until=t + lease)
    session.commit()
    assert len(claimed) == 1
    assert send_due(app, t + lease - SECOND) == "sent=0 skipped=0 failed=0"
    assert send_due(app, t + lease + SECOND) == "sent=1 skipped=0 failed=0"
    assert send_due(app, t + lease + 2 * SECOND) == "sent=0 skipped=0 failed=0"
    assert len(twilio.messages) == 1
    row = session.get(Reminder, claimed[0])
    assert (row.status, row.attempts, row.claim_token) == ("sent", 2, None)
    assert row.appointment_id == appt["id"]


def test_a_status_callback_before_the_worker_records_is_kept(
    app, client, session, twilio, clinic, clock
):
    appt = book(client, "2026-12-03T11:00:00-08:00")
    t = la(2026, 12, 1, 11)
    ids = reminders.claim_due(session, t, token="w", lease_until=t + dt.timedelta(minutes=5))
    [item] = reminders.load_claimed(session, ids[:1], "w", t)
    session.commit()
    # Twilio accepted the message and its "delivered" callback beat the worker's bookkeeping.
    clock.now = t + SECOND
    form = {"MessageSid": "SM" + "e" * 32, "MessageStatus": "delivered"}
    path = f"/webhooks/twilio/status?r={item.id}"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path, form)
    r = client.post(
        path,
        data=urlencode(form),
        headers={"X-Twilio-Signature": signature},
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 204
    outcome = reminders.send(
        session, item, jobs.sms_sender(app), t, reminders.ClinicSettings.from_config(app.config)
    )
    session.commit()
    assert outcome.kind == "sent"
    row = session.get(Reminder, item.id)
    session.refresh(row)
    assert (row.status, row.provider_status, row.sent_at) == ("delivered", "delivered", t)
    events = [(h.event, h.at) for h in sms_replies.history(session, appt["id"])]
    assert events[2:4] == [("sent", t), ("delivered", t + SECOND)]


def test_logs_never_carry_the_number_or_the_text(app, client, session, twilio, clinic, caplog):
    book(client, "2026-12-03T11:00:00-08:00", phone="+14155550177")
    caplog.set_level(logging.DEBUG)
    assert send_due(app, la(2026, 12, 1, 11)) == "sent=1 skipped=0 failed=0"
    body = twilio.messages[0].body
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "4155550177" not in logged and body not in logged and "Reply C" not in logged
    # the twilio client's own request log (URL, query, headers) is off
    assert not [r for r in caplog.records if r.name.startswith("twilio")]
    assert "Twilio API Request" not in logged


def test_without_credentials_sms_go_to_the_log_only(app, client, session, twilio, clinic, caplog):
    for key in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        app.config[key] = ""
    app.extensions.pop("chairside_sms", None)
    book(client, "2026-12-03T11:00:00-08:00", phone="+14155550178")
    caplog.set_level(logging.DEBUG)
    assert send_due(app, la(2026, 12, 1, 11)) == "sent=1 skipped=0 failed=0"
    assert twilio.requests == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "SMS not sent (no Twilio credentials)" in logged
    assert "4155550178" not in logged and "Reply C" not in logged


def test_no_consent_means_no_sms(app, client, session, twilio, clinic):
    appt = book(client, "2026-12-03T11:00:00-08:00", consent=False)
    assert planned(session, appt["id"]) == []
    assert send_due(app, la(2026, 12, 3, 10)) == "sent=0 skipped=0 failed=0"
    assert twilio.requests == []


# --- the embedded worker --------------------------------------------------------------------------


@pytest.fixture
def embedded_app(db_url, twilio):
    from config import TestConfig
    from scheduler import create_app

    app = create_app(
        TestConfig(
            db_url, SCHEDULER_EMBEDDED_WORKER=True, REMINDER_POLL_SECONDS=3600, **twilio.config()
        )
    )
    yield app
    scheduler = jobs.embedded_scheduler(app)
    if scheduler is not None and scheduler.running:
        scheduler.shutdown(wait=True)
    with app.app_context():
        db.engine.dispose()


def test_embedded_worker_starts_once_with_the_first_request(embedded_app):
    assert jobs.embedded_scheduler(embedded_app) is None
    with embedded_app.app_context():  # as `flask` (FlaskGroup) provides it
        result = embedded_app.test_cli_runner().invoke(
            args=["reminders", "send-due", "--now", "2026-11-30T16:00:00Z"]
        )
    assert result.exit_code == 0, result.output
    assert jobs.embedded_scheduler(embedded_app) is None  # CLI commands never start it
    client = embedded_app.test_client()
    client.get("/api/v1/locations")
    scheduler = jobs.embedded_scheduler(embedded_app)
    assert scheduler is not None and scheduler.running
    [job] = scheduler.get_jobs()
    assert job.trigger.interval == dt.timedelta(hours=1)
    client.get("/api/v1/locations")
    assert jobs.embedded_scheduler(embedded_app) is scheduler
    assert len(scheduler.get_jobs()) == 1


def test_embedded_worker_is_off_when_configured_off(app, client):
    client.get("/api/v1/locations")
    assert jobs.embedded_scheduler(app) is None
