"""The clinicians, shifts and staffing API (contract "Clinicians, shifts and staffing rules"),
on both databases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from scheduler.services import staffing
from tests.factories import patient_json
from tests.test_staffing_support import rota
from tests.web.staff_support import DAY, LA, NY, at, make_clinic


@pytest.fixture
def clinic(session):
    clinic = make_clinic(session)
    (doc,), nurses = rota(session, clinic.sf, nurses=2, hours=(dt.time(8), dt.time(18)))
    session.commit()
    return clinic, doc, nurses


def _auth(clinic: Any, role: str = "manager") -> dict[str, str]:
    return {"Authorization": f"Bearer {clinic.tokens[role]}"}


def _book(client, service: str, start: dt.datetime, n: int, **extra: Any):
    body = {
        "location": "sf",
        "service": service,
        "start": start.astimezone(LA).isoformat(),
        "patient": patient_json(n),
        **extra,
    }
    return client.post("/api/v1/appointments", json=body)


def test_a_consultation_with_a_nurse_or_unknown_clinician_is_422_naming_it(client, clinic):
    c, doc, nurses = clinic
    for who in (nurses[0].id, 999_999):
        r = _book(client, "consult", at(DAY, 11), 4, clinician=who)
        assert r.status_code == 422, r.get_json()
        assert "clinician" in r.get_json()["error"]["fields"]
    assert _book(client, "consult", at(DAY, 11), 4, clinician=doc.id).status_code == 201


def test_public_prescribers_and_consultation_slots_name_who_is_free(client, clinic):
    c, doc, nurses = clinic
    r = client.get("/api/v1/locations/sf/clinicians?service=consult")
    assert r.status_code == 200
    assert r.get_json() == [{"id": doc.id, "name": doc.name, "role": "prescriber", "title": ""}]
    assert client.get("/api/v1/locations/sf/clinicians").status_code == 400
    r = client.get(f"/api/v1/locations/sf/availability?service=consult&from={DAY}&days=1")
    slots = r.get_json()["slots"]
    assert slots and all(s["clinicians"] == [doc.id] for s in slots)
    r = client.get(f"/api/v1/locations/sf/availability?service=infusion&from={DAY}&days=1")
    assert all("clinicians" not in s for s in r.get_json()["slots"])
    r = _book(client, "consult", at(DAY, 10), 1, clinician=doc.id)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["clinician"] == {"id": doc.id, "name": doc.name}
    r = client.get(
        f"/api/v1/locations/sf/availability?service=consult&from={DAY}&days=1&clinician={doc.id}"
    )
    assert at(DAY, 10).astimezone(LA).isoformat() not in {s["start"] for s in r.get_json()["slots"]}
    # The room is free again at 10:00 in another room? One room: a second booking is refused.
    r = _book(client, "consult", at(DAY, 10), 2, clinician=doc.id)
    assert r.status_code == 409
    assert r.get_json()["error"]["code"] == "slot_unavailable"
    assert r.get_json()["error"]["fields"] == {"clinician": "not free then"}
    assert "chosen prescriber" in r.get_json()["error"]["message"]
    r = _book(client, "infusion", at(DAY, 10), 3)
    assert r.status_code == 201 and "clinician" not in r.get_json()


@pytest.mark.parametrize(
    ("service", "who", "reason"),
    [
        ("consult", "unknown", "not an active prescriber"),
        ("consult", "nurse", "not an active prescriber"),
        ("infusion", "doctor", "only for a consultation"),
    ],
    ids=["unknown-id", "a-nurse", "for-an-infusion"],
)
def test_availability_for_a_clinician_who_cannot_be_chosen_is_400_naming_clinician(
    client, clinic, service, who, reason
):
    """Not 200 with no slots, which reads as "fully booked": the same rule as booking (422)."""
    c, doc, nurses = clinic
    clinician = {"unknown": 999999, "nurse": nurses[0].id, "doctor": doc.id}[who]
    url = f"/api/v1/locations/sf/availability?service={service}&from={DAY}&days=1"
    r = client.get(f"{url}&clinician={clinician}")
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"]["code"] == "invalid"
    assert r.get_json()["error"]["fields"] == {"clinician": reason}
    booked = _book(client, service, at(DAY, 10), 1, clinician=clinician)
    assert booked.status_code == 422
    assert booked.get_json()["error"]["fields"] == {"clinician": reason}


def test_clinicians_and_shifts_round_trip_with_roles(client, clinic):
    c, doc, nurses = clinic
    r = client.get("/api/v1/clinicians", headers=_auth(c, "front_desk"))
    assert r.status_code == 200 and len(r.get_json()) == 3
    body = {"name": "Dr Cover", "role": "prescriber", "title": "MD"}
    assert (
        client.post("/api/v1/clinicians", json=body, headers=_auth(c, "nurse")).status_code == 403
    )
    r = client.post("/api/v1/clinicians", json=body, headers=_auth(c))
    assert r.status_code == 201
    cover = r.get_json()
    assert cover["active"] is True and cover["role"] == "prescriber"
    bad = client.post("/api/v1/clinicians", json={"name": "X", "role": "doctor"}, headers=_auth(c))
    assert bad.status_code == 422 and "role" in bad.get_json()["error"]["fields"]

    shift = {
        "clinician": cover["id"],
        "start": at(DAY, 18).astimezone(LA).isoformat(),
        "end": at(DAY, 20).astimezone(LA).isoformat(),
    }
    r = client.post("/api/v1/locations/sf/shifts", json=shift, headers=_auth(c))
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert created["id"].startswith("s") and created["clinician"]["role"] == "prescriber"
    r = client.post("/api/v1/locations/sf/shifts", json=shift, headers=_auth(c))
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "clinician_busy"
    r = client.post("/api/v1/locations/ny/shifts", json=shift, headers=_auth(c))
    assert r.status_code == 403

    r = client.get(f"/api/v1/locations/sf/shifts?from={DAY}&to={DAY}", headers=_auth(c, "nurse"))
    assert r.status_code == 200
    listed = r.get_json()
    assert {s["id"] for s in listed} >= {created["id"]}
    assert len(listed) == 4  # the prescriber, two nurses, the cover
    assert listed[0]["start"] == "2026-12-01T08:00:00-08:00"
    r = client.delete(f"/api/v1/locations/sf/shifts/{created['id']}", headers=_auth(c))
    assert r.status_code == 204
    r = client.delete(f"/api/v1/locations/sf/shifts/{created['id']}", headers=_auth(c))
    assert r.status_code == 404
    r = client.delete("/api/v1/locations/sf/shifts/nonsense", headers=_auth(c))
    assert r.status_code == 404


def test_refusals_list_the_visits_and_staffing_round_trips(client, clinic, session):
    c, doc, nurses = clinic
    one = _book(client, "infusion", at(DAY, 10), 1).get_json()["id"]
    r = client.get(f"/api/v1/locations/sf/shifts?from={DAY}&to={DAY}", headers=_auth(c))
    doc_shift = next(s for s in r.get_json() if s["clinician"]["id"] == doc.id)
    r = client.delete(f"/api/v1/locations/sf/shifts/{doc_shift['id']}", headers=_auth(c))
    assert r.status_code == 409
    error = r.get_json()["error"]
    assert error["code"] == "shift_in_use" and error["appointments"] == [one]

    r = client.get("/api/v1/locations/sf/staffing", headers=_auth(c, "front_desk"))
    assert r.get_json() == {
        "rules": True,
        "patients_per_nurse": 4,
        "starts_per_window": 3,
        "start_window_minutes": 30,
    }
    r = client.patch(
        "/api/v1/locations/sf/staffing", json={"rules": False}, headers=_auth(c, "front_desk")
    )
    assert r.status_code == 403
    r = client.patch(
        "/api/v1/locations/sf/staffing", json={"patients_per_nurse": 0}, headers=_auth(c)
    )
    assert r.status_code == 422 and "patients_per_nurse" in r.get_json()["error"]["fields"]
    r = client.patch(
        "/api/v1/locations/sf/staffing", json={"starts_per_window": 5}, headers=_auth(c)
    )
    assert r.status_code == 200 and r.get_json()["starts_per_window"] == 5
    # Take both nurses away but one, at 1 patient each, with two visits overlapping: refused.
    two = _book(client, "infusion", at(DAY, 10, 15), 2).get_json()["id"]
    r = client.patch(
        "/api/v1/locations/sf/staffing", json={"patients_per_nurse": 1}, headers=_auth(c)
    )
    assert r.status_code == 200  # two nurses x 1 still hold two patients
    nurse_shift = next(
        s["id"]
        for s in client.get(
            f"/api/v1/locations/sf/shifts?from={DAY}&to={DAY}", headers=_auth(c)
        ).get_json()
        if s["clinician"]["role"] == "nurse"
    )
    r = client.delete(f"/api/v1/locations/sf/shifts/{nurse_shift}", headers=_auth(c))
    assert r.status_code == 409 and r.get_json()["error"]["appointments"] == [one, two]
    r = client.patch(
        "/api/v1/locations/sf/staffing",
        json={"starts_per_window": 1},
        headers=_auth(c),
    )
    assert r.status_code == 409
    assert r.get_json()["error"]["code"] == "staffing_in_use"
    assert r.get_json()["error"]["appointments"] == [one, two]
    r = client.post(
        "/api/v1/locations/sf/blocks",
        json={
            "resource": "Chair 1",
            "start": at(DAY, 9).isoformat(),
            "end": at(DAY, 12).isoformat(),
        },
        headers=_auth(c),
    )
    assert r.status_code == 409 and r.get_json()["error"]["appointments"] == [one]


def test_calendar_shows_shifts_and_nurse_load(client, clinic):
    c, doc, nurses = clinic
    _book(client, "infusion", at(DAY, 10), 1)
    r = client.get(f"/api/v1/locations/sf/calendar?date={DAY}", headers=_auth(c, "nurse"))
    body = r.get_json()
    assert len(body["shifts"]) == 3
    load = {x["start"]: (x["patients"], x["capacity"]) for x in body["nurse_load"]}
    assert load["2026-12-01T00:00:00-08:00"] == (0, 0)
    assert load["2026-12-01T08:00:00-08:00"] == (0, 8)
    assert load["2026-12-01T09:50:00-08:00"] == (1, 8)
    assert load["2026-12-01T10:50:00-08:00"] == (0, 8)
    infusion = next(
        a for res in body["resources"] for a in res["appointments"] if a["service"] == "infusion"
    )
    assert infusion["nurse"]["id"] in {n.id for n in nurses}


def test_new_locations_start_with_the_rules_on(session):
    from scheduler.services import settings_admin

    loc = settings_admin.create_location(
        session, slug="new", name="New", timezone="America/Denver", address="", phone=""
    )
    assert staffing.staffing_of(loc)["rules"] is True


def test_demo_has_no_infusions_on_wednesday_afternoon_at_the_first_location(session, clock):
    from sqlalchemy import select

    from scheduler.models import Location, Service
    from scheduler.services import availability, demo
    from tests.factories import HASHER

    demo.seed_demo(session, HASHER, clock.now)
    demo.seed_demo(session, HASHER, clock.now)  # idempotent
    first = session.scalars(
        select(Location).where(Location.slug == demo.LOCATIONS[0]["slug"])
    ).one()
    assert len(staffing.location_shifts(session, first, DAY, DAY)) == 3
    infusion = session.scalars(select(Service).where(Service.slug == "long-infusion")).one()
    wednesday = dt.date(2026, 12, 2)
    tz = LA
    slots = availability.location_slots(session, first, infusion, wednesday, 1, clock.now)
    assert slots and all(s.start.astimezone(tz).hour < 13 for s in slots)
    tuesday = availability.location_slots(session, first, infusion, DAY, 1, clock.now)
    assert any(s.start.astimezone(tz).hour >= 13 for s in tuesday)


_ = NY
