"""`slot_at` (what booking checks) agrees with `location_slots` (what is offered), on both
databases: opening intervals, a closure, blocks, booked visits with buffers, notice, and the
US DST transitions."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from scheduler.models import Appointment, Closure, ResourceBlock
from scheduler.services import availability
from tests.factories import make_location, make_service

LA = ZoneInfo("America/Los_Angeles")


@pytest.mark.parametrize(
    "first_day",
    [dt.date(2026, 10, 30), dt.date(2027, 3, 12)],
    ids=["fall-back", "spring-forward"],
)
def test_slot_at_matches_the_offered_slots_minute_by_minute(session, first_day):
    now = dt.datetime.combine(first_day, dt.time(9, 50), tzinfo=LA).astimezone(dt.UTC)
    loc = make_location(
        session,
        chairs=3,
        rooms=0,
        hours=(
            (dt.time(0, 30), dt.time(2, 45)),
            (dt.time(9), dt.time(12)),
            (dt.time(13), dt.time(17)),
        ),
    )
    service = make_service(session, [loc], duration=40, prep=10, recovery=10, horizon_days=10)
    chair1, chair2, _ = sorted(loc.resources, key=lambda r: r.id)
    closed = first_day + dt.timedelta(days=3)
    session.add(Closure(location_id=loc.id, first_day=closed, last_day=closed, reason="holiday"))
    day1 = first_day + dt.timedelta(days=1)

    def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=LA).astimezone(dt.UTC)

    session.add(
        ResourceBlock(resource_id=chair1.id, start_at=at(day1, 9), end_at=at(day1, 11), reason="x")
    )
    visit_start = at(day1, 10, 15)
    visit = Appointment(
        location_id=loc.id,
        service_id=service.id,
        resource_id=chair2.id,
        patient_id=_patient(session).id,
        start_at=visit_start,
        end_at=visit_start + dt.timedelta(minutes=40),
        occupied_start=visit_start - dt.timedelta(minutes=10),
        occupied_end=visit_start + dt.timedelta(minutes=50),
        duration_minutes=40,
        prep_minutes=10,
        recovery_minutes=10,
        manage_token="t" * 40,
        ics_uid="visit@test",
    )
    session.add(visit)
    session.flush()

    days = 5
    offered = {
        s.start: s
        for s in availability.location_slots(
            session, loc, service, first_day, days, now, include_full=True
        )
    }
    assert offered, "the scenario offers slots"
    assert any(s.free < 3 for s in offered.values()), "blocks and visits take chairs"
    for exclude in (None, visit.id):
        if exclude is not None:
            offered = {
                s.start: s
                for s in availability.location_slots(
                    session,
                    loc,
                    service,
                    first_day,
                    days,
                    now,
                    include_full=True,
                    exclude_appointment_id=exclude,
                )
            }
        instant = dt.datetime.combine(first_day, dt.time(0), tzinfo=LA).astimezone(dt.UTC)
        end = at(first_day + dt.timedelta(days=days), 0)
        checked = 0
        while instant < end:
            got = availability.slot_at(
                session, loc, service, instant, now, exclude_appointment_id=exclude
            )
            assert got == offered.get(instant), instant
            checked += got is not None
            instant += dt.timedelta(minutes=5)
        assert checked == len(offered)


def _patient(session):
    from scheduler.models import Patient

    patient = Patient(name="Pat", phone="+14155550001", email="pat@example.com")
    session.add(patient)
    session.flush()
    return patient


@pytest.mark.parametrize(
    "first_day",
    [dt.date(2026, 10, 29), dt.date(2027, 3, 11)],
    ids=["fall-back", "spring-forward"],
)
def test_slot_at_matches_the_listing_every_minute_of_a_week_with_shifts_and_capacity(
    session, first_day
):
    from scheduler.models import ShiftPattern
    from tests.test_staffing_support import rota

    now = dt.datetime.combine(first_day, dt.time(6), tzinfo=LA).astimezone(dt.UTC)
    loc = make_location(session, chairs=4, rooms=0, hours=((dt.time(8), dt.time(18)),))
    service = make_service(session, [loc], duration=40, prep=10, recovery=10, horizon_days=10)
    (doc,), (nurse,) = rota(
        session,
        loc,
        nurses=1,
        patients_per_nurse=2,
        starts_per_window=2,
        hours=(dt.time(8), dt.time(13)),
        start_window_minutes=20,
    )
    # An afternoon nurse and prescriber on some days only, arriving at 13:00 / 13:30.
    for weekday in range(0, 7, 2):
        session.add(
            ShiftPattern(
                clinician_id=doc.id,
                location_id=loc.id,
                weekday=weekday,
                starts=dt.time(13, 30),
                ends=dt.time(18),
            )
        )
        session.add(
            ShiftPattern(
                clinician_id=nurse.id,
                location_id=loc.id,
                weekday=weekday,
                starts=dt.time(13),
                ends=dt.time(18),
            )
        )
    from scheduler.models import Patient

    for n, (day, hour, minute) in enumerate(
        [(1, 9, 0), (1, 9, 15), (1, 9, 30), (2, 10, 0), (4, 14, 0)]
    ):
        start = dt.datetime.combine(
            first_day + dt.timedelta(days=day), dt.time(hour, minute), tzinfo=LA
        ).astimezone(dt.UTC)
        session.add(
            Appointment(
                location_id=loc.id,
                service_id=service.id,
                resource_id=loc.resources[n % 4].id,
                patient=Patient(name=f"P{n}", phone=f"+1415555010{n}", email=f"p{n}@example.com"),
                start_at=start,
                end_at=start + dt.timedelta(minutes=40),
                occupied_start=start - dt.timedelta(minutes=10),
                occupied_end=start + dt.timedelta(minutes=50),
                duration_minutes=40,
                prep_minutes=10,
                recovery_minutes=10,
                manage_token=f"tok{n}" * 10,
                ics_uid=f"v{n}@test",
            )
        )
    session.flush()
    days = 7
    offered = {
        s.start: s
        for s in availability.location_slots(
            session, loc, service, first_day, days, now, include_full=True
        )
    }
    assert any(s.free == 0 for s in offered.values()), "capacity fills some starts"
    assert any(0 < s.free < 4 for s in offered.values()), "capacity limits below the chairs"
    instant = dt.datetime.combine(first_day, dt.time(0), tzinfo=LA).astimezone(dt.UTC)
    end = dt.datetime.combine(first_day + dt.timedelta(days=days), dt.time(0), tzinfo=LA)
    checked = 0
    while instant < end:
        got = availability.slot_at(session, loc, service, instant, now)
        assert got == offered.get(instant), instant
        checked += got is not None
        instant += dt.timedelta(minutes=1)
    assert checked == len(offered)


def test_instants_reach_the_engine_exact_to_the_microsecond(session):
    """The loaders read instants as integers computed by the database: a fraction of a second
    is neither rounded (SQLite's unixepoch would round .999999 up) nor dropped, so a block that
    ends 0.000001 s after a start still takes that chair."""
    loc = make_location(session, chairs=1, rooms=0)
    chair = loc.resources[0]
    instants = [
        dt.datetime(2026, 12, 1, 16, 15, 0, 999_999, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 1, 16, 15, 30, 500_000, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 1, 16, 16, 0, 1, tzinfo=dt.UTC),
    ]
    for start in instants:
        end = start + dt.timedelta(microseconds=1)
        session.add(ResourceBlock(resource_id=chair.id, start_at=start, end_at=end))
    session.flush()
    window = (instants[0] - dt.timedelta(hours=1), instants[-1] + dt.timedelta(hours=1))
    read = availability._block_us(session, [chair.id], *window)[chair.id]
    us = [availability.to_us(t) for t in instants]
    assert sorted(read) == [(t, t + 1) for t in us]
    assert [availability.from_us(availability.to_us(t)) for t in instants] == instants


def test_the_floor_read_gives_every_visit_as_stored(session):
    """The floor's visits as the engine reads them (on SQLite one row of lists, on PostgreSQL a
    row per visit) equal the visits' own fields: infusions with their occupied intervals and
    starts, consultations with their prescriber or none, in any mix, cancelled ones left out."""
    import random

    from scheduler.models import Clinician

    rng = random.Random(41)
    loc = make_location(session, chairs=4, rooms=2)
    infusion = make_service(session, [loc], slug="inf", duration=40, prep=10, recovery=15)
    consultation = make_service(
        session, [loc], slug="con", kind="consultation", resource_kind="room", duration=30
    )
    doctors = [Clinician(name=f"Dr {i}", role="prescriber") for i in range(2)]
    session.add_all(doctors)
    session.flush()
    patient = _patient(session)
    base = dt.datetime(2026, 12, 7, 16, 0, 0, 123456, tzinfo=dt.UTC)
    expected_infusions, expected_consults = [], {}
    for i in range(60):
        service = rng.choice([infusion, consultation])
        rooms = [r for r in loc.resources if r.kind == service.resource_kind]
        # 70 minutes apart: no two visits meet (one patient and one chair or room at a time).
        start = base + dt.timedelta(minutes=70 * i, microseconds=rng.randrange(0, 999_999))
        clinician = rng.choice([None, *doctors]) if service is consultation else None
        active = rng.random() < 0.85
        occupied = (
            start - dt.timedelta(minutes=service.prep_minutes),
            start + dt.timedelta(minutes=service.duration_minutes + service.recovery_minutes),
        )
        session.add(
            Appointment(
                location_id=loc.id,
                service_id=service.id,
                resource_id=rng.choice(rooms).id,
                patient_id=patient.id,
                clinician_id=clinician.id if clinician else None,
                start_at=start,
                end_at=start + dt.timedelta(minutes=service.duration_minutes),
                occupied_start=occupied[0],
                occupied_end=occupied[1],
                duration_minutes=service.duration_minutes,
                prep_minutes=service.prep_minutes,
                recovery_minutes=service.recovery_minutes,
                manage_token=f"token-{i:03d}".ljust(40, "x"),
                ics_uid=f"visit-{i}@test",
                active=active,
                status="booked" if active else "cancelled",
            )
        )
        if not active:
            continue
        if service is infusion:
            expected_infusions.append((occupied, start))
        elif clinician is not None:
            end = start + dt.timedelta(minutes=service.duration_minutes)
            expected_consults.setdefault(clinician.id, []).append((start, end))
    session.flush()
    floor = availability.load_floor(
        session, loc, base - dt.timedelta(hours=1), base + dt.timedelta(hours=80)
    )
    assert sorted(floor.infusions) == sorted(occupied for occupied, _ in expected_infusions)
    assert list(floor.starts) == sorted(start for _, start in expected_infusions)
    assert {pid: sorted(ivs) for pid, ivs in floor.consults.items()} == {
        pid: sorted(ivs) for pid, ivs in expected_consults.items()
    }
    assert len(floor.infusions) >= 10 and len(expected_consults) == 2
