"""The outbox worker against a real SMTP server: claims, concurrency, retries, exactly once."""

from __future__ import annotations

import datetime as dt
import threading
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.extensions import db
from scheduler.models import MailOutbox, MailStatus
from scheduler.services import booking, mail
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service
from tests.icaljs import every_ics_checked  # noqa: F401  (fixture)
from tests.smtpinbox import Inbox

pytestmark = pytest.mark.usefixtures("every_ics_checked")

NOW = dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)


@pytest.fixture
def sender(inbox: Inbox) -> mail.SmtpMailSender:
    return mail.SmtpMailSender("127.0.0.1", inbox.port, starttls=False, timeout=5)


def queue_plain(session: Any, n: int) -> list[int]:
    ids = []
    for i in range(n):
        msg = EmailMessage()
        msg["Subject"] = f"test {i}"
        msg["From"] = "clinic@clinic.example"
        msg["To"] = f"p{i}@example.com"
        msg["Message-ID"] = f"<m{i}@test>"
        msg.set_content(f"body {i}")
        row_id = mail.queue(
            session,
            message=msg,
            envelope_from="clinic@clinic.example",
            recipient=f"p{i}@example.com",
            now=NOW,
            kind="test",
        )
        ids.append(row_id)
    session.commit()
    return ids


def status_of(session: Any, row_id: int) -> MailOutbox:
    session.expire_all()
    row = session.get(MailOutbox, row_id)
    assert row is not None
    return row


def test_a_claimed_row_waits_for_its_lease_then_is_sent_once(
    session: Any, sender: mail.SmtpMailSender, inbox: Inbox
) -> None:
    (row_id,) = queue_plain(session, 1)
    crashed = Session(db.engine)
    try:
        claimed = mail._claim_next(crashed, NOW, None)
        assert claimed is not None
        stale_token = claimed.token
        # Another worker sees nothing to do while the claim is fresh.
        assert mail.deliver_pending(session, sender, NOW + mail.LEASE / 2) == (0, 0)
        assert inbox.received == []
        # The first worker died: after the lease the row is taken over and sent.
        assert mail.deliver_pending(session, sender, NOW + mail.LEASE) == (1, 0)
        # The dead worker's late bookkeeping cannot undo it.
        mail._finish(crashed, row_id, stale_token, status=MailStatus.PENDING)
    finally:
        crashed.close()
    row = status_of(session, row_id)
    assert row.status == MailStatus.SENT and row.attempts == 2
    assert mail.deliver_pending(session, sender, NOW + dt.timedelta(days=1)) == (0, 0)
    assert len(inbox.received) == 1


def test_concurrent_workers_send_every_mail_exactly_once(
    session: Any, sender: mail.SmtpMailSender, inbox: Inbox
) -> None:
    ids = queue_plain(session, 24)
    engine = db.engine
    barrier = threading.Barrier(3)
    results: list[tuple[int, int]] = []
    errors: list[Exception] = []

    def worker() -> None:
        own = Session(engine)
        try:
            barrier.wait()
            results.append(mail.deliver_pending(own, sender, NOW))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(sent for sent, _ in results) == 24
    assert sum(failed for _, failed in results) == 0
    message_ids = sorted(m["Message-ID"] for m in inbox.messages)
    assert message_ids == sorted(f"<m{i}@test>" for i in range(24))
    session.expire_all()
    rows = session.scalars(select(MailOutbox).where(MailOutbox.id.in_(ids))).all()
    assert {r.status for r in rows} == {MailStatus.SENT}
    assert {r.attempts for r in rows} == {1}


def test_a_permanent_refusal_is_not_retried(
    session: Any, sender: mail.SmtpMailSender, inbox: Inbox
) -> None:
    (row_id,) = queue_plain(session, 1)
    inbox.refuse = "550 5.1.1 No such user here"
    assert mail.deliver_pending(session, sender, NOW) == (0, 1)
    row = status_of(session, row_id)
    assert row.status == MailStatus.FAILED
    assert row.last_error == "recipient refused (550)"
    inbox.refuse = None
    assert mail.deliver_pending(session, sender, NOW + dt.timedelta(days=1)) == (0, 0)
    assert inbox.received == []


def test_a_temporary_refusal_is_retried_with_growing_backoff(
    session: Any, sender: mail.SmtpMailSender, inbox: Inbox
) -> None:
    (row_id,) = queue_plain(session, 1)
    inbox.refuse = "451 4.3.0 Try again later"
    now = NOW
    waits = []
    for _ in range(3):
        assert mail.deliver_pending(session, sender, now) == (0, 1)
        row = status_of(session, row_id)
        assert row.status == MailStatus.PENDING
        waits.append(row.next_attempt_at - now)
        # Not a moment early.
        assert mail.deliver_pending(
            session, sender, row.next_attempt_at - dt.timedelta(seconds=1)
        ) == (0, 0)
        now = row.next_attempt_at
    assert waits == [dt.timedelta(minutes=1), dt.timedelta(minutes=2), dt.timedelta(minutes=4)]
    inbox.refuse = None
    assert mail.deliver_pending(session, sender, now) == (1, 0)
    assert status_of(session, row_id).attempts == 4
    assert len(inbox.received) == 1


def test_gives_up_after_the_last_attempt(session: Any) -> None:
    (row_id,) = queue_plain(session, 1)
    down = mail.SmtpMailSender("127.0.0.1", Inbox().port, starttls=False, timeout=5)
    now = NOW
    for attempt in range(1, mail.MAX_ATTEMPTS + 1):
        assert mail.deliver_pending(session, down, now) == (0, 1)
        row = status_of(session, row_id)
        assert row.attempts == attempt
        now += mail.MAX_RETRY
    assert row.status == MailStatus.FAILED
    assert mail.deliver_pending(session, down, now + dt.timedelta(days=1)) == (0, 0)


def test_only_the_given_rows_are_delivered_when_asked(
    session: Any, sender: mail.SmtpMailSender, inbox: Inbox
) -> None:
    first, second = queue_plain(session, 2)
    assert mail.deliver_pending(session, sender, NOW, ids=[second]) == (1, 0)
    assert [m["Message-ID"] for m in inbox.messages] == ["<m1@test>"]
    assert status_of(session, first).status == MailStatus.PENDING


def test_an_older_invite_is_skipped_once_a_newer_one_went_out(
    session: Any, sender: mail.SmtpMailSender, inbox: Inbox
) -> None:
    settings = ClinicSettings(clinic_name="Harbor Clinic")
    loc = make_location(session, slug="sf")
    make_service(session, [loc], slug="infusion")
    session.commit()
    appt = booking.book(
        session,
        booking.BookingRequest(
            location="sf",
            service="infusion",
            start=dt.datetime(2026, 12, 2, 18, 0, tzinfo=dt.UTC),
            patient=PatientDetails("Pat Patient", "+14155550123", "pat@example.com"),
        ),
        now=NOW,
        settings=settings,
    )
    session.commit()
    booking.reschedule(
        session, appt, dt.datetime(2026, 12, 3, 18, 0, tzinfo=dt.UTC), now=NOW, settings=settings
    )
    session.commit()
    old, new = session.scalars(select(MailOutbox.id).order_by(MailOutbox.id)).all()
    # The first invite's attempt failed earlier; the update goes out first.
    session.get(MailOutbox, old).next_attempt_at = NOW + dt.timedelta(minutes=5)
    session.commit()
    assert mail.deliver_pending(session, sender, NOW) == (1, 0)
    assert mail.deliver_pending(session, sender, NOW + dt.timedelta(minutes=5)) == (0, 0)
    assert status_of(session, old).status == MailStatus.SUPERSEDED
    assert status_of(session, new).status == MailStatus.SENT
    assert len(inbox.received) == 1
