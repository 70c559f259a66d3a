"""The clinicians page (list, add, edit, link a staff user, deactivate), through the Flask test
client on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import AuditEntry, Clinician
from scheduler.services import staffing
from tests.test_staffing_support import rota
from tests.web.staff_support import DAY, NY, at, book, make_clinic, sign_in

URL = "/staff/settings/clinicians"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


@pytest.fixture
def clinic(session):
    clinic = make_clinic(session)
    (doc,), nurses = rota(session, clinic.sf, nurses=1, hours=(dt.time(8), dt.time(18)))
    session.commit()
    return clinic, doc, nurses


def _as(client, clinic, role: str):
    assert sign_in(client, clinic.users[role].email).status_code == 302
    return client


def _audit(session, action: str) -> list[dict[str, Any]]:
    session.expire_all()
    rows = session.scalars(select(AuditEntry).where(AuditEntry.action == action))
    return [json.loads(x.details) for x in rows]


@pytest.mark.parametrize("role", ["front_desk", "nurse", "prescriber"])
def test_only_managers_and_admins_see_the_page(client, clinic, role):
    c, doc, _ = clinic
    _as(client, c, role)
    assert client.get(URL).status_code == 403
    assert client.get(f"{URL}/{doc.id}").status_code == 403
    assert client.post(URL, data={"name": "X", "role": "nurse"}).status_code == 403


def test_list_add_and_a_refused_add_names_the_fields(client, clinic, session):
    c, doc, nurses = clinic
    _as(client, c, "manager")
    html = client.get(URL).get_data(as_text=True)
    assert doc.name in html and nurses[0].name in html
    # The rota links here for managers.
    assert f'href="{URL}"' in client.get(f"/staff/sf/rota?date={DAY}").get_data(as_text=True)
    r = client.post(URL, data={"name": " ", "role": "doctor", "title": "MD"})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert '<span class="field-error">required</span>' in html
    assert '<span class="field-error">prescriber or nurse</span>' in html
    assert 'value="MD"' in html  # what was typed is kept
    user = c.users["prescriber"]
    r = client.post(
        URL, data={"name": "Dr Cover", "role": "prescriber", "staff_user": str(user.id)}
    )
    assert r.status_code == 303
    added = session.scalars(select(Clinician).where(Clinician.name == "Dr Cover")).one()
    assert added.staff_user_id == user.id and added.active
    assert _audit(session, "clinician.created") == [
        {"name": "Dr Cover", "role": "prescriber", "staff_user": user.id}
    ]
    r = client.post(URL, data={"name": "Dr Twin", "role": "prescriber", "staff_user": "x"})
    assert r.status_code == 422
    assert "unknown staff user" in r.get_data(as_text=True)


def test_edit_and_link_then_unlink(client, clinic, session):
    c, doc, _ = clinic
    _as(client, c, "admin")
    user = c.users["prescriber"]
    form = {"name": "Dr Lane", "title": "DO", "staff_user": str(user.id), "active": "on"}
    assert client.post(f"{URL}/{doc.id}", data=form).status_code == 303
    html = client.get(f"{URL}/{doc.id}").get_data(as_text=True)
    assert 'value="Dr Lane"' in html and f'<option value="{user.id}" selected' in html
    assert client.post(f"{URL}/{doc.id}", data={**form, "staff_user": ""}).status_code == 303
    assert _audit(session, "clinician.updated") == [
        {"name": "Dr Lane", "title": "DO", "staff_user": user.id},
        {"staff_user": None},
    ]
    r = client.post(f"{URL}/{doc.id}", data={**form, "name": ""})
    assert r.status_code == 422
    assert '<span class="field-error">required</span>' in r.get_data(as_text=True)
    assert client.get(f"{URL}/999999").status_code == 404


def test_a_refused_deactivation_lists_own_visits_and_counts_the_others(
    client, clinic, session, clock
):
    c, doc, nurses = clinic
    # The prescriber also covers New York early (before their San Francisco day), where a
    # visit depends on them.
    staffing.add_shift(session, c.ny, doc.id, at(DAY, 7, tz=NY), at(DAY, 10, 55, tz=NY))
    c.ny.staffing_rules = True
    other_nurse = staffing.create_clinician(session, name="Nurse NY", role="nurse")
    staffing.add_shift(session, c.ny, other_nurse.id, at(DAY, 7, tz=NY), at(DAY, 18, tz=NY))
    here = book(session, c.sf, c.infusion, at(DAY, 10), clock.now, 1, "Ada Here")
    book(session, c.ny, c.infusion, at(DAY, 9, tz=NY), clock.now, 2, "Ny Patient")
    session.commit()
    _as(client, c, "manager")
    form = {"name": doc.name, "title": "", "staff_user": ""}  # "active" unticked
    r = client.post(f"{URL}/{doc.id}", data=form)
    assert r.status_code == 409
    html = r.get_data(as_text=True)
    assert "Booked visits need" in html
    assert "Ada Here" in html and f"/staff/appointments/{here.id}" in html
    assert "Ny Patient" not in html  # another location's patient is not named
    assert "And 1 booked visit at other locations." in html
    session.expire_all()
    assert session.get(Clinician, doc.id).active is True
    assert _audit(session, "clinician.updated") == []


def test_a_control_character_shows_the_form_again_with_what_was_typed(client, clinic, session):
    c, doc, _ = clinic
    _as(client, c, "manager")
    r = client.post(URL, data={"name": "Dr New\x00", "role": "nurse", "title": "RN (night)"})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert "name" in html and "RN (night)" in html and "Dr New" in html
    session.expire_all()
    assert session.scalar(select(Clinician).where(Clinician.name.like("Dr New%"))) is None
    r = client.post(f"{URL}/{doc.id}", data={"name": "Renamed", "title": "MD\x00"})
    assert r.status_code == 422 and "Renamed" in r.get_data(as_text=True)
    session.expire_all()
    assert session.get(Clinician, doc.id).name == doc.name
