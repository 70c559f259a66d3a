"""Booking through the JSON API, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import Appointment
from scheduler.services import booking
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service, make_staff, patient_json

DAY = "2026-12-01"


@pytest.fixture
def clinic(session):
    """One chair, services of 30, 60 and 120 minutes without buffers, one with buffers."""
    loc = make_location(session, slug="sf", chairs=1, rooms=0)
    svc = {
        "s30": make_service(session, [loc], slug="s30", duration=30, prep=0, recovery=0),
        "s60": make_service(session, [loc], slug="s60", duration=60, prep=0, recovery=0),
        "s120": make_service(session, [loc], slug="s120", duration=120, prep=0, recovery=0),
        "buf": make_service(session, [loc], slug="buf", duration=40, prep=10, recovery=10),
    }
    session.commit()
    return loc, svc


def book(client, start: str, service: str = "s60", n: int = 1, **extra: Any):
    body = {
        "location": "sf",
        "service": service,
        "start": start,
        "patient": patient_json(n),
        "sms_consent": True,
    }
    body.update(extra)
    return client.post("/api/v1/appointments", json=body)


def at(hm: str, offset: str = "-08:00") -> str:
    return f"{DAY}T{hm}:00{offset}"


def active_count(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).where(Appointment.active.is_(True)))


def test_booking_returns_the_contract_shape(client, clinic):
    r = book(client, at("10:00"))
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["status"] == "booked"
    assert body["start"] == "2026-12-01T10:00:00-08:00"
    assert body["end"] == "2026-12-01T11:00:00-08:00"
    assert body["location"] == "sf" and body["service"] == "s60"
    assert body["resource"] == {"kind": "chair", "name": "Chair 1"}
    assert len(body["manage_token"]) >= 32
    assert body["manage_url"].endswith("/a/" + body["manage_token"])
    got = client.get(f"/api/v1/manage/{body['manage_token']}").get_json()
    assert got["id"] == body["id"] and got["status"] == "booked"


@pytest.mark.parametrize(
    ("case", "service", "start"),
    [
        ("identical", "s60", "10:00"),
        ("head", "s60", "09:30"),  # 09:30-10:30 overlaps the start of 10:00-11:00
        ("tail", "s60", "10:30"),  # 10:30-11:30 overlaps the end
        ("contained", "s30", "10:15"),
        ("containing", "s120", "09:30"),
    ],
)
def test_partial_overlaps_are_refused(client, session, clinic, case, service, start):
    assert book(client, at("10:00"), n=1).status_code == 201
    r = book(client, at(start), service=service, n=2)
    assert r.status_code == 409, (case, r.get_json())
    assert r.get_json()["error"]["code"] == "slot_unavailable"
    assert active_count(session) == 1


def test_back_to_back_bookings_are_accepted(client, session, clinic):
    assert book(client, at("10:00"), n=1).status_code == 201
    assert book(client, at("11:00"), n=2).status_code == 201
    assert book(client, at("09:00"), n=3).status_code == 201
    assert active_count(session) == 3


def test_buffers_keep_the_chair_between_visits(client, session, clinic):
    assert book(client, at("10:00"), service="buf", n=1).status_code == 201  # occupies 09:50-10:50
    assert book(client, at("10:45"), service="buf", n=2).status_code == 409  # prep from 10:35
    assert book(client, at("11:00"), service="buf", n=3).status_code == 201  # prep from 10:50


def test_cancel_then_rebook_the_same_slot(client, session, clinic):
    first = book(client, at("10:00"), n=1).get_json()
    assert book(client, at("10:00"), n=2).status_code == 409
    r = client.post(f"/api/v1/manage/{first['manage_token']}/cancel")
    assert r.status_code == 200 and r.get_json() == {"status": "cancelled"}
    assert book(client, at("10:00"), n=2).status_code == 201
    assert active_count(session) == 1


def test_cancelling_twice_is_harmless(client, clinic):
    token = book(client, at("10:00")).get_json()["manage_token"]
    assert client.post(f"/api/v1/manage/{token}/cancel").status_code == 200
    assert client.post(f"/api/v1/manage/{token}/cancel").get_json() == {"status": "cancelled"}


def test_reschedule_frees_the_old_slot_and_keeps_the_token(client, session, clinic):
    first = book(client, at("10:00"), n=1).get_json()
    r = client.post(
        f"/api/v1/manage/{first['manage_token']}/reschedule", json={"start": at("13:00")}
    )
    assert r.status_code == 200, r.get_json()
    moved = r.get_json()
    assert moved["id"] == first["id"] and moved["manage_token"] == first["manage_token"]
    assert moved["start"] == "2026-12-01T13:00:00-08:00"
    assert book(client, at("10:00"), n=2).status_code == 201
    assert book(client, at("13:00"), n=3).status_code == 409
    assert active_count(session) == 2


def test_reschedule_may_overlap_its_own_old_interval(client, clinic):
    token = book(client, at("10:00")).get_json()["manage_token"]
    r = client.post(f"/api/v1/manage/{token}/reschedule", json={"start": at("10:30")})
    assert r.status_code == 200, r.get_json()


def test_reschedule_keeps_the_booked_buffers_after_the_service_changed(client, session, clinic):
    _, svc = clinic
    token = book(client, at("09:15"), service="buf", n=1).get_json()["manage_token"]
    svc["buf"].prep_minutes = svc["buf"].recovery_minutes = 0  # edited after booking
    session.commit()
    assert book(client, at("11:00"), service="buf", n=2).status_code == 201  # occupies 11:00-11:40
    # Under today's rules 10:15-10:55 is free; with its booked buffers the visit occupies
    # 10:05-11:05, which meets the 11:00 visit.
    r = client.post(f"/api/v1/manage/{token}/reschedule", json={"start": at("10:15")})
    assert r.status_code == 409, r.get_json()
    r = client.post(f"/api/v1/manage/{token}/reschedule", json={"start": at("10:00")})
    assert r.status_code == 200, r.get_json()  # 09:50-10:50 is clear of 11:00


def test_reschedule_onto_a_taken_time_changes_nothing(client, session, clinic):
    token = book(client, at("10:00"), n=1).get_json()["manage_token"]
    assert book(client, at("12:00"), n=2).status_code == 201
    r = client.post(f"/api/v1/manage/{token}/reschedule", json={"start": at("12:00")})
    assert r.status_code == 409
    assert client.get(f"/api/v1/manage/{token}").get_json()["start"] == at("10:00")


def test_the_same_instant_in_another_offset_is_the_same_booking(client, session, clinic):
    assert book(client, at("10:00"), n=1).status_code == 201
    r = book(client, f"{DAY}T18:00:00Z", n=2)
    assert r.status_code == 409
    r = book(client, f"{DAY}T13:00:00-05:00", n=3)  # 10:00 in Los Angeles
    assert r.status_code == 409


def test_instant_in_utc_is_answered_in_local_offset(client, clinic):
    r = book(client, f"{DAY}T18:00:00Z")
    assert r.status_code == 201
    assert r.get_json()["start"] == "2026-12-01T10:00:00-08:00"


def test_a_patient_cannot_hold_two_overlapping_visits(client, session):
    loc = make_location(session, slug="sf", chairs=2, rooms=0)
    make_service(session, [loc], slug="s60", duration=60, prep=0, recovery=0)
    session.commit()
    assert book(client, at("10:00"), n=7).status_code == 201
    r = book(client, at("10:30"), n=7)
    assert r.status_code == 409
    assert r.get_json()["error"]["code"] == "conflict"
    assert book(client, at("11:00"), n=7).status_code == 201


def test_too_late_to_cancel_inside_the_window(client, clinic, clock):
    token = book(client, at("10:00")).get_json()["manage_token"]
    clock.now = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)  # 26 hours before: still fine
    clock.now = dt.datetime(2026, 12, 1, 17, 0, tzinfo=dt.UTC)  # 1 hour before
    r = client.post(f"/api/v1/manage/{token}/cancel")
    assert r.status_code == 409
    assert r.get_json()["error"]["code"] == "too_late"
    assert "+14155550100" in r.get_json()["error"]["message"]


def test_idempotency_key_replays_and_detects_a_different_body(client, session, clinic):
    headers = {"Idempotency-Key": "k-123"}
    body = {
        "location": "sf",
        "service": "s60",
        "start": at("10:00"),
        "patient": patient_json(1),
        "sms_consent": False,
    }
    first = client.post("/api/v1/appointments", json=body, headers=headers)
    again = client.post("/api/v1/appointments", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert active_count(session) == 1
    other = client.post(
        "/api/v1/appointments", json={**body, "start": at("12:00")}, headers=headers
    )
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_mismatch"
    assert active_count(session) == 1


GOOD = {
    "location": "sf",
    "service": "s60",
    "start": f"{DAY}T10:00:00-08:00",
    "patient": {"name": "Pat", "phone": "+14155550199", "email": "pat@example.com"},
}


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"location": "nowhere"}, 404, "location"),
        ({"service": "nothing"}, 404, "service"),
        ({"start": "tomorrow at ten"}, 422, "start"),
        ({"start": f"{DAY}T10:00:00"}, 422, "start"),  # no offset
        ({"start": "2026-11-01T10:00:00-08:00"}, 422, "start"),  # past
        ({"start": f"{DAY}T10:07:00-08:00"}, 422, "start"),  # off the grid
        ({"start": f"{DAY}T20:00:00-08:00"}, 422, "start"),  # after closing
        ({"start": "2027-06-01T10:00:00-07:00"}, 422, "start"),  # beyond the horizon
        ({"start": "2026-11-30T08:30:00-08:00"}, 422, "start"),  # inside minimum notice
        ({"patient": {**GOOD["patient"], "phone": "12"}}, 422, "patient.phone"),
        ({"patient": {**GOOD["patient"], "phone": "+1 555 0100"}}, 422, "patient.phone"),
        ({"patient": {**GOOD["patient"], "email": "not-an-email"}}, 422, "patient.email"),
        ({"patient": {**GOOD["patient"], "email": "a@b"}}, 422, "patient.email"),
        ({"patient": {"phone": "+14155550199", "email": "p@example.com"}}, 422, "patient.name"),
        ({"patient": None}, 422, "patient"),
        ({"start": None}, 422, "start"),
        ({"location": 5}, 422, "location"),
        ({"note": "x" * 3000}, 422, "note"),
        ({"sms_consent": "maybe"}, 422, "sms_consent"),
        ({"sms_consent": "yes"}, 422, "sms_consent"),  # not read as true
        ({"override_clearance": 1}, 422, "override_clearance"),
        # A bookable time as a Unix timestamp is not read as one.
        ({"start": int(dt.datetime.fromisoformat(at("10:00")).timestamp())}, 422, "start"),
        ({"start": str(int(dt.datetime.fromisoformat(at("10:00")).timestamp()))}, 422, "start"),
    ],
)
def test_bad_input_names_the_field(client, session, clinic, change, status, field):
    body = {**GOOD, **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = client.post("/api/v1/appointments", json=body)
    assert r.status_code == status, r.get_json()
    error = r.get_json()["error"]
    assert set(error) >= {"code", "message"}
    assert field in error.get("fields", {}), error
    assert active_count(session) == 0


@pytest.mark.parametrize("raw", ["", "[]", '"a string"'])
def test_a_body_that_is_not_an_object_is_a_clear_422(client, clinic, raw):
    r = client.post("/api/v1/appointments", data=raw, content_type="application/json")
    assert r.status_code == 422
    assert "body" in r.get_json()["error"]["fields"]


def test_a_body_that_is_not_json_is_400_bad_request(client, clinic):
    r = client.post("/api/v1/appointments", data="not json", content_type="application/json")
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("service=s60&days=1000", 400, "days"),
        ("service=s60&days=0", 400, "days"),
        ("service=s60&days=abc", 400, "days"),
        ("service=s60&from=2026-13-45", 400, "from"),
        ("days=1", 400, "service"),
        ("service=nothing", 404, "service"),
    ],
)
def test_availability_rejects_bad_queries(client, clinic, query, status, field):
    r = client.get(f"/api/v1/locations/sf/availability?{query}")
    assert r.status_code == status
    assert field in r.get_json()["error"]["fields"]


def test_unknown_location_is_404_in_the_error_shape(client, clinic):
    r = client.get("/api/v1/locations/nowhere/services")
    assert r.status_code == 404
    assert r.get_json()["error"]["code"] == "not_found"


def test_unknown_route_and_wrong_method_keep_the_error_shape(client, clinic):
    assert client.get("/api/v1/nope").get_json()["error"]["code"] == "not_found"
    r = client.get("/api/v1/appointments")
    assert r.status_code == 405 and "error" in r.get_json()


def test_availability_reflects_bookings(client, clinic):
    url = f"/api/v1/locations/sf/availability?service=s60&from={DAY}&days=1"
    before = {s["start"] for s in client.get(url).get_json()["slots"]}
    assert at("10:00") in before
    book(client, at("10:00"))
    after = client.get(url).get_json()
    assert after["timezone"] == "America/Los_Angeles"
    starts = {s["start"] for s in after["slots"]}
    assert at("10:00") not in starts and at("09:15") not in starts
    assert at("09:00") in starts and at("11:00") in starts


def test_services_list_kind_and_duration(client, clinic):
    body = client.get("/api/v1/locations/sf/services").get_json()
    assert {"slug": "s60", "kind": "infusion", "duration_minutes": 60}.items() <= body[
        2
    ].items() or any(s["slug"] == "s60" and s["duration_minutes"] == 60 for s in body)


# --- staff endpoints ------------------------------------------------------------------------------


def test_staff_calendar_requires_a_token_and_the_right_location(client, session, clinic, clock):
    loc, _ = clinic
    other = make_location(session, slug="ny", timezone="America/New_York")
    _, own_token = make_staff(session, role="front_desk", locations=[loc], now=clock.now)
    _, other_token = make_staff(session, role="front_desk", locations=[other], now=clock.now)
    session.commit()
    booked = book(client, at("10:00")).get_json()
    url = f"/api/v1/locations/sf/calendar?date={DAY}"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(url, headers={"Authorization": f"Bearer {other_token}"}).status_code == 403
    r = client.get(url, headers={"Authorization": f"Bearer {own_token}"})
    assert r.status_code == 200
    cal = r.get_json()
    assert cal["date"] == DAY and cal["timezone"] == "America/Los_Angeles"
    chair = cal["resources"][0]
    assert chair["name"] == "Chair 1"
    assert [a["id"] for a in chair["appointments"]] == [booked["id"]]
    assert chair["appointments"][0]["start"] == at("10:00")


def test_staff_calendar_shows_no_shows_and_leaves_out_cancelled_visits(
    client, session, clinic, clock
):
    """The API calendar shows what the staff calendar shows: a no-show stays on it (it no
    longer holds the chair, `Appointment.active` is false) and only a cancelled visit goes."""
    _, token = make_staff(session, role="admin", now=clock.now)
    session.commit()
    auth = {"Authorization": f"Bearer {token}"}
    ids = [
        book(client, at(hm), "s30", n).get_json()["id"]
        for n, hm in enumerate(("10:00", "11:00", "12:00", "13:00"), start=1)
    ]
    clock.now = dt.datetime.fromisoformat(at("11:05")).astimezone(dt.UTC)
    for appt_id, status in zip(ids, ("no_show", "checked_in", "cancelled"), strict=False):
        r = client.post(
            f"/api/v1/appointments/{appt_id}/status", json={"status": status}, headers=auth
        )
        assert r.status_code == 200, r.get_json()
    r = client.get(f"/api/v1/locations/sf/calendar?date={DAY}", headers=auth)
    assert r.status_code == 200
    shown = [(a["id"], a["status"]) for a in r.get_json()["resources"][0]["appointments"]]
    assert shown == [(ids[0], "no_show"), (ids[1], "checked_in"), (ids[3], "booked")]


def test_staff_block_refuses_booked_time_and_blocks_availability(client, session, clinic, clock):
    _, token = make_staff(session, role="admin", now=clock.now)
    session.commit()
    auth = {"Authorization": f"Bearer {token}"}
    book(client, at("10:00"))
    over = {"resource": "Chair 1", "start": at("10:30"), "end": at("12:00"), "reason": "repair"}
    r = client.post("/api/v1/locations/sf/blocks", json=over, headers=auth)
    assert r.status_code == 409
    ok = {"resource": "Chair 1", "start": at("13:00"), "end": at("15:00"), "reason": "repair"}
    r = client.post("/api/v1/locations/sf/blocks", json=ok, headers=auth)
    assert r.status_code == 201, r.get_json()
    assert book(client, at("13:30"), n=2).status_code == 409
    bad = {"resource": "Chair 9", "start": at("13:00"), "end": at("15:00")}
    assert client.post("/api/v1/locations/sf/blocks", json=bad, headers=auth).status_code == 404
    backwards = {"resource": "Chair 1", "start": at("15:00"), "end": at("13:00")}
    r = client.post("/api/v1/locations/sf/blocks", json=backwards, headers=auth)
    assert r.status_code == 422 and "end" in r.get_json()["error"]["fields"]


def test_staff_status_changes_and_no_show_frees_the_chair(client, session, clinic, clock):
    _, token = make_staff(session, role="admin", now=clock.now)
    session.commit()
    auth = {"Authorization": f"Bearer {token}"}
    appt = book(client, at("10:00")).get_json()
    url = f"/api/v1/appointments/{appt['id']}/status"
    for early in ("no_show", "completed"):  # not before the visit's start time
        r = client.post(url, json={"status": early}, headers=auth)
        assert r.status_code == 409
        assert r.get_json()["error"]["fields"] == {"status": f"{early} before the visit starts"}
    clock.now = dt.datetime.fromisoformat(at("10:05")).astimezone(dt.UTC)
    assert client.post(url, json={"status": "checked_in"}, headers=auth).status_code == 200
    r = client.post(url, json={"status": "no_show"}, headers=auth)
    assert r.status_code == 409  # checked in is not a no-show
    assert client.post(url, json={"status": "booked"}, headers=auth).status_code == 200
    assert client.post(url, json={"status": "no_show"}, headers=auth).status_code == 200
    # The one chair is free again: a walk-in at 10:15 (staff, short notice) takes it.
    loc, svc = clinic
    walk_in = booking.BookingRequest(
        location="sf",
        service="s30",
        start=dt.datetime.fromisoformat(at("10:15")),
        patient=PatientDetails("Walk In", "+14155550177", "walk@example.com", False),
        source="staff",
        allow_short_notice=True,
    )
    booking.book(session, walk_in, now=clock.now, settings=ClinicSettings())
    session.commit()
    r = client.post(url, json={"status": "booked"}, headers=auth)
    assert r.status_code == 409  # the chair was rebooked meanwhile
    assert client.post(url, json={"status": "sleeping"}, headers=auth).status_code == 422
    assert (
        client.post(
            "/api/v1/appointments/999999/status", json={"status": "booked"}, headers=auth
        ).status_code
        == 403
    )


def test_a_deadlock_with_a_concurrent_change_is_a_409_not_a_500(client, clinic, monkeypatch):
    """PostgreSQL aborts one side of a lock cycle (40P01). No test can choose which side, so the
    insert is made to fail the way psycopg reports it; the booking answers 409 and writes nothing."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    from scheduler.services import booking

    def deadlocked(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, psycopg.errors.DeadlockDetected("deadlock detected"))

    monkeypatch.setattr(booking, "_insert", deadlocked)
    r = book(client, at("10:00"))
    assert r.status_code == 409, r.get_json()
    assert r.get_json()["error"]["code"] == "slot_unavailable"
    monkeypatch.undo()
    assert book(client, at("10:00")).status_code == 201


def test_a_deadlock_in_any_other_write_is_a_409_too(client, clinic, monkeypatch):
    """The app-wide backstop: a cancel that PostgreSQL aborts to break a lock cycle answers 409
    in the error shape (send again), and changes nothing."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    from scheduler.services import booking

    token = book(client, at("10:00")).get_json()["manage_token"]

    def deadlocked(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("UPDATE", {}, psycopg.errors.DeadlockDetected("deadlock detected"))

    monkeypatch.setattr(booking, "cancel", deadlocked)
    r = client.post(f"/api/v1/manage/{token}/cancel")
    assert r.status_code == 409, r.get_json()
    assert r.get_json()["error"]["code"] == "conflict"
    monkeypatch.undo()
    assert client.get(f"/api/v1/manage/{token}").get_json()["status"] == "booked"
