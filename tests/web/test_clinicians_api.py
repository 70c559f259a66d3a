"""Editing clinicians (`PATCH /api/v1/clinicians/{id}`), ids as JSON integers only, unknown keys
refused in the staffing bodies, and query-parameter errors as 400: on both databases."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import Appointment, AuditEntry
from scheduler.services import staffing
from tests.web import test_staffing_api
from tests.web.staff_support import DAY, LA, at
from tests.web.test_staffing_api import _auth, _book

clinic = test_staffing_api.clinic  # the fixture: SF with a prescriber and two nurses


def _patch(client, c, clinician_id: int, body: Any, role: str = "manager"):
    return client.patch(f"/api/v1/clinicians/{clinician_id}", json=body, headers=_auth(c, role))


def test_edit_link_and_unlink_a_staff_user_audited(client, clinic, session):
    c, doc, nurses = clinic
    user = c.users["prescriber"]
    r = _patch(
        client, c, doc.id, {"name": "  Dr  Ada   Lane ", "title": "MD", "staff_user": user.id}
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {
        "id": doc.id,
        "name": "Dr Ada Lane",
        "role": "prescriber",
        "title": "MD",
        "active": True,
        "staff_user": user.id,
    }
    listed = client.get("/api/v1/clinicians", headers=_auth(c, "front_desk")).get_json()
    assert {x["id"]: x["staff_user"] for x in listed} == {
        doc.id: user.id,
        nurses[0].id: None,
        nurses[1].id: None,
    }
    # The same staff user cannot be linked to a second clinician.
    r = _patch(client, c, nurses[0].id, {"staff_user": user.id})
    assert r.status_code == 422
    assert r.get_json()["error"]["fields"] == {"staff_user": "already linked to another clinician"}
    r = _patch(client, c, doc.id, {"staff_user": None})
    assert r.status_code == 200 and r.get_json()["staff_user"] is None
    assert _patch(client, c, doc.id, {}).status_code == 200  # nothing to change: no entry
    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "clinician.updated").order_by(AuditEntry.id)
    ).all()
    assert [json.loads(e.details) for e in entries] == [
        {"name": "Dr Ada Lane", "title": "MD", "staff_user": user.id},
        {"staff_user": None},
    ]
    assert entries[0].staff_name == "Manager User" and entries[0].target.endswith("(API)")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"role": "nurse"}, "role", "cannot be changed (add a new clinician)"),
        ({"nickname": "Ada"}, "nickname", "unknown field"),
        ({"active": "false"}, "active", "must be true or false"),
        ({"active": None}, "active", "must not be null"),
        ({"name": ""}, "name", None),
        ({"staff_user": True}, "staff_user", "must be an integer"),
        ({"staff_user": "5"}, "staff_user", "must be an integer"),
        ({"staff_user": 999_999}, "staff_user", "unknown staff user"),
    ],
    ids=[
        "role",
        "unknown-key",
        "active-text",
        "active-null",
        "empty-name",
        "bool-id",
        "text-id",
        "unknown-user",
    ],
)
def test_bad_edits_are_422_naming_the_field(client, clinic, body, field, message):
    c, doc, _ = clinic
    r = _patch(client, c, doc.id, body)
    assert r.status_code == 422, r.get_json()
    fields = r.get_json()["error"]["fields"]
    assert list(fields) == [field]
    if message:
        assert fields[field] == message


def test_only_managers_and_admins_edit_and_unknown_is_404(client, clinic):
    c, doc, _ = clinic
    for role in ("front_desk", "nurse", "prescriber"):
        assert _patch(client, c, doc.id, {"title": "MD"}, role).status_code == 403
    assert _patch(client, c, doc.id, {"title": "MD"}, "admin").status_code == 200
    assert _patch(client, c, 999_999, {"title": "MD"}).status_code == 404
    assert client.patch(f"/api/v1/clinicians/{doc.id}", json={"title": "x"}).status_code == 401


def test_deactivating_the_prescriber_booked_infusions_need_is_refused(client, clinic, session):
    c, doc, nurses = clinic
    infusion = _book(client, "infusion", at(DAY, 10), 1)
    assert infusion.status_code == 201
    r = _patch(client, c, doc.id, {"active": False, "title": "MD"})
    assert r.status_code == 409
    error = r.get_json()["error"]
    assert error["code"] == "clinician_in_use"
    assert error["appointments"] == [infusion.get_json()["id"]]
    assert error["fields"] == {"active": "booked visits need this clinician"}
    session.expire_all()
    assert session.get(type(doc), doc.id).title == ""  # nothing of the edit was kept
    # Once the visit is cancelled, the prescriber can go; their shifts stop counting.
    appt = session.get(Appointment, infusion.get_json()["id"])
    client.post(
        f"/api/v1/appointments/{appt.id}/status", json={"status": "cancelled"}, headers=_auth(c)
    )
    r = _patch(client, c, doc.id, {"active": False})
    assert r.status_code == 200 and r.get_json()["active"] is False
    shifts = client.get(
        f"/api/v1/locations/sf/shifts?from={DAY}&to={DAY}", headers=_auth(c)
    ).get_json()
    assert doc.id not in {x["clinician"]["id"] for x in shifts}
    assert _book(client, "infusion", at(DAY, 10), 2).status_code == 409  # no prescriber now
    assert _patch(client, c, doc.id, {"active": True}).status_code == 200
    assert _book(client, "infusion", at(DAY, 10), 3).status_code == 201


def test_a_consultation_booked_with_them_holds_even_with_the_rules_off(client, clinic, session):
    c, doc, nurses = clinic
    second = staffing.create_clinician(session, name="Dr Second", role="prescriber")
    staffing.add_shift(session, c.sf, second.id, at(DAY, 8), at(DAY, 18))
    c.sf.staffing_rules = False
    session.commit()
    consult = _book(client, "consult", at(DAY, 11), 1, clinician=second.id)
    assert consult.status_code == 201, consult.get_json()
    r = _patch(client, c, second.id, {"active": False})
    assert r.status_code == 409
    assert r.get_json()["error"]["appointments"] == [consult.get_json()["id"]]


def test_a_deactivated_nurse_hands_their_infusions_to_a_nurse_on_shift(client, clinic, session):
    c, doc, nurses = clinic
    booked = _book(client, "infusion", at(DAY, 10), 1)
    assert booked.status_code == 201
    appt = session.get(Appointment, booked.get_json()["id"])
    leaving = appt.nurse_id
    assert leaving in {n.id for n in nurses}
    r = _patch(client, c, leaving, {"active": False})  # the other nurse has room (1:4)
    assert r.status_code == 200, r.get_json()
    session.expire_all()
    other = next(n for n in nurses if n.id != leaving)
    assert session.get(Appointment, appt.id).nurse_id == other.id
    handed = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "appointment.nurse_changed")
    ).one()
    assert handed.appointment_id == appt.id
    leaver = next(n for n in nurses if n.id == leaving)
    assert json.loads(handed.details) == {
        "from": leaver.name,
        "to": other.name,
        "reason": f"{leaver.name} deactivated",
    }


@pytest.mark.parametrize("value", [True, "8", 8.0, None], ids=["bool", "text", "float", "null"])
def test_ids_in_staffing_bodies_are_json_integers(client, clinic, value):
    c, doc, nurses = clinic
    shift = {
        "clinician": doc.id if value == "8" else value,
        "start": at(DAY, 19).astimezone(LA).isoformat(),
        "end": at(DAY, 20).astimezone(LA).isoformat(),
    }
    if value == "8":
        shift["clinician"] = str(doc.id)
    r = client.post("/api/v1/locations/sf/shifts", json=shift, headers=_auth(c))
    assert r.status_code == 422, r.get_json()
    assert list(r.get_json()["error"]["fields"]) == ["clinician"]
    booking_value = str(doc.id) if value == "8" else value
    r = _book(client, "consult", at(DAY, 11), 1, clinician=booking_value)
    if value is None:
        assert r.status_code == 201  # null: no choice, as before
    else:
        assert r.status_code == 422, r.get_json()
        assert list(r.get_json()["error"]["fields"]) == ["clinician"]
    r = client.post(
        "/api/v1/clinicians",
        json={"name": "Dr New", "role": "prescriber", "staff_user": value},
        headers=_auth(c),
    )
    assert r.status_code == (201 if value is None else 422)


def test_unknown_keys_in_staffing_bodies_are_refused_naming_them(client, clinic):
    c, doc, _ = clinic
    shift = {
        "clinician": doc.id,
        "start": at(DAY, 19).astimezone(LA).isoformat(),
        "end": at(DAY, 20).astimezone(LA).isoformat(),
        "location": "sf",
    }
    cases = [
        ("post", "/api/v1/locations/sf/shifts", shift),
        ("post", "/api/v1/clinicians", {"name": "X", "role": "nurse", "active": True}),
        ("patch", "/api/v1/locations/sf/staffing", {"rules": True, "nurses": 3}),
        ("patch", f"/api/v1/clinicians/{doc.id}", {"title": "MD", "id": doc.id}),
    ]
    for method, url, body in cases:
        r = client.open(url, method=method.upper(), json=body, headers=_auth(c))
        assert r.status_code == 422, (url, r.get_json())
        extra = (set(body) - {"clinician", "start", "end", "name", "role", "rules", "title"}).pop()
        assert r.get_json()["error"]["fields"] == {extra: "unknown field"}, url


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-12-07&to=2026-12-06", "to"),
        ("from=2026-12-01&to=2027-03-05", "to"),  # 95 days
        ("from=2026-12-01", "to"),
        ("from=2026-12-01&to=2200-12-31", "to"),
        ("from=1.12.2026&to=2026-12-02", "from"),
    ],
    ids=["backwards", "over-93-days", "missing", "year-2200", "not-a-date"],
)
def test_bad_shift_queries_are_400_as_for_availability(client, clinic, query, field):
    c, _, _ = clinic
    r = client.get(f"/api/v1/locations/sf/shifts?{query}", headers=_auth(c))
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"]["code"] == "invalid"
    assert field in r.get_json()["error"]["fields"]
    # The availability endpoint answers its own bad parameters the same way.
    r = client.get("/api/v1/locations/sf/availability?service=infusion&from=2026-13-01")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid"


def test_openapi_documents_the_edit_and_the_refused_visits(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorDetail"]["properties"]["appointments"]["anyOf"][0] == {
        "items": {"type": "integer"},
        "type": "array",
    }
    op = doc["paths"]["/api/v1/clinicians/{clinician_id}"]["patch"]
    assert {"200", "403", "404", "409", "422"} <= set(op["responses"])
    assert set(schemas["ClinicianPatchIn"]["properties"]) == {
        "name",
        "title",
        "active",
        "staff_user",
    }
    assert schemas["ClinicianPatchIn"].get("additionalProperties") is False
    assert "staff_user" in schemas["ClinicianOut"]["properties"]
    assert "422" not in doc["paths"]["/api/v1/locations/{location}/shifts"]["get"]["responses"]
