"""Invite e-mails end to end: JSON API -> outbox -> real SMTP server (aiosmtpd) -> MIME + ical.js."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import select

from scheduler.models import Appointment, MailOutbox, MailStatus
from scheduler.services import mail
from scheduler.web.mail import SENDER_KEY
from tests import icaljs
from tests.factories import make_location, make_service
from tests.icaljs import every_ics_checked  # noqa: F401  (fixture)
from tests.smtpinbox import Inbox, smtp_config

pytestmark = pytest.mark.usefixtures("every_ics_checked")

PATIENT = {"name": "Zoë Ångström", "phone": "+14155550123", "email": "zoe@example.com"}


@pytest.fixture
def app_config(app_config: dict[str, Any], inbox: Inbox) -> dict[str, Any]:
    return {**app_config, **smtp_config(inbox)}


def call(client: Any, method: str, url: str, **kwargs: Any) -> Any:
    # buffered=True makes the test client close the response, as a WSGI server does once the
    # response is sent: that is when the queued mails go out.
    return client.open(url, method=method, buffered=True, **kwargs)


def setup_clinic(session: Any) -> None:
    loc = make_location(session, slug="sf", name="Mission Bay ☕", timezone="America/Los_Angeles")
    make_service(session, [loc], slug="infusion", name="Ketamine infusion (depression)")
    session.commit()


def book(client: Any, start: str, note: str = "") -> dict[str, Any]:
    body = {
        "location": "sf",
        "service": "infusion",
        "start": start,
        "patient": PATIENT,
        "note": note,
    }
    r = call(client, "POST", "/api/v1/appointments", json=body)
    assert r.status_code == 201, r.get_json()
    return dict(r.get_json())


def mime_parts(message: EmailMessage) -> tuple[str, bytes]:
    """Check the whole MIME tree; return (MIME method, ICS bytes)."""
    assert message.get_content_type() == "multipart/mixed"
    top = message.get_payload()
    assert isinstance(top, list)
    assert [p.get_content_type() for p in top] == ["multipart/alternative", "application/ics"]
    alternative, attachment = top
    alt = alternative.get_payload()
    assert [p.get_content_type() for p in alt] == ["text/plain", "text/html", "text/calendar"]
    plain, html, calendar = alt
    assert plain.get_content_charset() == "utf-8"
    assert html.get_content_charset() == "utf-8"
    assert calendar.get_param("charset").upper() == "UTF-8"
    method = calendar.get_param("method")
    assert method in {"REQUEST", "CANCEL"}
    ics = calendar.get_payload(decode=True)
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_payload(decode=True) == ics
    # CRLF everywhere, no bare LF (a str payload would have lost them).
    assert ics.endswith(b"\r\n") and b"\n" not in ics.replace(b"\r\n", b"")
    return method, ics


def test_booking_reschedule_twice_and_cancel_send_four_consistent_invites(
    client: Any, session: Any, inbox: Inbox
) -> None:
    setup_clinic(session)
    booked = book(client, "2026-12-02T10:00:00-08:00", note="Parking: north lot, please")
    token = booked["manage_token"]
    db_starts = [session.get(Appointment, booked["id"]).start_at]
    for new_start in ("2026-12-03T10:00:00-08:00", "2026-12-04T11:30:00-08:00"):
        r = call(client, "POST", f"/api/v1/manage/{token}/reschedule", json={"start": new_start})
        assert r.status_code == 200, r.get_json()
        session.expire_all()
        db_starts.append(session.get(Appointment, booked["id"]).start_at)
    r = call(client, "POST", f"/api/v1/manage/{token}/cancel")
    assert r.status_code == 200, r.get_json()
    session.expire_all()
    appt = session.get(Appointment, booked["id"])
    db_starts.append(appt.start_at)

    assert len(inbox.received) == 4
    methods, mime_methods, uids, sequences, documents = [], [], [], [], []
    for received in inbox.received:
        assert received.rcpt_tos == [PATIENT["email"]]
        assert received.mail_from == "appointments@clinic.example"
        message = received.message
        assert message["To"].addresses[0].addr_spec == PATIENT["email"]
        assert message["From"].addresses[0].display_name == "Harbor Clinic"
        mime_method, ics = mime_parts(message)
        cal = Calendar.from_ical(ics)
        assert "UID" not in cal  # no calendar-level UID
        (event,) = cal.walk("VEVENT")
        methods.append(str(cal["METHOD"]))
        mime_methods.append(mime_method)
        uids.append(str(event["UID"]))
        sequences.append(int(event["SEQUENCE"]))
        documents.append(ics)
        # Discreet: the treatment's name is nowhere in the mail.
        assert "Ketamine" not in received.content.decode("ascii")
        assert "Ketamine" not in ics.decode()
        assert str(event["SUMMARY"]) == "Appointment at Harbor Clinic, Mission Bay ☕"

    assert methods == ["REQUEST", "REQUEST", "REQUEST", "CANCEL"]
    assert mime_methods == methods
    assert len(set(uids)) == 1 and uids[0] == appt.ics_uid
    assert all(a < b for a, b in zip(sequences, sequences[1:], strict=False))
    assert sequences[-1] == appt.ics_sequence

    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects[0].startswith("Booked:") and subjects[-1].startswith("Cancelled:")
    text = inbox.messages[0].get_body(("plain",)).get_content()
    assert f"https://book.clinic.example/a/{token}" in text
    assert "Wednesday 2 December 2026, 10:00 (PST)" in text

    parsed = icaljs.parse(documents)
    assert [p["method"] for p in parsed] == methods
    for doc, db_start in zip(parsed, db_starts, strict=True):
        (event,) = doc["events"]
        assert event["uid"] == appt.ics_uid
        assert dt.datetime.fromisoformat(event["start"]) == db_start
        assert doc["timezones"] == ["America/Los_Angeles"]
        assert event["attendee"] == f"mailto:{PATIENT['email']}"
        assert event["attendee_rsvp"] == "FALSE"
        assert event["organizer"] == "mailto:appointments@clinic.example"
    assert [p["events"][0]["sequence"] for p in parsed] == sequences
    assert parsed[-1]["events"][0]["status"] == "CANCELLED"
    assert parsed[0]["events"][0]["alarms"] == [{"action": "DISPLAY", "trigger": "-PT1H"}]
    assert parsed[-1]["events"][0]["alarms"] == []

    rows = session.scalars(select(MailOutbox).order_by(MailOutbox.id)).all()
    assert [r.status for r in rows] == [MailStatus.SENT] * 4
    assert mail.deliver_pending(
        session,
        mail.sender_from_config(client.application.config),
        appt.updated_at + dt.timedelta(days=1),
    ) == (0, 0)
    assert len(inbox.received) == 4


def test_invite_download_is_the_current_state(client: Any, session: Any) -> None:
    setup_clinic(session)
    booked = book(client, "2026-12-02T10:00:00-08:00")
    token = booked["manage_token"]
    r = client.get(f"/api/v1/manage/{token}/invite.ics")
    assert r.status_code == 200 and r.mimetype == "text/calendar"
    assert b"METHOD:REQUEST\r\n" in r.data and b"SEQUENCE:0\r\n" in r.data
    call(client, "POST", f"/api/v1/manage/{token}/cancel")
    r = client.get(f"/api/v1/manage/{token}/invite.ics")
    assert b"METHOD:CANCEL\r\n" in r.data and b"STATUS:CANCELLED\r\n" in r.data
    assert b"SEQUENCE:1\r\n" in r.data
    (doc,) = icaljs.parse([r.data])
    assert doc["method"] == "CANCEL"


def test_status_changes_other_than_cancel_send_no_mail(
    client: Any, session: Any, inbox: Inbox
) -> None:
    from tests.factories import make_staff

    setup_clinic(session)
    _, staff_token = make_staff(session)
    session.commit()
    booked = book(client, "2026-12-02T10:00:00-08:00")
    headers = {"Authorization": f"Bearer {staff_token}"}
    for status in ("checked_in", "booked"):
        r = call(
            client,
            "POST",
            f"/api/v1/appointments/{booked['id']}/status",
            json={"status": status},
            headers=headers,
        )
        assert r.status_code == 200, r.get_json()
    assert len(inbox.received) == 1
    r = call(
        client,
        "POST",
        f"/api/v1/appointments/{booked['id']}/status",
        json={"status": "cancelled"},
        headers=headers,
    )
    assert r.status_code == 200
    methods = [mime_parts(m)[0] for m in inbox.messages]
    assert methods == ["REQUEST", "CANCEL"]


class TestSmtpDown:
    @pytest.fixture
    def inbox(self) -> Iterator[Inbox]:
        box = Inbox()  # not started: the port refuses connections
        yield box
        box.stop()

    def test_booking_succeeds_and_mail_goes_out_once_when_smtp_is_back(
        self, client: Any, session: Any, inbox: Inbox, clock: Any
    ) -> None:
        setup_clinic(session)
        booked = book(client, "2026-12-02T10:00:00-08:00")
        session.expire_all()
        appt = session.get(Appointment, booked["id"])
        assert appt is not None and appt.status == "booked"
        (row,) = session.scalars(select(MailOutbox)).all()
        assert row.status == MailStatus.PENDING
        assert row.attempts == 1
        assert row.next_attempt_at > clock.now
        assert "unreachable" in row.last_error and "@" not in row.last_error
        # Rendered once, on the first attempt: every retry sends these very bytes.
        assert row.message is not None
        first_render = row.message
        sender = mail.sender_from_config(client.application.config)

        # Still down: the retry fails again and is pushed back.
        clock.advance(minutes=5)
        assert mail.deliver_pending(session, sender, clock.now) == (0, 1)

        inbox.start()
        # Not due yet (backoff): nothing is sent early.
        assert mail.deliver_pending(session, sender, clock.now) == (0, 0)
        clock.advance(hours=1)
        assert mail.deliver_pending(session, sender, clock.now) == (1, 0)
        clock.advance(hours=5)
        assert mail.deliver_pending(session, sender, clock.now) == (0, 0)
        assert len(inbox.received) == 1
        assert inbox.received[0].content.replace(b"\r\n", b"\n") == first_render.replace(
            b"\r\n", b"\n"
        )
        method, _ = mime_parts(inbox.messages[0])
        assert method == "REQUEST"
        session.expire_all()
        assert session.get(MailOutbox, row.id).status == MailStatus.SENT

    def test_a_change_while_smtp_is_down_is_delivered_in_order(
        self, client: Any, session: Any, inbox: Inbox, clock: Any
    ) -> None:
        setup_clinic(session)
        booked = book(client, "2026-12-02T10:00:00-08:00")
        token = booked["manage_token"]
        r = call(
            client,
            "POST",
            f"/api/v1/manage/{token}/reschedule",
            json={"start": "2026-12-03T10:00:00-08:00"},
        )
        assert r.status_code == 200
        r = call(client, "POST", f"/api/v1/manage/{token}/cancel")
        assert r.status_code == 200
        inbox.start()
        clock.advance(hours=3)
        sender = mail.sender_from_config(client.application.config)
        assert mail.deliver_pending(session, sender, clock.now) == (3, 0)
        methods = [mime_parts(m)[0] for m in inbox.messages]
        assert methods == ["REQUEST", "REQUEST", "CANCEL"]

    def test_operators_can_flush_the_outbox_from_the_cli(
        self, app: Any, client: Any, session: Any, inbox: Inbox, clock: Any
    ) -> None:
        setup_clinic(session)
        book(client, "2026-12-02T10:00:00-08:00")
        inbox.start()
        runner = app.test_cli_runner()
        later = (clock.now + dt.timedelta(minutes=30)).isoformat()
        result = runner.invoke(args=["mail", "deliver", "--now", later])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "sent 1, failed 0"
        assert runner.invoke(args=["mail", "deliver", "--now", later]).output.strip() == (
            "sent 0, failed 0"
        )
        assert len(inbox.received) == 1
        assert runner.invoke(args=["mail", "deliver", "--now", "tomorrow"]).exit_code != 0


class Exploding:
    def send(self, envelope_from: str, recipients: Any, message: bytes) -> None:
        raise RuntimeError("the mail library blew up")


def test_a_broken_sender_never_fails_the_booking(client: Any, session: Any) -> None:
    setup_clinic(session)
    client.application.extensions[SENDER_KEY] = Exploding()
    booked = book(client, "2026-12-02T10:00:00-08:00")
    session.expire_all()
    assert session.get(Appointment, booked["id"]).status == "booked"
    (row,) = session.scalars(select(MailOutbox)).all()
    assert row.status == MailStatus.PENDING and row.attempts == 1
    assert row.last_error == "RuntimeError in the mail sender"


class TestWithoutSmtpHost:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "SMTP_HOST": ""}

    def test_mails_are_logged_without_addresses_or_bodies(
        self, client: Any, session: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        assert isinstance(mail.sender_from_config(client.application.config), mail.LogMailSender)
        setup_clinic(session)
        with caplog.at_level(logging.INFO):
            book(client, "2026-12-02T10:00:00-08:00", note="my private note")
        lines = [r.getMessage() for r in caplog.records if r.name == "scheduler.mail"]
        assert any("mail not sent (SMTP_HOST is not set)" in line for line in lines)
        assert any("calendar method REQUEST" in line for line in lines)
        for text in (PATIENT["email"], "@", PATIENT["phone"], "Zoë", "private note"):
            assert text not in caplog.text
        (row,) = session.scalars(select(MailOutbox)).all()
        assert row.status == MailStatus.SENT


def test_sender_from_config_picks_smtp_only_with_a_host() -> None:
    smtp = mail.sender_from_config(
        {"SMTP_HOST": "mail.example", "SMTP_PORT": "2525", "SMTP_STARTTLS": "false"}
    )
    assert isinstance(smtp, mail.SmtpMailSender)
    assert (smtp.host, smtp.port, smtp.starttls) == ("mail.example", 2525, False)
    assert isinstance(mail.sender_from_config({"SMTP_HOST": ""}), mail.LogMailSender)
    assert isinstance(mail.sender_from_config({}), mail.LogMailSender)
