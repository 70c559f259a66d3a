"""Invites of real bookings on both sides of DST changes, read back by ical.js (both databases)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from scheduler.models import Appointment, MailOutbox
from scheduler.services import booking, invites, mail
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests import icaljs
from tests.factories import make_location, make_service
from tests.icaljs import every_ics_checked  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("every_ics_checked")

SETTINGS = ClinicSettings(clinic_name="Harbor Clinic", mail_from="appointments@clinic.example")

# (zone, clock "now" in UTC, local day before the change, local day after it, UTC offsets)
CASES = [
    pytest.param(
        "America/Los_Angeles",
        dt.datetime(2027, 3, 1, 17, 0, tzinfo=dt.UTC),
        dt.date(2027, 3, 12),  # Friday, PST
        dt.date(2027, 3, 15),  # Monday, PDT (spring forward on 14 March)
        ("-08:00", "-07:00"),
        id="los-angeles-spring",
    ),
    pytest.param(
        "America/Los_Angeles",
        dt.datetime(2026, 10, 20, 16, 0, tzinfo=dt.UTC),
        dt.date(2026, 10, 30),  # PDT
        dt.date(2026, 11, 2),  # PST (fall back on 1 November)
        ("-07:00", "-08:00"),
        id="los-angeles-fall",
    ),
    pytest.param(
        "Australia/Adelaide",
        dt.datetime(2027, 3, 25, 0, 0, tzinfo=dt.UTC),
        dt.date(2027, 4, 2),  # ACDT +10:30
        dt.date(2027, 4, 6),  # ACST +09:30 (DST ends 4 April)
        ("+10:30", "+09:30"),
        id="adelaide-autumn",
    ),
    pytest.param(
        "Australia/Adelaide",
        dt.datetime(2026, 9, 25, 0, 0, tzinfo=dt.UTC),
        dt.date(2026, 10, 2),  # ACST +09:30
        dt.date(2026, 10, 6),  # ACDT +10:30 (DST starts 4 October)
        ("+09:30", "+10:30"),
        id="adelaide-spring",
    ),
    pytest.param(
        "Asia/Kolkata",
        dt.datetime(2027, 3, 1, 0, 0, tzinfo=dt.UTC),
        dt.date(2027, 3, 12),
        dt.date(2027, 3, 15),
        ("+05:30", "+05:30"),
        id="kolkata-no-dst",
    ),
]


def _book(session: Any, slug: str, start: dt.datetime, n: int, now: dt.datetime) -> Appointment:
    request = booking.BookingRequest(
        location=slug,
        service="infusion",
        start=start,
        patient=PatientDetails(f"Pat Patient {n}", f"+1415555{n:04d}", f"pat{n}@example.com"),
        note="Zweiter Stock, 二階 🚪",
    )
    return booking.book(session, request, now=now, settings=SETTINGS)


def _outbox_ics(row: MailOutbox) -> bytes:
    assert row.message is None and row.payload is not None  # rendered later, by the worker
    content = mail.render(
        row.kind, row.payload, envelope_from=row.envelope_from, recipient=row.recipient
    )
    message = email.message_from_bytes(content, policy=email.policy.default)
    (part,) = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


@pytest.mark.parametrize(("zone", "now", "before", "after", "offsets"), CASES)
def test_invite_start_read_by_icaljs_equals_the_database_on_both_sides_of_dst(
    session: Any,
    zone: str,
    now: dt.datetime,
    before: dt.date,
    after: dt.date,
    offsets: tuple[str, str],
) -> None:
    tz = ZoneInfo(zone)
    loc = make_location(session, slug="clinic", timezone=zone, name="Centre ☕")
    make_service(session, [loc], slug="infusion")
    session.commit()
    first = _book(session, "clinic", dt.datetime.combine(before, dt.time(10), tz), 1, now)
    second = _book(session, "clinic", dt.datetime.combine(after, dt.time(10), tz), 2, now)
    # And one moved across the change: its REQUEST must follow it.
    moved = _book(session, "clinic", dt.datetime.combine(before, dt.time(11), tz), 3, now)
    booking.reschedule(
        session, moved, dt.datetime.combine(after, dt.time(11), tz), now=now, settings=SETTINGS
    )
    session.commit()
    session.expire_all()

    appts = session.scalars(select(Appointment).order_by(Appointment.id)).all()
    assert [a.start_at.astimezone(tz).isoformat()[-6:] for a in appts] == [
        offsets[0],
        offsets[1],
        offsets[1],
    ]
    rows = session.scalars(select(MailOutbox).order_by(MailOutbox.id)).all()
    assert [r.appointment_id for r in rows] == [first.id, second.id, moved.id, moved.id]
    documents = [_outbox_ics(r) for r in rows]
    documents += [invites.current_invite(a, SETTINGS, now) for a in appts]
    expected = [first.start_at, second.start_at, None, moved.start_at]
    expected += [a.start_at for a in appts]

    parsed = icaljs.parse(documents)
    for doc, want in zip(parsed, expected, strict=True):
        (event,) = doc["events"]
        assert doc["timezones"] == [zone]
        assert event["tzid"] == zone
        if want is not None:
            assert dt.datetime.fromisoformat(event["start"]) == want
        assert event["location"].startswith("Centre ☕, ")
        assert event["description"].endswith("Zweiter Stock, 二階 🚪")
    # The moved visit's first invite still says where it was first booked (11:00 before).
    first_moved = dt.datetime.fromisoformat(parsed[2]["events"][0]["start"])
    assert first_moved == dt.datetime.combine(before, dt.time(11), tz)
    assert parsed[3]["events"][0]["sequence"] == 1
