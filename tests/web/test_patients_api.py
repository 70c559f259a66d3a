"""Patients as people through the JSON API, on SQLite and PostgreSQL: identity, clearance,
spacing, the staff search, record, edit and merge."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import Appointment, AuditEntry, Clearance, Patient, SmsOptOut
from tests.factories import make_location, make_service, make_staff

DOB = "1980-04-02"
PHONE = "+14155550142"


@pytest.fixture
def clinic(session, clock):
    """Two locations; an infusion needing clearance with a 20 h gap, a consultation, a
    plain service; an admin, a prescriber and a front desk at `sf`, a manager at `ny`."""
    sf = make_location(session, slug="sf", chairs=4, rooms=1)
    ny = make_location(session, slug="ny", timezone="America/New_York", chairs=2, rooms=1)
    make_service(
        session,
        [sf, ny],
        slug="inf",
        name="Infusion",
        requires_clearance=True,
        min_gap_hours=20,
    )
    make_service(
        session,
        [sf, ny],
        slug="consult",
        name="Initial consultation",
        kind="consultation",
        resource_kind="room",
        duration=60,
        prep=0,
        recovery=0,
    )
    make_service(session, [sf], slug="plain", duration=30, prep=0, recovery=0)
    tokens = {
        "admin": make_staff(session, role="admin", now=clock.now)[1],
        "prescriber": make_staff(session, role="prescriber", locations=[sf], now=clock.now)[1],
        "front": make_staff(session, role="front_desk", locations=[sf], now=clock.now)[1],
        "ny": make_staff(session, role="manager", locations=[ny], now=clock.now)[1],
    }
    session.commit()
    return tokens


def person(name: str = "Walt Whitman", dob: str | None = DOB, **extra: str) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "phone": PHONE, "email": "walt@example.com", **extra}
    if dob is not None:
        body["date_of_birth"] = dob
    return body


def book(client, start: str, patient: dict[str, Any], service: str = "inf", location: str = "sf"):
    body = {"location": location, "service": service, "start": start, "patient": patient}
    return client.post("/api/v1/appointments", json=body)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def clear(client, token: str, patient_id: int, services=("inf",), until="2027-06-30"):
    return client.post(
        f"/api/v1/patients/{patient_id}/clearances",
        json={"services": list(services), "until": until, "note": "after consultation"},
        headers=auth(token),
    )


def patient_ids(session) -> list[int]:
    session.expire_all()
    return list(session.scalars(select(Patient.id).order_by(Patient.id)))


def consult_then_clear(client, session, clinic, patient=None) -> int:
    r = book(client, "2026-12-01T09:00:00-08:00", patient or person(), service="consult")
    assert r.status_code == 201, r.get_json()
    pid = session.scalar(select(Appointment.patient_id).where(Appointment.id == r.json["id"]))
    assert clear(client, clinic["prescriber"], pid).status_code == 201
    return pid


# --- identity -------------------------------------------------------------------------------------


def test_a_family_sharing_one_phone_stays_apart(client, session, clinic):
    for name, dob in [
        ("Ana Díaz", "1975-01-01"),
        ("Luis Díaz", "1978-05-05"),
        ("Ana Díaz", "2001-02-03"),
    ]:
        r = book(client, "2026-12-02T10:00:00-08:00", person(name, dob), service="plain")
        assert r.status_code in (201, 409), r.get_json()
    rows = session.scalars(select(Patient).order_by(Patient.id)).all()
    assert [(p.name, p.date_of_birth.isoformat()) for p in rows] == [
        ("Ana Díaz", "1975-01-01"),
        ("Luis Díaz", "1978-05-05"),
        ("Ana Díaz", "2001-02-03"),
    ]
    assert {p.phone for p in rows} == {PHONE}


@pytest.mark.parametrize(
    "spelling",
    ["ana diaz", "  ANA   DÍAZ ", "Ana Di\u0301az"],
    ids=["lower-no-accent", "upper-spaces", "combining-accent"],
)
def test_one_person_is_found_again_whatever_the_case_accents_and_spaces(
    client, session, clinic, spelling
):
    assert book(client, "2026-12-02T10:00:00-08:00", person("Ana Díaz"), "plain").status_code == 201
    assert book(client, "2026-12-03T10:00:00-08:00", person(spelling), "plain").status_code == 201
    assert len(patient_ids(session)) == 1


def test_a_booking_with_a_birth_date_claims_the_old_row_without_one(client, session, clinic):
    r = book(client, "2026-12-02T10:00:00-08:00", person(dob=None), service="plain")
    assert r.status_code == 201
    (pid,) = patient_ids(session)
    assert session.get(Patient, pid).date_of_birth is None
    assert book(client, "2026-12-03T10:00:00-08:00", person(), "plain").status_code == 201
    assert patient_ids(session) == [pid]
    assert session.get(Patient, pid).date_of_birth.isoformat() == DOB
    # And a later booking without a birth date finds the same person.
    assert book(client, "2026-12-04T10:00:00-08:00", person(dob=None), "plain").status_code == 201
    assert patient_ids(session) == [pid]


@pytest.mark.parametrize(
    ("dob", "why"),
    [
        (None, "required"),
        ("2027-01-01", "future"),
        ("1899-12-31", "1900"),
        ("1980-02-30", "date"),
        ("02/04/1980", "date"),
        ("2010-01-01", "at least 18"),
    ],
    ids=["missing", "future", "before-1900", "no-such-day", "malformed", "under-age"],
)
def test_bad_birth_dates_are_422_naming_patient_date_of_birth(client, session, clinic, dob, why):
    r = book(client, "2026-12-02T10:00:00-08:00", person(dob=dob))
    assert r.status_code == 422, r.get_json()
    assert "patient.date_of_birth" in r.json["error"]["fields"], r.json
    assert patient_ids(session) == []


def test_minimum_age_is_configurable(app, client, session, clinic):
    app.extensions.pop("chairside_settings", None)
    app.config["PATIENT_MIN_AGE_YEARS"] = 16
    r = book(client, "2026-12-02T10:00:00-08:00", person(dob="2009-01-01"), service="plain")
    assert r.status_code == 201, r.get_json()


# --- clearance ------------------------------------------------------------------------------------


def test_an_uncleared_patient_is_told_to_book_the_consultation(client, session, clinic):
    r = book(client, "2026-12-02T10:00:00-08:00", person())
    assert r.status_code == 409
    assert r.json["error"]["code"] == "not_cleared"
    assert "Initial consultation" in r.json["error"]["message"]
    assert session.scalar(select(func.count()).select_from(Appointment)) == 0


def test_a_cleared_patient_books_the_infusion(client, session, clinic):
    consult_then_clear(client, session, clinic)
    r = book(client, "2026-12-02T10:00:00-08:00", person())
    assert r.status_code == 201, r.get_json()


def test_an_expired_clearance_does_not_count(client, session, clinic):
    pid = consult_then_clear(client, session, clinic)
    session.execute(Clearance.__table__.update().values(until=dt.date(2026, 12, 1)))
    session.commit()
    r = book(client, "2026-12-02T10:00:00-08:00", person())
    assert (r.status_code, r.json["error"]["code"]) == (409, "not_cleared")
    assert clear(client, clinic["prescriber"], pid, until="2026-12-02").status_code == 201
    assert book(client, "2026-12-02T10:00:00-08:00", person()).status_code == 201


@pytest.mark.parametrize(
    ("who", "status"),
    [("prescriber", 201), ("admin", 201), ("front", 403), ("ny", 404)],
)
def test_who_may_record_a_clearance(client, session, clinic, who, status):
    r = book(client, "2026-12-01T09:00:00-08:00", person(), service="consult")
    pid = session.scalar(select(Appointment.patient_id).where(Appointment.id == r.json["id"]))
    assert clear(client, clinic[who], pid).status_code == status


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"services": ["nope"], "until": "2027-01-01"}, "services"),
        ({"services": [], "until": "2027-01-01"}, "services"),
        ({"services": ["inf"], "until": "2026-01-01"}, "until"),
        ({"services": ["inf"], "until": "soon"}, "until"),
    ],
)
def test_bad_clearances_name_the_field(client, session, clinic, body, field):
    r = book(client, "2026-12-01T09:00:00-08:00", person(), service="consult")
    pid = session.scalar(select(Appointment.patient_id).where(Appointment.id == r.json["id"]))
    r = client.post(
        f"/api/v1/patients/{pid}/clearances", json=body, headers=auth(clinic["prescriber"])
    )
    assert r.status_code == 422 and field in r.json["error"]["fields"], r.json


# --- spacing --------------------------------------------------------------------------------------


def test_a_second_infusion_the_same_day_is_too_soon_even_at_another_location(
    client, session, clinic
):
    consult_then_clear(client, session, clinic)
    assert book(client, "2026-12-02T10:00:00-08:00", person()).status_code == 201
    r = book(client, "2026-12-02T16:00:00-05:00", person(), location="ny")  # 13:00 in SF
    assert r.status_code == 409
    assert r.json["error"]["code"] == "too_soon"
    assert "Wed 02 Dec 2026 at 10:00 PST" in r.json["error"]["message"]
    r = book(client, "2026-12-02T16:00:00-08:00", person())
    assert (r.status_code, r.json["error"]["code"]) == (409, "too_soon")
    # 24 hours later is fine.
    assert book(client, "2026-12-03T10:00:00-08:00", person()).status_code == 201


def test_moving_an_infusion_next_to_another_is_too_soon(client, session, clinic):
    consult_then_clear(client, session, clinic)
    assert book(client, "2026-12-02T10:00:00-08:00", person()).status_code == 201
    second = book(client, "2026-12-04T10:00:00-08:00", person())
    assert second.status_code == 201
    token = second.json["manage_token"]
    r = client.post(
        f"/api/v1/manage/{token}/reschedule", json={"start": "2026-12-02T15:00:00-08:00"}
    )
    assert (r.status_code, r.json["error"]["code"]) == (409, "too_soon")
    r = client.post(
        f"/api/v1/manage/{token}/reschedule", json={"start": "2026-12-03T11:00:00-08:00"}
    )
    assert r.status_code == 200, r.json


# --- staff: search, record, edit, merge -----------------------------------------------------------


def test_search_by_name_phone_fragment_email_and_birth_date(client, session, clinic):
    book(client, "2026-12-02T10:00:00-08:00", person("Zoë Quinn"), service="plain")
    book(client, "2026-12-02T11:00:00-08:00", person("Other Person", "1990-01-01"), "plain")
    for q, names in [
        ("zoe", ["Zoë Quinn"]),
        ("555-0142", ["Other Person", "Zoë Quinn"]),
        ("walt@example", ["Other Person", "Zoë Quinn"]),
        ("1990-01-01", ["Other Person"]),
        ("nobody", []),
    ]:
        r = client.get("/api/v1/patients", query_string={"q": q}, headers=auth(clinic["front"]))
        assert r.status_code == 200
        assert sorted(p["name"] for p in r.json) == names, q
    # Staff of another location see none of them, by search or by id.
    r = client.get("/api/v1/patients", query_string={"q": "zoe"}, headers=auth(clinic["ny"]))
    assert r.json == []
    pid = patient_ids(session)[0]
    r = client.get(f"/api/v1/patients/{pid}", headers=auth(clinic["ny"]))
    assert r.status_code == 404 and "Zo" not in r.get_data(as_text=True)
    assert client.get("/api/v1/patients/99999", headers=auth(clinic["front"])).status_code == 404


def test_the_record_shows_visits_at_the_readers_locations_clearances_and_opt_out(
    client, session, clinic
):
    pid = consult_then_clear(client, session, clinic)
    assert book(client, "2026-12-03T10:00:00-05:00", person(), location="ny").status_code == 201
    session.add(SmsOptOut(phone=PHONE, opted_out=True, keyword="STOP"))
    session.commit()
    front = client.get(f"/api/v1/patients/{pid}", headers=auth(clinic["front"])).json
    assert [a["location"] for a in front["appointments"]] == ["sf"]
    assert [c["service"] for c in front["clearances"]] == ["inf"]
    assert front["sms_opted_out"] is True and front["date_of_birth"] == DOB
    ny = client.get(f"/api/v1/patients/{pid}", headers=auth(clinic["ny"])).json
    assert [a["location"] for a in ny["appointments"]] == ["ny"]


def test_staff_edit_a_patients_details(client, session, clinic):
    book(client, "2026-12-02T10:00:00-08:00", person(), service="plain")
    (pid,) = patient_ids(session)
    r = client.patch(
        f"/api/v1/patients/{pid}",
        json={"name": "Walter Whitman", "notes": "prefers mornings"},
        headers=auth(clinic["front"]),
    )
    assert r.status_code == 200, r.json
    assert r.json["name"] == "Walter Whitman" and r.json["notes"] == "prefers mornings"
    r = client.patch(
        f"/api/v1/patients/{pid}",
        json={"date_of_birth": "2030-01-01"},
        headers=auth(clinic["front"]),
    )
    assert r.status_code == 422 and "date_of_birth" in r.json["error"]["fields"]
    entry = session.scalars(select(AuditEntry).where(AuditEntry.patient_id == pid)).one()
    assert entry.action == "patient.edited" and PHONE not in entry.details


def test_a_typo_twin_is_merged_by_staff(client, session, clinic):
    pid = consult_then_clear(client, session, clinic)
    assert book(client, "2026-12-02T10:00:00-08:00", person()).status_code == 201
    # The same person, typed "Walter" one day: a second record, booked without clearance.
    twin = person("Walter Whitman")
    assert book(client, "2026-12-03T10:00:00-08:00", twin, service="plain").status_code == 201
    kept, dup = patient_ids(session)
    assert kept == pid
    r = client.post(
        f"/api/v1/patients/{kept}/merge", json={"duplicate": dup}, headers=auth(clinic["front"])
    )
    assert r.status_code == 200, r.json
    assert len(r.json["appointments"]) == 3 and len(r.json["clearances"]) == 1
    session.expire_all()
    assert set(session.scalars(select(Appointment.patient_id))) == {kept}
    merged = session.scalars(select(AuditEntry).where(AuditEntry.action == "patient.merged")).one()
    assert merged.patient_id == kept
    # The twin's spelling now finds the kept record: cleared, and spaced.
    r = book(client, "2026-12-02T16:00:00-08:00", twin)
    assert (r.status_code, r.json["error"]["code"]) == (409, "too_soon")
    assert book(client, "2026-12-05T12:00:00-08:00", twin).status_code == 201
    assert client.get(f"/api/v1/patients/{dup}", headers=auth(clinic["front"])).status_code == 404
    # Search lists the person once.
    r = client.get("/api/v1/patients", query_string={"q": "whitman"}, headers=auth(clinic["front"]))
    assert [p["id"] for p in r.json] == [kept]


def test_merge_refuses_self_and_unknown(client, session, clinic):
    book(client, "2026-12-02T10:00:00-08:00", person(), service="plain")
    (pid,) = patient_ids(session)
    r = client.post(
        f"/api/v1/patients/{pid}/merge", json={"duplicate": pid}, headers=auth(clinic["front"])
    )
    assert r.status_code == 422
    r = client.post(
        f"/api/v1/patients/{pid}/merge", json={"duplicate": 999}, headers=auth(clinic["front"])
    )
    assert r.status_code == 404


def test_staff_may_book_an_uncleared_patient_with_an_explicit_override(client, session, clinic):
    body = {
        "location": "sf",
        "service": "inf",
        "start": "2026-12-02T10:00:00-08:00",
        "patient": person(),
        "override_clearance": True,
    }
    r = client.post("/api/v1/appointments", json=body)
    assert r.status_code == 401 and "override_clearance" in r.json["error"]["fields"]
    r = client.post("/api/v1/appointments", json=body, headers=auth(clinic["ny"]))
    assert r.status_code == 403
    r = client.post("/api/v1/appointments", json=body, headers=auth(clinic["front"]))
    assert r.status_code == 201, r.json
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "appointment.booked"))
    assert '"override_clearance": true' in entry.one().details
    # Spacing still holds with the override.
    body["start"] = "2026-12-02T15:00:00-08:00"
    r = client.post("/api/v1/appointments", json=body, headers=auth(clinic["front"]))
    assert (r.status_code, r.json["error"]["code"]) == (409, "too_soon")
