"""Internationalized addresses, honest failure classes and subjects, against a real SMTP server
(aiosmtpd): what is permanent fails at once with its reason, what is temporary is retried."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import MailOutbox, MailStatus
from scheduler.services import mail
from tests.smtpinbox import Inbox, smtp_config
from tests.test_mail import PATIENT, book, call, mime_parts, setup_clinic

START = "2026-12-02T10:00:00-08:00"


@pytest.fixture
def inbox(request: pytest.FixtureRequest) -> Iterator[Inbox]:
    """The SMTP server; `smtputf8` (the default) unless a test parametrizes it off."""
    box = Inbox(smtputf8=getattr(request, "param", True)).start()
    yield box
    box.stop()


@pytest.fixture
def app_config(app_config: dict[str, Any], inbox: Inbox) -> dict[str, Any]:
    return {**app_config, **smtp_config(inbox)}


def book_as(client: Any, email: str) -> dict[str, Any]:
    r = call(
        client,
        "POST",
        "/api/v1/appointments",
        json={
            "location": "sf",
            "service": "infusion",
            "start": START,
            "patient": {**PATIENT, "email": email},
        },
    )
    assert r.status_code == 201, r.get_json()
    return dict(r.get_json())


def only_row(session: Any) -> MailOutbox:
    session.expire_all()
    (row,) = session.scalars(select(MailOutbox)).all()
    return row


@pytest.mark.parametrize("inbox", [True, False], indirect=True, ids=["smtputf8", "ascii-only"])
def test_a_non_ascii_local_part_goes_out_with_smtputf8_or_fails_at_once(
    client: Any, session: Any, inbox: Inbox
) -> None:
    setup_clinic(session)
    book_as(client, "zoë@exämple.org")
    row = only_row(session)
    if inbox.smtputf8:
        (received,) = inbox.received
        assert "SMTPUTF8" in received.mail_options
        assert received.rcpt_tos == ["zoë@xn--exmple-cua.org"]  # the domain in IDNA form
        # RFC 6532: the header carries the address in UTF-8 (read it back as such).
        parsed = email.message_from_string(received.content.decode(), policy=email.policy.default)
        assert parsed["To"].addresses[0].addr_spec == "zoë@xn--exmple-cua.org"
        assert parsed["To"].addresses[0].display_name == PATIENT["name"]
        mime_parts(parsed)
        assert row.status == MailStatus.SENT
    else:
        # Permanent: no retry can make this server carry the address.
        assert inbox.received == []
        assert row.status == MailStatus.FAILED and row.attempts == 1
        assert "SMTPUTF8" in row.last_error and "@" not in row.last_error


def test_an_idn_domain_alone_needs_no_smtputf8(client: Any, session: Any, inbox: Inbox) -> None:
    setup_clinic(session)
    book_as(client, "zoe@exämple.org")
    (received,) = inbox.received
    assert received.rcpt_tos == ["zoe@xn--exmple-cua.org"]
    assert "SMTPUTF8" not in received.mail_options
    assert received.content.isascii()
    assert received.message["To"].addresses[0].addr_spec == "zoe@xn--exmple-cua.org"
    assert only_row(session).status == MailStatus.SENT


@pytest.mark.parametrize(
    ("where", "answer", "status", "error"),
    [
        ("rcpt", "550 5.1.1 No such user", MailStatus.FAILED, "recipient refused (550)"),
        ("rcpt", "450 4.2.1 Mailbox busy", MailStatus.PENDING, "recipient refused (450)"),
        ("mail", "553 5.7.1 Sender not allowed", MailStatus.FAILED, "sender refused (553)"),
        ("mail", "451 4.3.0 Try later", MailStatus.PENDING, "sender refused (451)"),
        ("data", "554 5.6.0 Message rejected", MailStatus.FAILED, "message refused (554)"),
        ("data", "452 4.3.1 Out of storage", MailStatus.PENDING, "message refused (452)"),
    ],
    ids=["rcpt-5xx", "rcpt-4xx", "mail-5xx", "mail-4xx", "data-5xx", "data-4xx"],
)
def test_5xx_fails_at_once_and_4xx_is_retried(
    client: Any,
    session: Any,
    inbox: Inbox,
    clock: Any,
    where: str,
    answer: str,
    status: str,
    error: str,
) -> None:
    setup_clinic(session)
    setattr(inbox, f"refuse_{where}" if where != "rcpt" else "refuse", answer)
    book(client, START)
    row = only_row(session)
    assert (row.status, row.last_error, row.attempts) == (status, error, 1)
    if status == MailStatus.PENDING:
        assert row.next_attempt_at > clock.now


def test_a_server_without_starttls_is_named_not_unreachable(
    app: Any, client: Any, session: Any, inbox: Inbox
) -> None:
    app.config["SMTP_STARTTLS"] = True
    setup_clinic(session)
    book(client, START)
    row = only_row(session)
    assert row.status == MailStatus.PENDING  # our configuration: fixing it drains the outbox
    assert "does not offer STARTTLS" in row.last_error
    assert "unreachable" not in row.last_error
    assert inbox.received == []


def test_a_stopped_server_is_unreachable_and_retried(
    client: Any, session: Any, inbox: Inbox
) -> None:
    inbox.stop()
    setup_clinic(session)
    book(client, START)
    row = only_row(session)
    assert row.status == MailStatus.PENDING and "unreachable" in row.last_error


def test_the_subject_names_clinic_and_location_with_single_spaces(
    client: Any, session: Any, inbox: Inbox
) -> None:
    setup_clinic(session)
    booked = book(client, START)
    r = call(client, "POST", f"/api/v1/manage/{booked['manage_token']}/cancel")
    assert r.status_code == 200
    subjects = [str(m["Subject"]) for m in inbox.messages]
    assert subjects == [
        "Booked: Appointment at Harbor Clinic, Mission Bay ☕ - Wed 2 Dec 2026, 10:00 PST",
        "Cancelled: Appointment at Harbor Clinic, Mission Bay ☕ - Wed 2 Dec 2026, 10:00 PST",
    ]
    assert mail.subject("Cancelled", "Appointment at A  Clinic,  Annex", "x") == (
        "Cancelled: Appointment at A Clinic, Annex - x"
    )


@pytest.mark.parametrize("heading", ["Booked", "Changed", "Cancelled"])
def test_a_folded_non_ascii_subject_unfolds_with_single_spaces(heading: str) -> None:
    # The standard library's folder kept a space on both sides of a break before an encoded
    # word: "San Francisco  – Mission" once read back. Every break position is tried.
    for pad in range(40):
        title = f"IV ketamine induction at {'x' * pad} Harbor Clinic San Francisco – Mission"
        text = mail.subject(heading, title, "Wed 2 Dec 2026, 10:00 PST")
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["Subject"] = mail.SubjectHeader(text)
        raw = msg.as_bytes()
        assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
        back = email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
        assert back == text and str(msg["Subject"]) == text
