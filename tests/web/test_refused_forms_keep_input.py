"""A refused settings or booking form shows itself again (422) with the field named and what
was typed in its boxes, whatever the refusal (a control character or a value the rules refuse);
nothing is stored. On the location settings page, which holds several forms, only the form that
was sent shows what was typed: the others keep showing what is stored."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import (
    ApiToken,
    Appointment,
    AuditEntry,
    Closure,
    CourseTemplate,
    Location,
    Patient,
    Resource,
    Service,
    StaffUser,
)
from scheduler.services import courses, settings_admin, staffing
from tests.web.staff_support import DAY, make_clinic, sign_in

REFUSED = "contains a control character"
STORED_HOURS = "08:00-18:00"  # make_clinic's hours, every day


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


def text_of(html: str) -> str:
    return unescape(" ".join(re.sub(r"<[^>]+>", " ", html).split()))


def form_part(html: str, form_id: str) -> str:
    """The HTML of the form with this id (its boxes, for a form that holds them)."""
    match = re.search(rf'<form[^>]*id="{form_id}".*?</form>', html, re.S)
    assert match, f"no form {form_id}"
    return match.group(0)


def snapshot(session: Any) -> tuple[object, ...]:
    """What any of these forms could have stored."""
    session.expire_all()
    counts = tuple(
        session.scalar(select(func.count()).select_from(model))
        for model in (
            Location,
            Closure,
            Resource,
            Service,
            StaffUser,
            CourseTemplate,
            ApiToken,
            AuditEntry,
            Patient,
            Appointment,
        )
    )
    sf = session.scalars(select(Location).where(Location.slug == "sf")).one()
    state = (
        sf.name,
        sf.address,
        sf.timezone,
        sf.active,
        settings_admin.hours_text(sf),
        staffing.staffing_of(sf),
        sorted((r.name, r.position, r.active) for r in sf.resources),
        sorted((s.slug, s.name, s.duration_minutes) for s in session.scalars(select(Service))),
        sorted((u.email, u.name) for u in session.scalars(select(StaffUser))),
    )
    session.rollback()
    return counts, state


# One refused post: (url, form, the field named, [(form id or "", a snippet it must show)]).
Case = tuple[str, dict[str, str], str, list[tuple[str, str]]]
World = dict[str, Any]
LOC = "/staff/settings/locations/sf"


def _hours_nul(w: World) -> Case:
    form = {f"day{d}": STORED_HOURS for d in range(7)}
    form |= {"day0": "08:00-12:00\x00", "day1": "09:00-17:00"}
    kept = [("hours", 'value="08:00-12:00"'), ("hours", 'value="09:00-17:00"')]
    return f"{LOC}/hours", form, "day0", kept


def _hours_bad(w: World) -> Case:
    form = {f"day{d}": STORED_HOURS for d in range(7)}
    form |= {"day1": "07:30-16:00", "day2": "zz"}
    kept = [("hours", 'value="zz"'), ("hours", 'value="07:30-16:00"')]
    return f"{LOC}/hours", form, "day2", kept


def _details_nul(w: World) -> Case:
    form = {"name": "Mission Bay", "timezone": "America/Los_Angeles"}
    form |= {"address": "1 Main\x00 St", "phone": "+14155550111"}
    kept = [("location-details", 'value="Mission Bay"'), ("location-details", 'value="1 Main St"')]
    return LOC, form, "address", kept + [("location-details", 'value="+14155550111"')]


def _details_zone(w: World) -> Case:
    form = {"name": "Mission Bay", "timezone": "Mars/Olympus", "address": "2 Pier", "phone": ""}
    kept = [("location-details", 'value="Mission Bay"'), ("location-details", 'value="2 Pier"')]
    return LOC, form, "timezone", kept + [("location-details", 'value="Mars/Olympus"')]


def _closure_nul(w: World) -> Case:
    form = {"first_day": "2026-12-24", "last_day": "2026-12-26", "reason": "Holi\x00days"}
    kept = [("closure", 'value="2026-12-24"'), ("closure", 'value="2026-12-26"')]
    return f"{LOC}/closures", form, "reason", kept + [("closure", 'value="Holidays"')]


def _closure_backwards(w: World) -> Case:
    form = {"first_day": "2026-12-24", "last_day": "2026-12-20", "reason": "Staff training"}
    kept = [("closure", 'value="Staff training"'), ("closure", 'value="2026-12-20"')]
    return f"{LOC}/closures", form, "last_day", kept


def _chair_nul(w: World) -> Case:
    form = {"kind": "room", "name": "Recliner\x00 9", "position": "9"}
    kept = [("add-resource", 'value="Recliner 9"'), ("add-resource", 'value="9"')]
    return f"{LOC}/resources", form, "name", kept + [("add-resource", 'value="room" selected')]


def _chair_position(w: World) -> Case:
    form = {"kind": "chair", "name": "Recliner", "position": "first"}
    kept = [("add-resource", 'value="Recliner"'), ("add-resource", 'value="first"')]
    return f"{LOC}/resources", form, "position", kept


def _chair_row(w: World) -> Case:
    rid = w["chair"]
    form = {"name": "Window\x00 chair", "position": "12"}
    kept = [
        ("", f'value="Window chair" form="res{rid}"'),
        ("", f'value="12" size="4" form="res{rid}"'),
    ]
    return f"{LOC}/resources/{rid}", form, "name", kept


def _staffing(w: World) -> Case:
    form = {"rules": "on", "patients_per_nurse": "many", "starts_per_window": "7"}
    form |= {"start_window_minutes": "45"}
    kept = [("staffing-form", 'value="many"'), ("staffing-form", 'value="7"')]
    kept += [("staffing-form", 'value="45"'), ("staffing-form", 'name="rules" checked')]
    return f"{LOC}/staffing", form, "patients_per_nurse", kept


def _location_new(w: World) -> Case:
    form = {"slug": "oakland", "name": "Oakland Lake", "timezone": "Nowhere/Else"}
    form |= {"address": "3 Lake\x00 St", "phone": ""}
    kept = [("", 'value="Oakland Lake"'), ("", 'value="3 Lake St"'), ("", 'value="Nowhere/Else"')]
    return "/staff/settings/locations/new", form, "address", kept


def _service_edit(w: World) -> Case:
    form = {"name": "Infusion, long", "kind": "infusion", "resource_kind": "chair"}
    numbers = {"duration_minutes": "ninety", "prep_minutes": "10", "recovery_minutes": "20"}
    numbers |= {"slot_step_minutes": "15", "min_notice_minutes": "60", "horizon_days": "60"}
    form |= numbers | {"late_cancel_hours": "24", "locations": str(w["sf"]), "active": "on"}
    form |= {"description": "Sit back\nand relax"}
    kept = [("service", 'value="Infusion, long"'), ("service", 'value="ninety"')]
    kept += [("service", "Sit back\nand relax</textarea>")]
    return "/staff/settings/services/infusion", form, "duration_minutes", kept


def _staff_new(w: World) -> Case:
    form = {"name": "Nia Nurse", "email": "nia@clinic.example", "role": "nurse"}
    form |= {"locations": str(w["sf"]), "password": "pw-typed\x00", "active": "on"}
    kept = [("staff-user", 'value="Nia Nurse"'), ("staff-user", 'value="nia@clinic.example"')]
    kept += [("staff-user", 'value="nurse" selected')]
    return "/staff/settings/staff/new", form, "password", kept


def _staff_email(w: World) -> Case:
    form = {"name": "Nia Nurse", "email": "not an address", "role": "nurse"}
    form |= {"locations": str(w["sf"]), "password": "pw-typed long enough", "active": "on"}
    kept = [("staff-user", 'value="Nia Nurse"'), ("staff-user", 'value="not an address"')]
    return "/staff/settings/staff/new", form, "email", kept


def _course_new(w: World) -> Case:
    form = {"slug": "boost", "name": "Booster pair", "service": "infusion", "sessions": "two"}
    form |= {"min_gap_hours": "24", "max_gap_hours": "72", "within_days": "7"}
    kept = [("course-template", 'value="Booster pair"'), ("course-template", 'value="two"')]
    kept += [("course-template", 'value="72"')]
    return "/staff/settings/courses/new", form, "sessions", kept


CASES: dict[str, Callable[[World], Case]] = {
    "hours-nul": _hours_nul,
    "hours-not-a-time": _hours_bad,
    "details-nul": _details_nul,
    "details-unknown-zone": _details_zone,
    "closure-nul": _closure_nul,
    "closure-backwards": _closure_backwards,
    "add-chair-nul": _chair_nul,
    "add-chair-bad-order": _chair_position,
    "chair-row-nul": _chair_row,
    "staffing-not-a-number": _staffing,
    "new-location-nul": _location_new,
    "service-not-a-number": _service_edit,
    "new-staff-nul-password": _staff_new,
    "new-staff-bad-email": _staff_email,
    "new-course-not-a-number": _course_new,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_settings_form_shows_what_was_typed(client, session, case):
    clinic = make_clinic(session)
    session.commit()
    chair = min(r.id for r in clinic.sf.resources if r.kind == "chair")
    url, form, field, kept = CASES[case]({"sf": clinic.sf.id, "chair": chair})
    sign_in(client, clinic.users["admin"].email)
    before = snapshot(session)

    r = client.post(url, data=form)
    html = r.get_data(as_text=True)
    assert r.status_code == 422, text_of(html)[:500]
    assert "\x00" not in html
    assert re.search(rf"\b{field}\b ?: ", text_of(html)), text_of(html)[:800]
    if any("\x00" in v for v in form.values()):
        assert re.search(rf"\b{field} ?: {REFUSED}", text_of(html))
    for form_id, snippet in kept:
        assert snippet in (form_part(html, form_id) if form_id else html), (form_id, snippet)
    assert "pw-typed" not in html  # a password is never shown again
    assert snapshot(session) == before


def test_only_the_refused_form_on_the_location_page_shows_the_typed_values(client, session):
    clinic = make_clinic(session)
    session.commit()
    sign_in(client, clinic.users["admin"].email)
    form = {"name": "Renamed", "timezone": "Mars/Olympus", "address": "", "phone": ""}
    html = client.post(LOC, data=form).get_data(as_text=True)
    # The hours, add-chair and staffing forms show what is stored, without the error.
    hours = form_part(html, "hours")
    assert hours.count(f'value="{STORED_HOURS}"') == 7 and "field-error" not in hours
    assert 'value=""' in form_part(html, "add-resource")
    assert "field-error" not in form_part(html, "add-resource")
    assert 'value="4"' in form_part(html, "staffing-form")  # patients per nurse, as stored
    assert "<h1>San Francisco Mission</h1>" in html  # the stored name heads the page
    assert 'name="name" value="Renamed"' in form_part(html, "location-details")


# --- the patient's details forms ------------------------------------------------------------------

PATIENT = {
    "name": "Robin\x00 Example",
    "phone": "(415) 555-0123",
    "email": "robin@example.com",
    "date_of_birth": "1980-04-02",
    "note": "Ground floor,\nplease",
    "sms_consent": "1",
}
KEPT = (
    'value="Robin Example"',
    'value="(415) 555-0123"',
    'value="robin@example.com"',
    'value="1980-04-02"',
    ">Ground floor,\nplease</textarea>",
    'name="sms_consent" value="1" checked',
)


def _assert_details_kept(r: Any) -> str:
    html = r.get_data(as_text=True)
    assert r.status_code == 422, text_of(html)[:500]
    assert "\x00" not in html
    assert "Full name: Had a character we cannot accept" in text_of(html)
    assert 'id="name-error"' in html and 'aria-invalid="true"' in html
    for snippet in KEPT:
        assert snippet in html, snippet
    return html


def test_a_nul_in_the_booking_details_shows_the_form_again(client, session):
    make_clinic(session)
    session.commit()
    before = snapshot(session)
    form = {**PATIENT, "start": f"{DAY}T10:00", "submission": "one-form"}

    html = _assert_details_kept(client.post("/book/sf/consult/details", data=form))
    assert 'name="start" value="2026-12-01T10:00"' in html  # the time is still the chosen one
    assert snapshot(session) == before
    # The same form, the character removed, books.
    clean = {**form, "name": "Robin Example"}
    assert client.post("/book/sf/consult/details", data=clean).status_code == 303


def pair_template(session) -> None:
    """A two-consultation course template, "pair", at the clinic of make_clinic."""
    courses.save_template(
        session,
        None,
        {
            "slug": "pair",
            "name": "Consultation pair",
            "service": "consult",
            "sessions": 2,
            "min_gap_hours": 24,
            "max_gap_hours": 168,
            "within_days": 14,
        },
    )


def test_a_nul_in_the_course_details_shows_the_form_again(client, session):
    make_clinic(session)
    pair_template(session)
    session.commit()
    before = snapshot(session)
    starts = [f"{DAY}T10:00", "2026-12-03T10:00"]
    url = "/book/sf/consult/course/pair/details"

    html = _assert_details_kept(client.post(url, data={**PATIENT, "starts": starts}))
    assert re.findall(r'name="starts" value="([^"]+)"', html) == starts
    assert snapshot(session) == before
    clean = {**PATIENT, "name": "Robin Example", "starts": starts}
    assert client.post(url, data=clean).status_code == 303
