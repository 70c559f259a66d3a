"""The rota's edges through the pages and the API, on both databases: a manager of one location
changes that location's rota only and never sees another's visits; ids out of range, shifts out
of the listable dates and skipped local times are the form again naming the field; a removed
nurse's visits are handed on and audited; the public prescriber list needs a shift to come."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import Appointment, AuditEntry, ShiftPattern
from scheduler.services import rota_view, staffing
from tests.test_staffing_support import rota
from tests.web.staff_support import DAY, LA, NY, at, book, make_clinic, sign_in

HUGE = "99999999999999999999"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


@pytest.fixture
def clinic(session, clock):
    """San Francisco (the manager's only location) with a prescriber and two nurses; New York
    with its own prescriber, and a New York visit that needs her."""
    clinic = make_clinic(session)
    (doc,), nurses = rota(
        session, clinic.sf, nurses=2, hours=(dt.time(8), dt.time(18)), patients_per_nurse=2
    )
    ny_doc = staffing.create_clinician(session, name="Nia York", role="prescriber")
    ny_nurse = staffing.create_clinician(session, name="Ned York", role="nurse")
    for who in (ny_doc, ny_nurse):
        staffing.add_pattern(
            session,
            clinic.ny,
            who.id,
            weekday=DAY.weekday(),
            starts=dt.time(8),
            ends=dt.time(18),
            now=clock.now,
        )
    clinic.ny.staffing_rules = True
    ny_visit = book(
        session, clinic.ny, clinic.infusion, at(DAY, 10, tz=NY), clock.now, 7, "Yolanda Private"
    )
    session.commit()
    return clinic, doc, nurses, ny_doc, ny_visit


def _manager(client, clinic):
    assert sign_in(client, clinic.users["manager"].email).status_code == 302
    return client


def _ny_shift(session, clinic, who) -> str:
    pattern = session.scalars(
        select(ShiftPattern.id).where(
            ShiftPattern.clinician_id == who.id, ShiftPattern.location_id == clinic.ny.id
        )
    ).one()
    return f"p{pattern}:{DAY}"


def _audit(session, action: str) -> list[AuditEntry]:
    session.expire_all()
    return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# --- one location's manager, another location's rota ---------------------------------------------


def test_leave_from_a_locations_rota_touches_only_that_location(client, session, clinic):
    c, doc, nurses, ny_doc, ny_visit = clinic
    _manager(client, c)
    leave = {"week": str(DAY), "clinician": str(ny_doc.id), "date": str(DAY)}
    r = client.post("/staff/sf/rota/leave", data=leave)
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and 'id="refused-leave"' in html
    assert "Nia York has no weekly shift here on Tue 01 Dec." in html
    assert "Yolanda Private" not in html
    ny = staffing.location_shifts(session, c.ny, DAY, DAY)
    assert _ny_shift(session, c, ny_doc) in {s.id for s in ny}
    assert _audit(session, "shift.leave") == []
    # New York's own rota is not this manager's.
    assert client.post("/staff/ny/rota/leave", data=leave).status_code == 403


def test_a_one_location_manager_cannot_change_another_locations_rota(client, session, clinic):
    c, doc, nurses, ny_doc, ny_visit = clinic
    _manager(client, c)
    ny_shift = _ny_shift(session, c, ny_doc)
    week = {"week": str(DAY)}
    # Another location's shift does not exist under this one's URL; its own URL is forbidden.
    assert client.post(f"/staff/sf/rota/shifts/{ny_shift}/delete", data=week).status_code == 404
    assert client.post(f"/staff/ny/rota/shifts/{ny_shift}/delete", data=week).status_code == 403
    add = {**week, "clinician": str(ny_doc.id), "date": str(DAY), "starts": "19:00"}
    assert client.post("/staff/ny/rota/shifts", data={**add, "ends": "21:00"}).status_code == 403
    cover = {**add, "kind": "cover", "ends": "21:00"}
    assert client.post("/staff/ny/rota/shifts", data=cover).status_code == 403
    target = str(DAY + dt.timedelta(days=14))
    assert client.post("/staff/ny/rota/copy", data={**week, "target": target}).status_code == 403
    r = client.post(f"/staff/appointments/{ny_visit.id}/nurse", data={"nurse": ""})
    assert r.status_code == 403
    # Copying San Francisco's week copies San Francisco's shifts only.
    assert client.post("/staff/sf/rota/copy", data={**week, "target": target}).status_code == 303
    later = dt.date.fromisoformat(target)
    copied = staffing.location_shifts(session, c.sf, later, later + dt.timedelta(days=6))
    assert ny_doc.id not in {s.clinician_id for s in copied}
    assert all(s.id.startswith("p") for s in staffing.location_shifts(session, c.ny, later, later))
    # Adding her at San Francisco over her New York shift: busy, without New York's times.
    r = client.post("/staff/sf/rota/shifts", data={**add, "starts": "06:00", "ends": "09:00"})
    html = r.get_data(as_text=True)
    assert r.status_code == 409 and "(at another location)" in html
    assert "05:00-15:00" not in html and "Yolanda Private" not in html
    session.expire_all()
    assert session.get(Appointment, ny_visit.id).nurse_id is not None


def test_a_refusal_lists_only_the_pages_own_locations_visits(session, clinic, clock):
    c, doc, nurses, ny_doc, ny_visit = clinic
    sf_visit = book(session, c.sf, c.infusion, at(DAY, 10), clock.now, 8, "Sam Francisco")
    listed = rota_view.visits(session, [ny_visit.id, sf_visit.id], location_id=c.sf.id)
    assert [(v.id, v.patient) for v in listed] == [(sf_visit.id, "Sam Francisco")]


def test_clinician_busy_over_the_api_hides_another_locations_times(client, session, clinic):
    c, doc, nurses, ny_doc, ny_visit = clinic
    body = {
        "clinician": ny_doc.id,
        "start": at(DAY, 6).astimezone(LA).isoformat(),
        "end": at(DAY, 9).astimezone(LA).isoformat(),
    }
    for role, when in (("manager", "(at another location)"), ("admin", "(Tue 01 Dec 05:00-15:00)")):
        r = client.post(
            "/api/v1/locations/sf/shifts",
            json=body,
            headers={"Authorization": f"Bearer {c.tokens[role]}"},
        )
        assert r.status_code == 409
        error = r.get_json()["error"]
        assert error["code"] == "clinician_busy" and when in error["message"], error


# --- ids out of range ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [HUGE, "0", "²", "-1", "x"], ids=["huge", "zero", "sup", "neg", "x"]
)
def test_out_of_range_ids_in_rota_forms_are_the_form_again_naming_the_field(
    client, session, clinic, clock, raw
):
    c, doc, nurses, ny_doc, ny_visit = clinic
    _manager(client, c)
    shift = {"week": str(DAY), "clinician": raw, "date": str(DAY), "starts": "19:00"}
    for data, where in (
        ({**shift, "ends": "21:00"}, "add"),
        ({**shift, "ends": "21:00", "kind": "cover"}, "cover"),
        ({"week": str(DAY), "clinician": raw, "date": str(DAY)}, "leave"),
    ):
        url = "/staff/sf/rota/leave" if where == "leave" else "/staff/sf/rota/shifts"
        r = client.post(url, data=data)
        html = r.get_data(as_text=True)
        assert r.status_code == 422, (where, r.status_code)
        assert f'id="refused-{where}"' in html and "unknown clinician" in html
    sf_visit = book(session, c.sf, c.infusion, at(DAY, 10), clock.now, 9)
    session.commit()
    r = client.post(f"/staff/appointments/{sf_visit.id}/nurse", data={"nurse": raw})
    assert r.status_code == 422 and "unknown nurse" in r.get_data(as_text=True)


def test_out_of_range_ids_elsewhere_on_staff_pages_are_never_a_500(client, session, clinic, clock):
    c, doc, nurses, ny_doc, ny_visit = clinic
    _manager(client, c)
    r = client.get(f"/staff/sf/book?patient={HUGE}")
    assert r.status_code == 200
    r = client.get("/staff/sf/book?patient=²")
    assert r.status_code == 200
    for raw in (HUGE, "²"):
        r = client.post(f"/staff/patients/{ny_visit.patient_id}/merge", data={"duplicate": raw})
        assert r.status_code in (404, 422), r.status_code  # another location's patient: 404
    sf_visit = book(session, c.sf, c.infusion, at(DAY, 10), clock.now, 9)
    session.commit()
    for raw in (HUGE, "²"):
        r = client.post(f"/staff/patients/{sf_visit.patient_id}/merge", data={"duplicate": raw})
        assert r.status_code == 422 and "Enter the duplicate" in r.get_data(as_text=True)


# --- shifts within the listable dates; skipped local times ---------------------------------------


def test_shifts_out_of_range_are_422_naming_the_field_in_the_api_and_the_pages(
    client, session, clinic
):
    c, doc, nurses, ny_doc, ny_visit = clinic
    headers = {"Authorization": f"Bearer {c.tokens['manager']}"}
    cases = [
        ("1900-01-01T00:00+14:00", "1900-01-01T04:00+14:00", "start"),
        ("2200-12-31T20:00-08:00", "2201-01-01T02:00-08:00", "end"),
    ]
    for start, end, field in cases:
        body = {"clinician": nurses[0].id, "start": start, "end": end}
        r = client.post("/api/v1/locations/sf/shifts", json=body, headers=headers)
        assert r.status_code == 422, r.get_json()
        assert field in r.get_json()["error"]["fields"]
    _manager(client, c)
    add = {"week": str(DAY), "clinician": str(nurses[0].id), "date": "2200-12-31"}
    r = client.post("/staff/sf/rota/shifts", data={**add, "starts": "20:00", "ends": "02:00"})
    html = r.get_data(as_text=True)
    assert (
        r.status_code == 422 and 'id="refused-add"' in html and "That shift is out of range" in html
    )
    r = client.post("/staff/sf/rota/copy", data={"week": str(DAY), "target": "2200-12-29"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and 'id="refused-copy"' in html
    assert "<strong>target</strong>" in html
    later = staffing.location_shifts(session, c.sf, dt.date(2200, 12, 29), dt.date(2200, 12, 31))
    assert later and all(s.id.startswith("p") for s in later)  # the weekly rota; no copies


def test_a_local_time_the_clocks_skip_is_refused_naming_it(client, session, clinic):
    c, doc, nurses, ny_doc, ny_visit = clinic
    _manager(client, c)
    add = {"week": "2027-03-13", "clinician": str(nurses[0].id), "date": "2027-03-13"}
    r = client.post("/staff/sf/rota/shifts", data={**add, "starts": "22:00", "ends": "02:30"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and 'id="refused-add"' in html
    assert "That local time does not exist (the clocks skip it)." in html
    assert "<strong>ends</strong>: does not exist" in html
    # 03:00 exists: a four-hour night, shown as entered.
    r = client.post("/staff/sf/rota/shifts", data={**add, "starts": "22:00", "ends": "03:00"})
    assert r.status_code == 303
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Sat 13 Mar 22:00–03:00 (+1)" in html


# --- a removed nurse's visits are handed on, audited ---------------------------------------------


def test_removing_or_leave_of_a_nurse_hands_her_visits_on_and_audits_it(
    client, session, clinic, clock
):
    c, doc, nurses, ny_doc, ny_visit = clinic
    visit = book(session, c.sf, c.infusion, at(DAY, 10), clock.now, 1, "Ada Lovelace")
    session.commit()
    first = next(n for n in nurses if n.id == visit.nurse_id)
    other = next(n for n in nurses if n.id != visit.nurse_id)
    shift = next(
        s for s in staffing.location_shifts(session, c.sf, DAY, DAY) if s.clinician_id == first.id
    )
    r = client.delete(
        f"/api/v1/locations/sf/shifts/{shift.id}",
        headers={"Authorization": f"Bearer {c.tokens['manager']}"},
    )
    assert r.status_code == 204
    session.expire_all()
    assert session.get(Appointment, visit.id).nurse_id == other.id
    (entry,) = _audit(session, "appointment.nurse_changed")
    assert entry.appointment_id == visit.id and entry.location_id == c.sf.id
    assert first.name in entry.details and other.name in entry.details
    _manager(client, c)
    calendar = client.get(f"/staff/sf/calendar?date={DAY}").get_data(as_text=True)
    assert f"Nurse: {other.name}" in calendar and f"Nurse: {first.name}" not in calendar
    # Leave for the other nurse, with the rules off: nobody is left, the visit has no nurse.
    c.sf.staffing_rules = False
    session.commit()
    leave = {"week": str(DAY), "clinician": str(other.id), "date": str(DAY)}
    assert client.post("/staff/sf/rota/leave", data=leave).status_code == 303
    session.expire_all()
    assert session.get(Appointment, visit.id).nurse_id is None
    entries = _audit(session, "appointment.nurse_changed")
    assert len(entries) == 2 and '"to": null' in entries[-1].details
    calendar = client.get(f"/staff/sf/calendar?date={DAY}").get_data(as_text=True)
    assert "Nurse: " not in calendar


# --- the public prescriber list ------------------------------------------------------------------


def test_a_prescriber_whose_only_shift_is_past_is_not_offered(client, session, clinic, clock):
    c, doc, nurses, ny_doc, ny_visit = clinic
    old = staffing.create_clinician(session, name="Olga Past", role="prescriber")
    yesterday = clock.now.astimezone(LA).date() - dt.timedelta(days=1)
    staffing.add_shift(session, c.sf, old.id, at(yesterday, 9), at(yesterday, 12))
    session.commit()
    r = client.get("/api/v1/locations/sf/clinicians?service=consult")
    assert [p["name"] for p in r.get_json()] == [doc.name]
    r = client.get("/api/v1/locations/ny/clinicians?service=consult")
    assert [p["name"] for p in r.get_json()] == ["Nia York"]
