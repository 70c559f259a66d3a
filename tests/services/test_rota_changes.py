"""Rota changes on both databases: leave touches one location, a removed nurse's visits are
handed on, shifts stay within the listable dates, a copied week keeps each shift's length across
DST, a clash names another location's times only to who may see it, and the prescribers a
patient may choose have a shift to come."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from scheduler.models import Shift, ShiftPattern
from scheduler.services import booking, staffing
from scheduler.services.errors import ClinicianBusy, InvalidInput
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service, make_staff
from tests.test_staffing_support import rota

LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
DAY = dt.date(2026, 12, 2)  # a Wednesday, after the suite's fixed now (Mon 30 Nov)
SETTINGS = ClinicSettings(public_base_url="http://localhost", reminder_offsets=())


def at(day: dt.date, hour: int, minute: int = 0, tz: ZoneInfo = LA) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz).astimezone(dt.UTC)


def _book(session, loc, svc, start, now, n):
    request = booking.BookingRequest(
        location=loc.slug,
        service=svc.slug,
        start=start,
        patient=PatientDetails(f"Pat {n}", f"+1415555{n:04d}", f"p{n}@example.com", False),
        source="staff",
        allow_short_notice=True,
    )
    return booking.book(session, request, now=now, settings=SETTINGS)


def _ids(shifts):
    return {(s.clinician_id, s.location_id) for s in shifts}


# --- leave is one location's ---------------------------------------------------------------------


def test_leave_removes_the_clinicians_shifts_at_that_location_only(session, clock):
    sf = make_location(session)
    ny = make_location(session, timezone="America/New_York")
    (doc,), _ = rota(session, sf, nurses=0, hours=(dt.time(8), dt.time(12)))
    # The same doctor works New York evenings (16:00-20:00 NY is 13:00-17:00 in SF).
    staffing.add_pattern(
        session,
        ny,
        doc.id,
        weekday=DAY.weekday(),
        starts=dt.time(16),
        ends=dt.time(20),
        now=clock.now,
    )
    session.flush()
    removed = staffing.add_leave(session, ny, doc, DAY, now=clock.now)
    assert [r.shift.location_id for r in removed] == [ny.id]
    assert staffing.location_shifts(session, ny, DAY, DAY) == []
    assert _ids(staffing.location_shifts(session, sf, DAY, DAY)) == {(doc.id, sf.id)}
    # Leave at a location where the clinician has no weekly shift that day removes nothing.
    other = make_location(session)
    assert staffing.add_leave(session, other, doc, DAY, now=clock.now) == []
    assert _ids(staffing.location_shifts(session, sf, DAY, DAY)) == {(doc.id, sf.id)}


# --- a removed nurse's visits are handed on ------------------------------------------------------


@pytest.fixture
def floor(session):
    loc = make_location(session, chairs=6, hours=((dt.time(8), dt.time(18)),))
    svc = make_service(session, [loc], duration=40, prep=10, recovery=10)
    (doc,), (nurse_a, nurse_b) = rota(
        session, loc, nurses=2, hours=(dt.time(8), dt.time(18)), patients_per_nurse=2
    )
    return loc, svc, nurse_a, nurse_b


def test_removing_a_nurses_shift_gives_her_visits_to_the_nurse_on_shift(session, clock, floor):
    loc, svc, nurse_a, nurse_b = floor
    visits = [_book(session, loc, svc, at(DAY, 10, 15 * i), clock.now, i) for i in range(2)]
    past = _book(session, loc, svc, at(DAY + dt.timedelta(days=1), 10), clock.now, 9)
    assert {v.nurse_id for v in visits} == {nurse_a.id, nurse_b.id}
    mine = next(v for v in visits if v.nurse_id == nurse_a.id)
    shift = next(
        s for s in staffing.location_shifts(session, loc, DAY, DAY) if s.clinician_id == nurse_a.id
    )
    removed = staffing.delete_shift(session, loc, shift.id, now=clock.now)
    assert removed.nurses == (staffing.NurseChange(mine.id, nurse_a.name, nurse_b.name),)
    session.expire_all()
    assert {session.get(type(v), v.id).nurse_id for v in visits} == {nurse_b.id}
    # The next day's visit keeps its nurse: her shift that day stands.
    assert session.get(type(past), past.id).nurse_id is not None


def test_leave_with_nobody_left_on_shift_leaves_the_visit_without_a_nurse(session, clock, floor):
    loc, svc, nurse_a, nurse_b = floor
    visit = _book(session, loc, svc, at(DAY, 10), clock.now, 1)
    first = visit.nurse_id
    assert first in (nurse_a.id, nurse_b.id)
    other = nurse_b if first == nurse_a.id else nurse_a
    (gone,) = staffing.add_leave(session, loc, other, DAY, now=clock.now)
    assert gone.nurses == ()  # not her visit
    # Rules off (no capacity refuses it): the last nurse on shift goes, the visit has none.
    staffing.patch_staffing(session, loc, {"rules": False}, now=clock.now)
    nurse = nurse_a if first == nurse_a.id else nurse_b
    (removal,) = staffing.add_leave(session, loc, nurse, DAY, now=clock.now)
    assert removal.nurses == (staffing.NurseChange(visit.id, nurse.name, None),)
    session.expire_all()
    assert session.get(type(visit), visit.id).nurse_id is None


def test_removing_a_one_off_nurse_shift_reassigns_too(session, clock, floor):
    loc, svc, nurse_a, nurse_b = floor
    extra = staffing.create_clinician(session, name="Extra Nurse", role="nurse")
    one_off = staffing.add_shift(session, loc, extra.id, at(DAY, 9), at(DAY, 12), now=clock.now)
    visits = [_book(session, loc, svc, at(DAY, 10), clock.now, i) for i in range(3)]
    watched = [v for v in visits if v.nurse_id == extra.id]
    assert len(watched) == 1  # balanced over three nurses
    removed = staffing.delete_shift(session, loc, one_off.id, now=clock.now)
    assert [c.appointment_id for c in removed.nurses] == [watched[0].id]
    assert removed.nurses[0].after in (nurse_a.name, nurse_b.name)
    session.expire_all()
    assert session.get(type(watched[0]), watched[0].id).nurse_id in (nurse_a.id, nurse_b.id)


# --- shifts stay within the dates the listing accepts --------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "fields"),
    [
        ("1900-01-01T00:00+14:00", "1900-01-01T04:00+14:00", ("start", "end")),
        ("2200-12-31T22:00-08:00", "2201-01-01T02:00-08:00", ("end",)),
        ("1899-12-31T22:00-08:00", "1900-01-01T02:00-08:00", ("start",)),
    ],
    ids=["kiribati-new-year", "past-the-last-day", "before-the-first-day"],
)
def test_shifts_outside_the_listable_dates_are_refused(session, start, end, fields):
    loc = make_location(session)
    nurse = staffing.create_clinician(session, name="Nurse", role="nurse")
    with pytest.raises(InvalidInput) as refused:
        staffing.add_shift(
            session, loc, nurse.id, dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
        )
    assert refused.value.fields == dict.fromkeys(fields, staffing.RANGE_MESSAGE)


def test_the_last_listable_day_takes_a_shift_to_its_midnight(session):
    loc = make_location(session)
    nurse = staffing.create_clinician(session, name="Nurse", role="nurse")
    last = dt.date(2200, 12, 31)
    shift = staffing.add_shift(session, loc, nurse.id, at(last, 16), at(last, 0) + dt.timedelta(1))
    assert [s.id for s in staffing.location_shifts(session, loc, last, last)] == [shift.id]


def test_copying_a_week_past_the_last_listable_day_is_refused(session):
    loc = make_location(session)
    rota(session, loc, nurses=1, hours=(dt.time(8), dt.time(18)))
    with pytest.raises(InvalidInput) as refused:
        staffing.copy_week(session, loc, dt.date(2026, 11, 30), dt.date(2200, 12, 29))
    assert refused.value.fields == {"target": staffing.RANGE_MESSAGE}
    assert session.scalars(Shift.__table__.select()).first() is None


# --- copying a week across DST keeps each shift's length -----------------------------------------


@pytest.mark.parametrize(
    ("saturday", "hours"),
    [(dt.date(2027, 3, 13), 4), (dt.date(2026, 10, 31), 5)],
    ids=["spring-forward", "fall-back"],
)
def test_a_copied_night_shift_keeps_its_start_and_length_across_dst(session, saturday, hours):
    """22:00 to 02:00 by the clock is 4 hours on the spring-forward night and 5 on the fall-back
    night; a copy starts at 22:00 and lasts as long, into a normal week and back."""
    loc = make_location(session)
    nurse = staffing.create_clinician(session, name="Night Nurse", role="nurse")
    start = at(saturday, 22)
    end = start + dt.timedelta(hours=hours)
    # Spring: 02:00 does not exist, the clock reads 03:00 four hours on; fall: 02:00 after five.
    assert end.astimezone(LA).time() == dt.time(3 if hours == 4 else 2)
    staffing.add_shift(session, loc, nurse.id, start, end)
    monday = saturday - dt.timedelta(days=5)
    week = dt.timedelta(days=7)
    (copy,) = staffing.copy_week(session, loc, monday, monday + week)
    assert copy.start.astimezone(LA).time() == dt.time(22)
    assert copy.end - copy.start == dt.timedelta(hours=hours)
    # And from a normal week into the DST week: 22:00 for four hours.
    before = staffing.create_clinician(session, name="Other Nurse", role="nurse")
    normal = saturday - week
    staffing.add_shift(session, loc, before.id, at(normal, 22), at(normal + dt.timedelta(1), 2))
    copies = staffing.copy_week(session, loc, monday - week, monday)
    (into,) = [c for c in copies if c.clinician_id == before.id]
    assert into.start == at(saturday, 22) and into.end - into.start == dt.timedelta(hours=4)


# --- a clash names another location's times only to who may see it -------------------------------


def test_clinician_busy_names_another_locations_times_only_to_its_staff(session):
    sf = make_location(session, slug="sf-busy")
    ny = make_location(session, slug="ny-busy", timezone="America/New_York")
    nurse = staffing.create_clinician(session, name="Flo Float", role="nurse")
    staffing.add_shift(session, sf, nurse.id, at(DAY, 11), at(DAY, 21))
    ny_manager, _ = make_staff(session, role="manager", locations=(ny,))
    both, _ = make_staff(session, role="manager", locations=(sf, ny))
    clash = (at(DAY, 15, tz=NY), at(DAY, 17, tz=NY))
    for viewer, shown in ((ny_manager, False), (None, False), (both, True)):
        with pytest.raises(ClinicianBusy) as refused:
            staffing.add_shift(session, ny, nurse.id, *clash, viewer=viewer)
        message = str(refused.value)
        assert ("(Wed 02 Dec 14:00-00:00)" in message) is shown, message
        assert ("(at another location)" in message) is not shown, message
    # At the same location the times are the caller's own rota: shown.
    with pytest.raises(ClinicianBusy) as refused:
        staffing.add_shift(session, sf, nurse.id, at(DAY, 12), at(DAY, 13), viewer=ny_manager)
    assert "(Wed 02 Dec 11:00-21:00)" in str(refused.value)


# --- the prescribers a patient may choose --------------------------------------------------------


def test_only_prescribers_with_a_shift_to_come_within_the_horizon_are_listed(session, clock):
    loc = make_location(session)
    consult = make_service(session, [loc], kind="consultation", resource_kind="room", duration=60)
    names = ("Past Shift", "Next Week", "Far Away", "Weekly Ended", "Weekly")
    past, soon, far, ended, weekly = (
        staffing.create_clinician(session, name=n, role="prescriber") for n in names
    )
    today = clock.now.astimezone(LA).date()
    for clinician, days in ((past, -3), (soon, 7), (far, 90)):  # the horizon is 60 days
        day = today + dt.timedelta(days=days)
        staffing.add_shift(session, loc, clinician.id, at(day, 9), at(day, 12))
    for clinician, until in ((ended, today - dt.timedelta(days=1)), (weekly, None)):
        session.add(
            ShiftPattern(
                clinician_id=clinician.id,
                location_id=loc.id,
                weekday=2,
                starts=dt.time(9),
                ends=dt.time(12),
                valid_until=until,
            )
        )
    session.flush()
    listed = staffing.prescribers_at(session, loc, consult, now=clock.now)
    assert [c.name for c in listed] == ["Next Week", "Weekly"]
    # A shift in progress now still counts: it is bookable for its rest.
    hour = dt.timedelta(hours=1)
    staffing.add_shift(session, loc, past.id, clock.now - hour, clock.now + 2 * hour)
    listed = staffing.prescribers_at(session, loc, consult, now=clock.now)
    assert [c.name for c in listed] == ["Next Week", "Past Shift", "Weekly"]
