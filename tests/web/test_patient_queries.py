"""The availability queries the patient pages added: days with openings, nearest free slots."""

from __future__ import annotations

import datetime as dt

from scheduler.models import Closure
from scheduler.services import availability, booking
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.conftest import DEFAULT_NOW
from tests.factories import make_location, make_service

UTC = dt.UTC


def test_days_with_openings_counts_free_starts_per_local_day(session):
    loc = make_location(session, chairs=1, weekdays=range(5))  # Monday to Friday, 9-17
    svc = make_service(session, [loc], duration=60, prep=0, recovery=0, step=60)
    session.add(
        Closure(location_id=loc.id, first_day=dt.date(2026, 12, 2), last_day=dt.date(2026, 12, 2))
    )
    session.flush()
    counts = availability.days_with_openings(
        session, loc, svc, dt.date(2026, 11, 30), 7, DEFAULT_NOW
    )
    # Mon 30 Nov: now is 8:00, an hour's notice -> 9:00 onwards: 9..16 = 8 starts.
    assert counts == {
        dt.date(2026, 11, 30): 8,
        dt.date(2026, 12, 1): 8,
        dt.date(2026, 12, 3): 8,
        dt.date(2026, 12, 4): 8,
    }


def test_days_with_openings_leaves_out_a_full_day(session):
    loc = make_location(session, chairs=1, hours=((dt.time(9), dt.time(10)),))
    svc = make_service(session, [loc], duration=60, prep=0, recovery=0, step=60)
    booking.book(
        session,
        booking.BookingRequest(
            location=loc.slug,
            service=svc.slug,
            start=dt.datetime(2026, 12, 1, 17, 0, tzinfo=UTC),
            patient=PatientDetails("A", "+14155550101", "a@example.com"),
        ),
        now=DEFAULT_NOW,
        settings=ClinicSettings(),
    )
    counts = availability.days_with_openings(
        session, loc, svc, dt.date(2026, 12, 1), 2, DEFAULT_NOW
    )
    assert counts == {dt.date(2026, 12, 2): 1}


def test_nearest_slots_are_the_closest_free_starts_in_order(session):
    loc = make_location(session, chairs=1)
    svc = make_service(session, [loc], duration=60, prep=0, recovery=0, step=60)
    target = dt.datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # 12:00 PST
    slots = availability.nearest_slots(session, loc, svc, target, DEFAULT_NOW, limit=4)
    local = [s.start.astimezone(dt.timezone(dt.timedelta(hours=-8))).hour for s in slots]
    assert local == [10, 11, 13, 14]
    assert all(s.start != target for s in slots)


def test_nearest_slots_never_reach_into_the_past(session):
    loc = make_location(session, chairs=1)
    svc = make_service(session, [loc], duration=60, prep=0, recovery=0, step=60)
    target = DEFAULT_NOW + dt.timedelta(hours=2)  # 10:00 PST today
    slots = availability.nearest_slots(session, loc, svc, target, DEFAULT_NOW, limit=10)
    assert slots and min(s.start for s in slots) >= DEFAULT_NOW + dt.timedelta(minutes=60)
