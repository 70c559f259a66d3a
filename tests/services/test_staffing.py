"""Staffing rules and the rota on both databases: prescriber cover, nurse capacity, the start
window, consultations' prescribers, DST weeks, clashes, refusals, and the grid fixes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from scheduler.models import Clinician, ShiftPattern
from scheduler.services import availability, booking, staffing
from scheduler.services.errors import ClinicianBusy, Conflict, ShiftInUse, StaffingInUse
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service
from tests.test_staffing_support import rota

LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
DAY = dt.date(2026, 12, 2)  # a Wednesday
SETTINGS = ClinicSettings(public_base_url="http://localhost", reminder_offsets=())


def at(day: dt.date, hour: int, minute: int = 0, tz: ZoneInfo = LA) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz).astimezone(dt.UTC)


def _book(session, loc, svc, start, now, n, *, clinician=None, staff=False):
    request = booking.BookingRequest(
        location=loc.slug,
        service=svc.slug,
        start=start,
        patient=PatientDetails(f"Pat {n}", f"+1415555{n:04d}", f"p{n}@example.com", False),
        clinician=clinician,
        source="staff" if staff else "online",
        allow_short_notice=staff,
    )
    return booking.book(session, request, now=now, settings=SETTINGS)


def _starts(session, loc, svc, now, day=DAY, **kw):
    return {s.start: s for s in availability.location_slots(session, loc, svc, day, 1, now, **kw)}


@pytest.mark.parametrize(
    "first_day", [dt.date(2026, 10, 29), dt.date(2027, 3, 11)], ids=["fall-back", "spring-forward"]
)
def test_pattern_shifts_stay_at_local_eight_to_six_across_dst(session, first_day):
    loc = make_location(session)
    rota(session, loc, prescribers=1, nurses=0, hours=(dt.time(8), dt.time(18)))
    shifts = staffing.location_shifts(session, loc, first_day, first_day + dt.timedelta(days=6))
    assert len(shifts) == 7
    offsets = set()
    for shift in shifts:
        start, end = shift.start.astimezone(LA), shift.end.astimezone(LA)
        assert (start.time(), end.time()) == (dt.time(8), dt.time(18))
        assert shift.id == f"p{shift.id[1:].split(':')[0]}:{start.date().isoformat()}"
        offsets.add(start.utcoffset())
    assert len(offsets) == 2, "the week crosses the change"


def test_infusions_need_a_prescriber_for_the_whole_occupied_interval(session, clock):
    loc = make_location(session, hours=((dt.time(8), dt.time(18)),))
    svc = make_service(session, [loc], duration=40, prep=10, recovery=10, step=15)
    prescribers, nurses = rota(session, loc, prescribers=0, nurses=2)
    doc = Clinician(name="Dr A", role="prescriber")
    session.add(doc)
    session.flush()
    session.add(
        ShiftPattern(
            clinician_id=doc.id,
            location_id=loc.id,
            weekday=DAY.weekday(),
            starts=dt.time(9),
            ends=dt.time(13),
        )
    )
    session.flush()
    starts = _starts(session, loc, svc, clock.now)
    assert at(DAY, 9, 15) in starts  # occupied 09:05-10:05
    assert at(DAY, 9) not in starts  # prep 08:50 before the prescriber arrives
    assert at(DAY, 12) in starts  # 11:50-12:50
    assert at(DAY, 12, 15) not in starts  # 12:05-13:05 outlasts the prescriber
    assert not any(s >= at(DAY, 12, 30) for s in starts)


def test_nurse_capacity_and_start_window_count_every_instant(session, clock):
    loc = make_location(session, chairs=8, hours=((dt.time(8), dt.time(18)),))
    svc = make_service(session, [loc], duration=40, prep=10, recovery=10)
    rota(session, loc, nurses=1, patients_per_nurse=2, starts_per_window=1, start_window_minutes=30)
    starts = _starts(session, loc, svc, clock.now)
    assert starts[at(DAY, 10)].free == 1  # the start window allows one
    first = _book(session, loc, svc, at(DAY, 10), clock.now, 1)
    assert first.nurse_id is not None
    starts = _starts(session, loc, svc, clock.now)
    for minute in (0, 15):
        assert at(DAY, 10, minute) not in starts  # within 30 minutes of the 10:00 start
    assert starts[at(DAY, 10, 30)].free == 1  # nurse room 1 left, window free again
    _book(session, loc, svc, at(DAY, 10, 30), clock.now, 2)
    starts = _starts(session, loc, svc, clock.now)
    assert starts[at(DAY, 11)].free == 1  # 10:50-11:50 meets only the 10:30 visit
    loc.starts_per_window = 10  # now the nurse alone limits
    session.flush()
    starts = _starts(session, loc, svc, clock.now)
    assert at(DAY, 10, 45) not in starts  # 10:35-10:50 holds both patients: 1 nurse x 2 full
    assert starts[at(DAY, 11)].free == 1
    with pytest.raises(Exception) as exc:
        _book(session, loc, svc, at(DAY, 10, 45), clock.now, 3)
    assert getattr(exc.value, "code", "") == "slot_unavailable"


def test_consultations_take_a_free_prescriber_one_patient_at_a_time(session, clock):
    loc = make_location(session, rooms=3, hours=((dt.time(8), dt.time(18)),))
    svc = make_service(
        session,
        [loc],
        kind="consultation",
        resource_kind="room",
        duration=45,
        prep=0,
        recovery=0,
        step=15,
    )
    (doc_a, doc_b), _ = rota(session, loc, prescribers=2, nurses=0)
    slot = _starts(session, loc, svc, clock.now)[at(DAY, 10)]
    assert slot.free == 2 and set(slot.clinicians) == {doc_a.id, doc_b.id}
    appt = _book(session, loc, svc, at(DAY, 10), clock.now, 1, clinician=doc_b.id)
    assert appt.clinician_id == doc_b.id
    slot = _starts(session, loc, svc, clock.now)[at(DAY, 10)]
    assert slot.free == 1 and slot.clinicians == (doc_a.id,)
    assert at(DAY, 10) not in _starts(session, loc, svc, clock.now, clinician=doc_b.id)
    with pytest.raises(Exception) as exc:
        _book(session, loc, svc, at(DAY, 10), clock.now, 2, clinician=doc_b.id)
    assert exc.value.code == "slot_unavailable"
    other = _book(session, loc, svc, at(DAY, 10), clock.now, 3)
    assert other.clinician_id == doc_a.id
    assert at(DAY, 10) not in _starts(session, loc, svc, clock.now)


def test_a_clinician_never_holds_two_overlapping_shifts_anywhere(session):
    sf = make_location(session)
    ny = make_location(session, timezone="America/New_York")
    (doc,), _ = rota(session, sf, prescribers=1, nurses=0, hours=(dt.time(8), dt.time(18)))
    with pytest.raises(ClinicianBusy):  # 13:00 NY is 10:00 in San Francisco
        staffing.add_shift(session, ny, doc.id, at(DAY, 12, tz=NY), at(DAY, 14, tz=NY))
    shift = staffing.add_shift(session, ny, doc.id, at(DAY, 6, tz=NY), at(DAY, 10, tz=NY))
    assert shift.id.startswith("s")
    with pytest.raises(ClinicianBusy):
        staffing.add_shift(session, ny, doc.id, at(DAY, 9, tz=NY), at(DAY, 10, tz=NY))


def test_removing_a_needed_shift_or_tightening_the_rules_is_refused_with_the_visits(session, clock):
    loc = make_location(session, chairs=6, hours=((dt.time(8), dt.time(18)),))
    svc = make_service(session, [loc], duration=40, prep=10, recovery=10)
    (doc,), (nurse_a, nurse_b) = rota(session, loc, nurses=2, patients_per_nurse=1)
    one = _book(session, loc, svc, at(DAY, 10), clock.now, 1)
    two = _book(session, loc, svc, at(DAY, 10, 30), clock.now, 2)
    shifts = staffing.location_shifts(session, loc, DAY, DAY)
    doc_shift = next(s for s in shifts if s.clinician_id == doc.id)
    with pytest.raises(ShiftInUse) as exc:
        staffing.delete_shift(session, loc, doc_shift.id, now=clock.now)
    assert exc.value.appointments == sorted([one.id, two.id])
    nurse_shift = next(s for s in shifts if s.clinician_id == nurse_b.id)
    with pytest.raises(ShiftInUse) as exc:
        staffing.delete_shift(session, loc, nurse_shift.id, now=clock.now)
    assert exc.value.appointments == sorted([one.id, two.id])  # overlap 10:20-10:50
    with pytest.raises(StaffingInUse) as exc:
        staffing.patch_staffing(
            session, loc, {"start_window_minutes": 60, "starts_per_window": 1}, now=clock.now
        )
    assert exc.value.appointments == sorted([one.id, two.id])
    staffing.patch_staffing(session, loc, {"patients_per_nurse": 3}, now=clock.now)
    staffing.delete_shift(session, loc, nurse_shift.id, now=clock.now)  # 1 nurse x 3 is enough
    assert nurse_shift.id not in {s.id for s in staffing.location_shifts(session, loc, DAY, DAY)}
    with pytest.raises(Conflict) as block:
        booking.create_block(
            session, one.resource, at(DAY, 9), at(DAY, 12), reason="x", now=clock.now
        )
    assert block.value.appointments == [one.id]


def test_a_long_infusion_is_offered_right_after_opening_and_staff_may_book_any_minute(
    session, clock
):
    loc = make_location(session, hours=((dt.time(8), dt.time(12, 30)), (dt.time(13), dt.time(18))))
    svc = make_service(session, [loc], duration=240, prep=15, recovery=15, step=30)
    starts = sorted(_starts(session, loc, svc, clock.now))
    assert starts[0] == at(DAY, 8, 15)  # occupied 08:00-12:30, off the 30-minute grid
    appt = _book(session, loc, svc, at(DAY, 13, 17), clock.now, 1, staff=True)
    assert appt.start_at == at(DAY, 13, 17)
    with pytest.raises(Exception) as exc:
        _book(session, loc, svc, at(DAY, 13, 20), clock.now, 2)  # online: the grid only
    assert exc.value.code == "invalid"


def test_hours_to_midnight_offer_and_book_a_late_start(session, clock):
    from scheduler.services import settings_admin

    loc = make_location(session, hours=())
    settings_admin.set_hours(session, loc, {d: "16:00-24:00" for d in range(7)})
    assert settings_admin.hours_text(loc)[0] == "16:00-24:00"
    svc = make_service(session, [loc], duration=40, prep=10, recovery=10, step=15)
    starts = _starts(session, loc, svc, clock.now)
    assert at(DAY, 23) in starts
    assert max(starts) == at(DAY, 23, 0)  # 23:15 + 50 minutes would pass midnight
    appt = _book(session, loc, svc, at(DAY, 23), clock.now, 1)
    assert appt.occupied_end == at(DAY + dt.timedelta(days=1), 0) - dt.timedelta(minutes=10)


def test_nurses_are_balanced_and_moves_check_the_same_rules(session, clock):
    loc = make_location(session, chairs=6, hours=((dt.time(8), dt.time(18)),))
    svc = make_service(session, [loc], duration=40, prep=10, recovery=10)
    _, (nurse_a, nurse_b) = rota(session, loc, nurses=2, patients_per_nurse=1)
    one = _book(session, loc, svc, at(DAY, 10), clock.now, 1)
    two = _book(session, loc, svc, at(DAY, 10, 15), clock.now, 2)
    assert {one.nurse_id, two.nurse_id} == {nurse_a.id, nurse_b.id}
    three = _book(session, loc, svc, at(DAY, 14), clock.now, 3)
    with pytest.raises(Exception) as exc:  # 10:30 meets both: two nurses x 1 are taken
        booking.reschedule(session, three, at(DAY, 10, 30), now=clock.now, settings=SETTINGS)
    assert exc.value.code == "slot_unavailable"
    moved = booking.reschedule(session, three, at(DAY, 11, 15), now=clock.now, settings=SETTINGS)
    assert moved.start_at == at(DAY, 11, 15) and moved.nurse_id is not None


def test_leave_and_copy_week_change_single_days(session, clock):
    loc = make_location(session)
    (doc,), _ = rota(session, loc, nurses=0, hours=(dt.time(8), dt.time(18)))
    removed = [r.shift for r in staffing.add_leave(session, loc, doc, DAY, now=clock.now)]
    assert [s.id for s in removed] == [f"{removed[0].id.split(':')[0]}:{DAY.isoformat()}"]
    assert staffing.location_shifts(session, loc, DAY, DAY) == []
    extra = staffing.add_shift(session, loc, doc.id, at(DAY, 9), at(DAY, 12))
    monday = dt.date(2026, 11, 30)
    next_monday = monday + dt.timedelta(days=7)
    # The pattern already puts the doctor there next week, but not the 09:00-12:00 extra.
    with pytest.raises(ClinicianBusy), session.begin_nested():
        staffing.copy_week(session, loc, monday, next_monday)
    # Copy into a week where the pattern is no longer valid: every shift comes across.
    for pattern in session.query(ShiftPattern).filter_by(clinician_id=doc.id):
        pattern.valid_until = monday + dt.timedelta(days=6)
    session.flush()
    source = staffing.location_shifts(session, loc, monday, monday + dt.timedelta(days=6))
    created = staffing.copy_week(session, loc, monday, next_monday)
    assert len(created) == len(source) == 7
    assert all(
        c.start.astimezone(LA).time() == s.start.astimezone(LA).time()
        for c, s in zip(created, source, strict=True)
    )
    assert extra.id not in {c.id for c in created}


def test_undoing_a_no_show_is_refused_when_the_nurse_room_was_taken(session, clock):
    loc = make_location(session, chairs=6, hours=((dt.time(8), dt.time(18)),))
    svc = make_service(session, [loc], duration=40, prep=10, recovery=10)
    rota(session, loc, nurses=1, patients_per_nurse=1)
    first = _book(session, loc, svc, at(DAY, 10), clock.now, 1)
    # 10:05, nobody came: a no-show, and a walk-in takes the nurse at 10:15 (chairs are free).
    no_show_at = at(DAY, 10, 5)
    booking.set_status(session, first, "no_show", now=no_show_at, settings=SETTINGS)
    _book(session, loc, svc, at(DAY, 10, 15), no_show_at, 2, staff=True)
    with pytest.raises(Exception) as exc:
        booking.set_status(session, first, "booked", now=no_show_at, settings=SETTINGS)
    assert exc.value.code == "slot_unavailable"
    assert first.status == "no_show"


@pytest.mark.parametrize("status", ["completed", "no_show"])
def test_a_visit_is_completed_or_a_no_show_only_once_it_has_started(session, clock, status):
    loc = make_location(session)
    svc = make_service(session, [loc])
    visit = _book(session, loc, svc, at(DAY, 10), clock.now, 1)
    if status == "completed":
        booking.set_status(session, visit, "checked_in", now=clock.now, settings=SETTINGS)
    for early in (clock.now, at(DAY, 9, 59)):
        with pytest.raises(Conflict) as refused:
            booking.set_status(session, visit, status, now=early, settings=SETTINGS)
        assert refused.value.http_status == 409
        assert refused.value.fields == {"status": f"{status} before the visit starts"}
        assert "Wed 02 Dec 10:00 PST" in str(refused.value)
        assert status not in booking.allowed_statuses(visit, early)
    assert status in booking.allowed_statuses(visit, at(DAY, 10))
    booking.set_status(session, visit, status, now=at(DAY, 10), settings=SETTINGS)
    assert visit.status == status


@pytest.mark.parametrize(
    "first_day", [dt.date(2026, 10, 26), dt.date(2027, 3, 8)], ids=["fall-back", "spring-forward"]
)
def test_the_engines_rota_spans_are_the_listed_shifts(session, clock, first_day):
    """availability reads the rota as integer spans (patterns expanded through a cache): the
    same shifts as shift_intervals, with leave, validity dates, one-offs, an inactive clinician,
    a shift to midnight, and again after a pattern is edited."""
    loc = make_location(session)
    (doc,), (nurse, other) = rota(session, loc, nurses=2, hours=(dt.time(8), dt.time(0)))
    patterns = session.query(ShiftPattern).filter_by(clinician_id=other.id).all()
    patterns[0].valid_from = first_day + dt.timedelta(days=3)
    patterns[1].valid_until = first_day + dt.timedelta(days=2)
    staffing.add_leave(session, loc, doc, first_day + dt.timedelta(days=1), now=clock.now)
    cover = Clinician(name="Cover nurse", role="nurse")
    gone = Clinician(name="Gone nurse", role="nurse", active=False)
    session.add_all([cover, gone])
    session.flush()
    staffing.add_shift(session, loc, cover.id, at(first_day, 6), at(first_day, 9))
    session.add(
        ShiftPattern(
            clinician_id=gone.id, location_id=loc.id, weekday=0, starts=dt.time(9), ends=dt.time(17)
        )
    )
    session.flush()
    start, end = at(first_day, 0), at(first_day + dt.timedelta(days=8), 12)

    def as_listed() -> tuple[dict[int, list[tuple[int, int]]], list[tuple[int, int]]]:
        prescribers: dict[int, list[tuple[int, int]]] = {}
        nurses = []
        for s in staffing.shift_intervals(session, loc, start, end):
            span = (availability.to_us(s.start), availability.to_us(s.end))
            if s.role == "prescriber":
                prescribers.setdefault(s.clinician_id, []).append(span)
            else:
                nurses.append(span)
        return {k: sorted(v) for k, v in prescribers.items()}, sorted(nurses)

    def as_read() -> tuple[dict[int, list[tuple[int, int]]], list[tuple[int, int]]]:
        prescribers, nurses = staffing.shift_spans(session, loc, start, end)
        return {k: sorted(v) for k, v in prescribers.items()}, sorted(nurses)

    listed = as_listed()
    assert as_read() == listed
    assert len(listed[1]) > 9 and len(listed[0][doc.id]) == 8
    patterns[0].starts = dt.time(10)  # an edited pattern is a new cache key
    session.flush()
    assert as_read() == as_listed() != listed
