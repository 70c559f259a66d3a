"""A control character in any staff form field: the form again (422), the field named and the
rest of the input kept, nothing stored; never the generic error page. Every staff form view
opts in (`marks_form_problems`) and asks `staff_common.refused_characters` first."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import ApiToken, Appointment, Patient, ResourceBlock, Service
from scheduler.services import booking, staffing
from tests.web.staff_support import DAY, at, book, make_clinic, sign_in

REFUSED = "contains a control character"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


def test_every_staff_form_view_marks_its_own_form(app):
    posts = [
        rule
        for rule in app.url_map.iter_rules()
        if "POST" in (rule.methods or ()) and rule.endpoint.startswith("staff")
    ]
    assert len(posts) > 30
    unmarked = [
        r.endpoint
        for r in posts
        if not getattr(app.view_functions[r.endpoint], "marks_form_problems", False)
    ]
    assert unmarked == []


def count(session, model) -> int:
    n = session.scalar(select(func.count()).select_from(model))
    session.rollback()
    return int(n or 0)


def text_of(html: str) -> str:
    return unescape(" ".join(re.sub(r"<[^>]+>", " ", html).split()))


World = dict[str, Any]


def _book(w: World) -> tuple[str, dict[str, str], str, str, Callable[[Any], object]]:
    form = {"service": "infusion", "date": str(DAY), "time": "11:00", "resource": ""}
    form |= {"name": "Pat Typed", "phone": "+14155550123", "email": "pat@example.com"}
    form |= {"note": "bring\x00 a blanket"}
    return "/staff/sf/book", form, "note", 'value="Pat Typed"', lambda s: count(s, Appointment)


def _cancel(w: World) -> tuple[str, dict[str, str], str, str, Callable[[Any], object]]:
    def state(s: Any) -> object:
        found = s.get(Appointment, w["appt"]).status
        s.rollback()
        return found

    return f"/staff/appointments/{w['appt']}/cancel", {"reason": "ill\x00"}, "reason", "", state


def _block_delete(w: World) -> tuple[str, dict[str, str], str, str, Callable[[Any], object]]:
    url = f"/staff/sf/blocks/{w['block']}/delete"
    return (
        url,
        {"reason": "fixed\x00 pump"},
        "reason",
        'value="fixed pump"',
        (lambda s: count(s, ResourceBlock)),
    )


def _service_new(w: World) -> tuple[str, dict[str, str], str, str, Callable[[Any], object]]:
    form = {"slug": "spravato", "name": "Spra\x00vato", "kind": "infusion"}
    form |= {"resource_kind": "chair", "locations": str(w["sf"].id)}
    numbers = {"duration_minutes": "120", "prep_minutes": "10", "recovery_minutes": "0"}
    numbers |= {"slot_step_minutes": "15", "min_notice_minutes": "60", "horizon_days": "60"}
    form |= numbers | {"late_cancel_hours": "24"}
    return (
        "/staff/settings/services/new",
        form,
        "name",
        'value="spravato"',
        (lambda s: count(s, Service)),
    )


def _token(w: World) -> tuple[str, dict[str, str], str, str, Callable[[Any], object]]:
    url = "/staff/account/tokens"
    return url, {"label": "tab\x00let"}, "label", 'value="tablet"', lambda s: count(s, ApiToken)


def _shift(w: World) -> tuple[str, dict[str, str], str, str, Callable[[Any], object]]:
    form = {"week": str(DAY), "clinician": str(w["nurse"]), "date": str(DAY)}
    form |= {"starts": "18:00", "ends": "22:00", "kind": "cover", "note": "for\x00 Ann"}
    return (
        "/staff/sf/rota/shifts",
        form,
        "note",
        'value="22:00"',
        (lambda s: len(staffing.location_shifts(s, w["sf"], DAY, DAY))),
    )


def _patient_edit(w: World) -> tuple[str, dict[str, str], str, str, Callable[[Any], object]]:
    def state(s: Any) -> object:
        found = s.get(Patient, w["patient"]).name
        s.rollback()
        return found

    form = {"name": "Pat\x00 Renamed", "phone": "+14155550199", "email": "pat1@example.com"}
    return f"/staff/patients/{w['patient']}", form, "name", 'value="+14155550199"', state


CASES = {
    "staff-booking": _book,
    "cancel-a-visit": _cancel,
    "unblock": _block_delete,
    "new-service": _service_new,
    "api-token": _token,
    "rota-cover": _shift,
    "patient-details": _patient_edit,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_nul_in_a_staff_form_shows_the_form_again_with_the_field_named(
    client, session, clock, case
):
    clinic = make_clinic(session)
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now)
    block = booking.create_block(
        session, clinic.sf.resources[1], at(DAY, 9), at(DAY, 10), now=clock.now
    )
    nurse = staffing.create_clinician(session, name="Nora Nurse", role="nurse")
    session.commit()
    world = {
        "sf": clinic.sf,
        "appt": appt.id,
        "patient": appt.patient_id,
        "block": block.id,
        "nurse": nurse.id,
    }
    url, form, field, kept, stored = CASES[case](world)
    sign_in(client, clinic.users["admin"].email)
    before = stored(session)

    r = client.post(url, data=form)
    html = r.get_data(as_text=True)
    assert r.status_code == 422, text_of(html)[:500]
    assert "\x00" not in html
    assert re.search(rf"\b{field} ?: {REFUSED}", text_of(html)), text_of(html)[:800]
    assert 'method="post"' in html  # the form itself, not the generic error page
    if kept:
        assert kept in html
    assert stored(session) == before
    # The same form without the character goes through.
    clean = {k: v.replace("\x00", "") for k, v in form.items()}
    assert client.post(url, data=clean).status_code in (201, 303)
