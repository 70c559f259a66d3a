"""Concurrent booking requests through a real threaded HTTP server, on both databases."""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from config import TestConfig
from scheduler import create_app
from scheduler.extensions import db
from scheduler.models import Appointment
from tests.factories import make_location, make_service, make_staff, patient_json

START = "2026-12-01T10:00:00-08:00"
CLIENTS = 30


@pytest.fixture
def server(app, db_url, clock):
    """A second app on the same database, served by a threaded server (one thread a request)."""
    served = create_app(TestConfig(db_url, CLOCK=clock))
    httpd = make_server("127.0.0.1", 0, served, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(5)
    with served.app_context():
        # A request thread may still be handing its connection back after its response went
        # out (a loaded machine): wait for it, or dispose() would orphan an open connection.
        deadline = time.monotonic() + 5
        while db.engine.pool.checkedout() and time.monotonic() < deadline:
            time.sleep(0.05)
        db.engine.dispose()


def _burst(url: str, bodies: list[dict]) -> list[int]:
    barrier = threading.Barrier(len(bodies))

    def post(body: dict) -> int:
        with requests.Session() as http:
            barrier.wait()
            return http.post(f"{url}/api/v1/appointments", json=body, timeout=60).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


@pytest.mark.parametrize("chairs_free", [1, 3])
def test_concurrent_requests_for_one_start_book_exactly_the_free_chairs(
    server, session, clock, chairs_free
):
    loc = make_location(session, slug="sf", chairs=4, rooms=0)
    make_service(session, [loc], slug="inf", duration=40, prep=10, recovery=10)
    session.commit()
    # Take chairs out of the running until `chairs_free` are left: blocks through the service.
    from scheduler.services import booking

    for resource in loc.resources[chairs_free:]:
        booking.create_block(
            session,
            resource,
            clock.now,
            clock.now.replace(year=2027),
            reason="repair",
            now=clock.now,
        )
    session.commit()
    bodies = [
        {"location": "sf", "service": "inf", "start": START, "patient": patient_json(i)}
        for i in range(CLIENTS)
    ]
    statuses = _burst(server, bodies)
    assert sorted(set(statuses)) == [201, 409], statuses
    assert statuses.count(201) == chairs_free
    assert statuses.count(409) == CLIENTS - chairs_free
    session.expire_all()
    rows = session.scalars(select(Appointment).where(Appointment.active.is_(True))).all()
    assert len(rows) == chairs_free
    assert len({r.resource_id for r in rows}) == chairs_free


def test_concurrent_same_idempotency_key_books_once(server, session):
    loc = make_location(session, slug="sf", chairs=4, rooms=0)
    make_service(session, [loc], slug="inf")
    session.commit()
    body = {"location": "sf", "service": "inf", "start": START, "patient": patient_json(1)}
    barrier = threading.Barrier(10)

    def post(_: int) -> tuple[int, str]:
        barrier.wait()
        r = requests.post(
            f"{server}/api/v1/appointments",
            json=body,
            headers={"Idempotency-Key": "same"},
            timeout=60,
        )
        return r.status_code, r.text

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(post, range(10)))
    assert {status for status, _ in results} == {201}
    assert len({text for _, text in results}) == 1
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Appointment)) == 1


def test_concurrent_block_and_booking_never_both_win(server, session, clock):
    loc = make_location(session, slug="sf", chairs=1, rooms=0)
    make_service(session, [loc], slug="inf")
    _, token = make_staff(session, role="admin", now=clock.now)
    session.commit()
    barrier = threading.Barrier(2)
    block = {
        "resource": "Chair 1",
        "start": "2026-12-01T09:00:00-08:00",
        "end": "2026-12-01T12:00:00-08:00",
        "reason": "repair",
    }

    def do_block(_: int) -> int:
        barrier.wait()
        return requests.post(
            f"{server}/api/v1/locations/sf/blocks",
            json=block,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ).status_code

    def do_book(_: int) -> int:
        barrier.wait()
        body = {"location": "sf", "service": "inf", "start": START, "patient": patient_json(1)}
        return requests.post(f"{server}/api/v1/appointments", json=body, timeout=60).status_code

    for _ in range(5):
        with ThreadPoolExecutor(2) as pool:
            fb, fk = pool.submit(do_block, 0), pool.submit(do_book, 0)
            results = {fb.result(), fk.result()}
        assert results in ({201, 409},), results
        # reset for the next round
        session.expire_all()
        from scheduler.models import ResourceBlock

        for row in session.scalars(select(ResourceBlock)):
            session.delete(row)
        for row in session.scalars(select(Appointment)):
            row.active = False
            row.status = "cancelled"
        session.commit()


def test_one_patient_racing_for_overlapping_times_gets_one_visit(server, session):
    """Ten requests from one patient for overlapping starts, with chairs free for all of them:
    exactly one books; the rest are told the patient already has a visit then (409)."""
    loc = make_location(session, slug="sf", chairs=4, rooms=0)
    make_service(session, [loc], slug="inf", duration=40, prep=10, recovery=10)
    session.commit()
    starts = ["2026-12-01T10:00:00-08:00", "2026-12-01T10:15:00-08:00"] * 5
    bodies = [
        {"location": "sf", "service": "inf", "start": start, "patient": patient_json(7)}
        for start in starts
    ]
    statuses = _burst(server, bodies)
    assert sorted(statuses) == [201] + [409] * 9, statuses
    session.expire_all()
    rows = session.scalars(select(Appointment).where(Appointment.active.is_(True))).all()
    assert len(rows) == 1


def test_nurse_capacity_is_a_count_serialized_per_location_and_day(server, session):
    """6 free chairs, one nurse at 1:2: of 30 concurrent infusion bookings exactly two win."""
    from tests.test_staffing_support import rota

    loc = make_location(session, slug="sf", chairs=6, rooms=0)
    make_service(session, [loc], slug="inf", duration=40, prep=10, recovery=10)
    rota(session, loc, nurses=1, patients_per_nurse=2, starts_per_window=30)
    session.commit()
    bodies = [
        {"location": "sf", "service": "inf", "start": START, "patient": patient_json(i)}
        for i in range(CLIENTS)
    ]
    statuses = _burst(server, bodies)
    assert statuses.count(201) == 2, statuses
    assert statuses.count(409) == CLIENTS - 2, statuses
    session.expire_all()
    rows = session.scalars(select(Appointment).where(Appointment.active.is_(True))).all()
    assert len(rows) == 2
    assert all(r.nurse_id is not None for r in rows)


def _cleared_patient(session, clock, service_slug: str, person: dict) -> int:
    """A patient (by their details) with a clearance for the service, committed."""
    from scheduler.models import Clearance, Service
    from scheduler.services.patients import PatientDetails, find_or_create, validate_details

    details = validate_details(
        PatientDetails(person["name"], person["phone"], person["email"], False)
    )
    details = PatientDetails(
        details.name,
        details.phone,
        details.email,
        False,
        dt.date.fromisoformat(person["date_of_birth"]),
    )
    patient = find_or_create(session, details, clock.now)
    service = session.scalars(select(Service).where(Service.slug == service_slug)).one()
    patient_id = patient.id  # read before commit: afterwards it would open a transaction
    session.add(Clearance(patient_id=patient_id, service_id=service.id, until=dt.date(2027, 6, 30)))
    session.commit()
    return patient_id


PERSON = {
    "name": "Walt Whitman",
    "phone": "+14155550142",
    "email": "walt@example.com",
    "date_of_birth": "1980-04-02",
}


def test_one_patient_racing_for_same_day_infusions_gets_exactly_one(server, session, clock):
    """Ten requests from one cleared patient for infusions at ten different times of one day,
    chairs free for all: the patient's row lock (PostgreSQL) or the write lock (SQLite)
    serializes them, so exactly one books and nine are told it is too soon."""
    loc = make_location(session, slug="sf", chairs=4, rooms=0, hours=((dt.time(7), dt.time(20)),))
    make_service(session, [loc], slug="inf", requires_clearance=True, min_gap_hours=20)
    session.commit()
    _cleared_patient(session, clock, "inf", PERSON)
    starts = [f"2026-12-01T{h:02d}:00:00-08:00" for h in range(8, 18)]
    bodies = [
        {"location": "sf", "service": "inf", "start": start, "patient": PERSON} for start in starts
    ]
    statuses = _burst(server, bodies)
    assert sorted(statuses) == [201] + [409] * 9, statuses
    session.expire_all()
    rows = session.scalars(select(Appointment).where(Appointment.active.is_(True))).all()
    assert len(rows) == 1


def _merge_while_booking(
    server: str, token: str, kept: int, dup: int, twin: dict, day: int
) -> tuple[int, int]:
    barrier = threading.Barrier(2)

    def do_merge() -> int:
        barrier.wait()
        return requests.post(
            f"{server}/api/v1/patients/{kept}/merge",
            json={"duplicate": dup},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ).status_code

    def do_book() -> int:
        barrier.wait()
        body = {
            "location": "sf",
            "service": "plain",
            "start": f"2026-12-0{day}T14:00:00-08:00",
            "patient": twin,
        }
        return requests.post(f"{server}/api/v1/appointments", json=body, timeout=60).status_code

    with ThreadPoolExecutor(2) as pool:
        merged, made = pool.submit(do_merge), pool.submit(do_book)
        return merged.result(), made.result()


def test_merge_under_a_concurrent_booking_loses_nothing(server, session, clock):
    """Staff merge a typo twin while that twin books: whichever goes first, every visit ends
    on the kept record and none is lost."""
    from scheduler.models import Patient

    loc = make_location(session, slug="sf", chairs=4, rooms=0)
    make_service(session, [loc], slug="plain", duration=30, prep=0, recovery=0)
    _, token = make_staff(session, role="front_desk", locations=[loc], now=clock.now)
    session.commit()
    booked = 0
    for round_ in range(4):
        twin = {**PERSON, "name": f"Walter Whitman{'e' * round_}"}
        # Both people have a visit already (so both are the staff member's patients).
        for who, hour in ((PERSON, 9), (twin, 10)):
            body = {
                "location": "sf",
                "service": "plain",
                "start": f"2026-12-0{round_ + 2}T{hour:02d}:00:00-08:00",
                "patient": who,
            }
            assert requests.post(f"{server}/api/v1/appointments", json=body, timeout=60).ok
            booked += 1
        session.expire_all()
        kept = session.scalars(select(Patient.id).where(Patient.name == PERSON["name"])).one()
        dup = session.scalars(select(Patient.id).where(Patient.name == twin["name"])).one()
        session.rollback()  # a read holds SQLite's write lock (BEGIN IMMEDIATE) until it ends
        assert _merge_while_booking(server, token, kept, dup, twin, round_ + 2) == (200, 201)
        booked += 1
        session.expire_all()
        owners = session.scalars(select(Appointment.patient_id).distinct()).all()
        kept_ids = session.scalars(select(Patient.id).where(Patient.merged_into_id.is_(None))).all()
        assert set(owners) <= set(kept_ids)
        assert session.scalar(select(func.count()).select_from(Appointment)) == booked
        session.rollback()


def test_two_courses_racing_for_the_last_chair_of_one_session(server, session, clock):
    """Two patients book the same six sessions; session 4 has one chair left: one whole course
    wins, the other is 409 naming that session and keeps nothing."""
    from scheduler.services import booking, courses

    loc = make_location(session, slug="sf", chairs=2, rooms=0)
    make_service(session, [loc], slug="inf")
    courses.save_template(
        session,
        None,
        {
            "slug": "induction",
            "name": "Induction",
            "service": "inf",
            "sessions": 6,
            "min_gap_hours": 44,
            "max_gap_hours": 168,
            "within_days": 21,
        },
    )
    first = dt.datetime.fromisoformat(START)
    starts = [first + dt.timedelta(days=2 * i) for i in range(6)]
    booking.create_block(
        session,
        loc.resources[1],
        starts[3] - dt.timedelta(hours=1),
        starts[3] + dt.timedelta(hours=2),
        now=clock.now,
    )
    session.commit()
    barrier = threading.Barrier(2)

    def post(n: int) -> tuple[int, dict]:
        body = {
            "location": "sf",
            "course": "induction",
            "starts": [s.isoformat() for s in starts],
            "patient": patient_json(n),
        }
        with requests.Session() as http:
            barrier.wait()
            r = http.post(f"{server}/api/v1/courses", json=body, timeout=60)
            return r.status_code, r.json()

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(post, [1, 2]), key=lambda x: x[0])
    (won, course), (lost, error) = results
    assert (won, lost) == (201, 409), results
    assert len(course["appointments"]) == 6
    assert error["error"]["code"] == "slot_unavailable"
    assert list(error["error"]["fields"]) == ["starts[3]"]
    session.expire_all()
    rows = session.scalars(select(Appointment)).all()
    assert len(rows) == 6 and {r.course_id for r in rows} == {course["id"]}


# --- the capacity locks: every local day a check reads ------------------------------------------
# Deterministic: the first writer holds its transaction open (its locks taken) while a second,
# in another thread and session, tries; the second must wait for the first to end.


def _staff_book(session, start: str, n: int, clock):
    from scheduler.services import booking
    from scheduler.services.patients import PatientDetails
    from scheduler.services.settings import ClinicSettings

    request = booking.BookingRequest(
        location="sf",
        service="inf",
        start=dt.datetime.fromisoformat(start),
        patient=PatientDetails(f"Pat {n}", f"+1415555{n:04d}", f"p{n}@example.com", False),
        source="staff",
        allow_short_notice=True,
    )
    settings = ClinicSettings(public_base_url="http://localhost", reminder_offsets=())
    return booking.book(session, request, now=clock.now, settings=settings)


def _while_held(app, work):
    """Run `work(session)` in another thread and session; the future holds its result (the
    transaction committed) or the DomainError it raised (rolled back)."""
    from scheduler.services.errors import DomainError

    def run():
        with app.app_context():
            try:
                result = work(db.session)
                db.session.commit()
                return result.id
            except DomainError as exc:
                db.session.rollback()
                return exc
            finally:
                db.session.remove()

    pool = ThreadPoolExecutor(1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def _is_waiting(future) -> bool:
    done, _ = wait([future], timeout=1.5)
    return not done


def test_a_start_window_across_midnight_locks_both_days(app, session, clock):
    """One start per 10 minutes: 23:55 is booked and not yet committed; a booking at 00:03 the
    next day (same window) waits for it, then is refused."""
    from scheduler.services.errors import SlotUnavailable
    from tests.test_staffing_support import rota

    loc = make_location(
        session,
        slug="sf",
        chairs=4,
        rooms=0,
        hours=((dt.time(0), dt.time(4)), (dt.time(20), dt.time(0))),
    )
    make_service(session, [loc], slug="inf", duration=5, prep=0, recovery=0)
    rota(
        session,
        loc,
        nurses=2,
        hours=(dt.time(0), dt.time(0)),
        starts_per_window=1,
        start_window_minutes=10,
    )
    session.commit()
    _staff_book(session, "2026-12-01T23:55:00-08:00", 1, clock)
    second = _while_held(app, lambda s: _staff_book(s, "2026-12-02T00:03:00-08:00", 2, clock))
    try:
        assert _is_waiting(second), second.result()
    finally:
        session.commit()
    assert isinstance(second.result(timeout=60), SlotUnavailable)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Appointment)) == 1


def test_a_move_locks_the_day_it_leaves(app, session, clock):
    """One nurse at 1:1. A visit moving from Wednesday 10:00 to Thursday holds both days, so a
    booking into the Wednesday time it frees waits for the move and then gets it (it neither
    sees the visit still there nor overtakes the move)."""
    from scheduler.services import booking
    from scheduler.services.settings import ClinicSettings
    from tests.test_staffing_support import rota

    loc = make_location(session, slug="sf", chairs=4, rooms=0)
    make_service(session, [loc], slug="inf", duration=40, prep=10, recovery=10)
    rota(session, loc, nurses=1, patients_per_nurse=1, starts_per_window=10)
    session.commit()
    moved = _staff_book(session, "2026-12-02T10:00:00-08:00", 1, clock)
    session.commit()
    settings = ClinicSettings(public_base_url="http://localhost", reminder_offsets=())
    booking.reschedule(
        session,
        moved,
        dt.datetime.fromisoformat("2026-12-03T10:00:00-08:00"),
        now=clock.now,
        settings=settings,
        by_staff=True,
    )
    taker = _while_held(app, lambda s: _staff_book(s, "2026-12-02T10:00:00-08:00", 2, clock))
    try:
        assert _is_waiting(taker), taker.result()
    finally:
        session.commit()
    assert isinstance(taker.result(timeout=60), int)
    session.expire_all()
    starts = session.scalars(select(Appointment.start_at).order_by(Appointment.start_at)).all()
    assert [s.astimezone(dt.UTC).day for s in starts] == [2, 3]


def _deactivate(session, clinician_id: int, clock):
    from scheduler.models import Clinician
    from scheduler.services import staffing

    clinician = session.get(Clinician, clinician_id)
    change = staffing.ClinicianChange(active=False)
    staffing.update_clinician(session, clinician, change, now=clock.now)
    return clinician


@pytest.mark.parametrize("first", ["deactivation", "booking"])
def test_deactivating_the_only_prescriber_and_a_booking_never_both_win(app, session, clock, first):
    """The prescriber's deactivation and an infusion booking that needs them, each held open
    while the other starts: the second waits for the first, then is refused (409)."""
    from scheduler.services.errors import ClinicianInUse, SlotUnavailable
    from tests.test_staffing_support import rota

    loc = make_location(session, slug="sf", chairs=4, rooms=0)
    make_service(session, [loc], slug="inf", duration=40, prep=10, recovery=10)
    (doc,), _ = rota(session, loc, nurses=1)
    session.commit()
    doc_id = doc.id
    if first == "deactivation":
        _deactivate(session, doc_id, clock)
        second = _while_held(app, lambda s: _staff_book(s, START, 1, clock))
        refusal: type = SlotUnavailable
    else:
        _staff_book(session, START, 1, clock)
        second = _while_held(app, lambda s: _deactivate(s, doc_id, clock))
        refusal = ClinicianInUse
    try:
        assert _is_waiting(second), second.result()
    finally:
        session.commit()
    assert isinstance(second.result(timeout=60), refusal)
    session.expire_all()
    booked = session.scalar(select(func.count()).select_from(Appointment))
    assert booked == (0 if first == "deactivation" else 1)
