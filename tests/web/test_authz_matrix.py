"""Who may do what: each role x own/other location x each staff page and staff API endpoint.

Users other than the admin work at San Francisco only; "other" is New York. Pages answer
302 (to sign-in) without a session, API endpoints 401 without a token; another location's
pages and API calls answer 403 and never show its name or its patients.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from scheduler.models import Course
from scheduler.services import booking, courses, staffing, waitlist
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.web.staff_support import DAY, LA, NY, at, book, make_clinic, sign_in

ROLES = ("admin", "manager", "front_desk", "nurse", "prescriber")
OTHER_NAMES = ("New York Flatiron", "Ny Patient")


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


@dataclass
class World:
    clinic: Any
    appts: dict[str, Any]
    blocks: dict[str, Any]
    chairs: dict[str, Any]
    clinician: Any
    shifts: dict[str, str]
    courses: dict[str, Any]
    entries: dict[str, Any]
    here: dict[str, Any]  # a visit checked in, with an escort (for the "ready" text)


@pytest.fixture
def world(session, clock) -> World:
    clinic = make_clinic(session)
    appts = {
        "sf": book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, 1, "Sf Patient"),
        "ny": book(
            session, clinic.ny, clinic.infusion, at(DAY, 10, tz=NY), clock.now, 2, "Ny Patient"
        ),
    }
    chairs = {"sf": clinic.sf.resources[3], "ny": clinic.ny.resources[2]}
    blocks = {
        key: booking.create_block(
            session, chairs[key], at(DAY, 8, tz=tz), at(DAY, 9, tz=tz), reason="x", now=clock.now
        )
        for key, tz in (("sf", LA), ("ny", NY))
    }
    clinician = staffing.create_clinician(session, name="Nurse Float", role="nurse")
    shifts = {
        key: staffing.add_shift(session, loc, clinician.id, at(DAY, 6, tz=tz), at(DAY, 7, tz=tz)).id
        for key, loc, tz in (("sf", clinic.sf, LA), ("ny", clinic.ny, NY))
    }
    here = {
        "sf": book(
            session, clinic.sf, clinic.infusion, at(DAY, 14), clock.now, 3, "Sf Patient Here"
        ),
        "ny": book(
            session, clinic.ny, clinic.infusion, at(DAY, 14, tz=NY), clock.now, 4, "Ny Patient Here"
        ),
    }
    for appt in [*appts.values(), *here.values()]:  # so the "ready" text has someone to go to
        appt.escort_name, appt.escort_phone = "Sam Driver", "+14155550188"
    template = courses.save_template(
        session,
        None,
        {
            "slug": "pair",
            "name": "Two sessions",
            "service": "infusion",
            "sessions": 2,
            "min_gap_hours": 24,
            "max_gap_hours": 72,
            "within_days": 7,
            "review_after": 1,
        },
    )
    # A course around each location's visit, its review open (rows written directly: cheap).
    booked = {}
    for key, appt in appts.items():
        course = Course(
            template_id=template.id,
            patient_id=appt.patient_id,
            location_id=appt.location_id,
            sessions=1,
            status="active",
            manage_token=f"authz-course-token-{key}-0123456789",
            review_state="pending",
            reviewed_by_name="",
        )
        session.add(course)
        session.flush()
        appt.course_id, appt.course_session = course.id, 1
        booked[key] = course
    entries = {
        key: waitlist.join(
            session,
            waitlist.JoinRequest(
                location=key,
                service="infusion",
                course=None,
                patient=PatientDetails(f"Waiting {n}", f"+1415555{70 + n:04d}", "", True),
                earliest=DAY,
                latest=DAY,
            ),
            now=clock.now,
            settings=ClinicSettings(),
        )
        for n, key in enumerate(("sf", "ny"))
    }
    for appt in here.values():
        booking.set_status(session, appt, "checked_in", now=clock.now, settings=ClinicSettings())
    session.commit()
    return World(clinic, appts, blocks, chairs, clinician, shifts, booked, entries, here)


def access(role: str, own: bool) -> bool:
    return role == "admin" or own


def settings_access(role: str, own: bool) -> bool:
    return role == "admin" or (role == "manager" and own)


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[World, str], str]
    ok: int
    allowed: Callable[[str, bool], bool] = access
    data: Callable[[World, str], dict[str, Any]] | None = None
    api: bool = False
    # What a refusal answers; patients of another location are not found (404), not forbidden.
    denied: Callable[[str, bool], int] = lambda role, own: 403


def _not_found_elsewhere(role: str, own: bool) -> int:
    return 403 if own else 404


def _book_data(w: World, loc: str) -> dict[str, Any]:
    return {
        "service": "infusion",
        "date": DAY.isoformat(),
        "time": "11:00",
        "name": "New Patient",
        "phone": "+14155550177",
        "email": "new@example.com",
    }


def _block_data(w: World, loc: str) -> dict[str, Any]:
    return {
        "resource": str(w.chairs[loc].id),
        "date": DAY.isoformat(),
        "start": "15:00",
        "end": "16:00",
        "reason": "maintenance",
    }


def _api_shift(w: World, loc: str) -> dict[str, Any]:
    tz = LA if loc == "sf" else NY
    return {
        "clinician": w.clinician.id,
        "start": at(DAY, 19, tz=tz).isoformat(),
        "end": at(DAY, 20, tz=tz).isoformat(),
    }


def _api_block(w: World, loc: str) -> dict[str, Any]:
    tz = LA if loc == "sf" else NY
    return {
        "resource": w.chairs[loc].name,
        "start": at(DAY, 15, tz=tz).isoformat(),
        "end": at(DAY, 16, tz=tz).isoformat(),
        "reason": "maintenance",
    }


ENDPOINTS = [
    Endpoint("calendar", "GET", lambda w, loc: f"/staff/{loc}/calendar?date={DAY}", 200),
    Endpoint(
        "week",
        "GET",
        lambda w, loc: f"/staff/{loc}/calendar?date={DAY}&view=week&resource={w.chairs[loc].id}",
        200,
    ),
    Endpoint("week, all chairs", "GET", lambda w, loc: f"/staff/{loc}/calendar?view=week", 200),
    Endpoint("day sheet", "GET", lambda w, loc: f"/staff/{loc}/day-sheet?date={DAY}", 200),
    Endpoint(
        "book form, free times",
        "GET",
        lambda w, loc: f"/staff/{loc}/book?service=infusion&date={DAY}",
        200,
    ),
    Endpoint("summary", "GET", lambda w, loc: f"/staff/{loc}/summary?date={DAY}", 200),
    Endpoint(
        "utilisation", "GET", lambda w, loc: f"/staff/{loc}/utilisation?from={DAY}&to={DAY}", 200
    ),
    Endpoint(
        "utilisation csv",
        "GET",
        lambda w, loc: f"/staff/{loc}/utilisation.csv?from={DAY}&to={DAY}",
        200,
    ),
    Endpoint("book form", "GET", lambda w, loc: f"/staff/{loc}/book", 200),
    Endpoint("book", "POST", lambda w, loc: f"/staff/{loc}/book", 303, data=_book_data),
    Endpoint("block form", "GET", lambda w, loc: f"/staff/{loc}/blocks/new", 200),
    Endpoint("block", "POST", lambda w, loc: f"/staff/{loc}/blocks", 303, data=_block_data),
    Endpoint("block page", "GET", lambda w, loc: f"/staff/{loc}/blocks/{w.blocks[loc].id}", 200),
    Endpoint(
        "unblock",
        "POST",
        lambda w, loc: f"/staff/{loc}/blocks/{w.blocks[loc].id}/delete",
        303,
        data=lambda w, loc: {},
    ),
    Endpoint("appointment", "GET", lambda w, loc: f"/staff/appointments/{w.appts[loc].id}", 200),
    Endpoint(
        "check in",
        "POST",
        lambda w, loc: f"/staff/appointments/{w.appts[loc].id}/status",
        303,
        data=lambda w, loc: {"status": "checked_in"},
    ),
    Endpoint(
        "escort ready",
        "POST",
        lambda w, loc: f"/staff/appointments/{w.here[loc].id}/ready",
        303,
        data=lambda w, loc: {},
    ),
    Endpoint(
        "cancel",
        "POST",
        lambda w, loc: f"/staff/appointments/{w.appts[loc].id}/cancel",
        303,
        data=lambda w, loc: {"reason": "asked to"},
    ),
    Endpoint(
        "move",
        "POST",
        lambda w, loc: f"/staff/appointments/{w.appts[loc].id}/move",
        303,
        data=lambda w, loc: {"date": DAY.isoformat(), "time": "12:00"},
    ),
    Endpoint(
        "location settings",
        "GET",
        lambda w, loc: f"/staff/settings/locations/{loc}",
        200,
        allowed=settings_access,
    ),
    Endpoint(
        "opening hours",
        "POST",
        lambda w, loc: f"/staff/settings/locations/{loc}/hours",
        303,
        allowed=settings_access,
        data=lambda w, loc: {f"day{d}": "08:00-18:00" for d in range(7)},
    ),
    Endpoint(
        "add chair",
        "POST",
        lambda w, loc: f"/staff/settings/locations/{loc}/resources",
        303,
        allowed=settings_access,
        data=lambda w, loc: {"kind": "chair", "name": "Chair 9"},
    ),
    Endpoint("rota", "GET", lambda w, loc: f"/staff/{loc}/rota?date={DAY}", 200),
    Endpoint("waitlist", "GET", lambda w, loc: f"/staff/{loc}/waitlist", 200),
    Endpoint(
        "waitlist offer form",
        "GET",
        lambda w, loc: f"/staff/{loc}/waitlist/{w.entries[loc].id}/offer?date={DAY}",
        200,
    ),
    Endpoint(
        "waitlist offer by hand",
        "POST",
        lambda w, loc: f"/staff/{loc}/waitlist/{w.entries[loc].id}/offer",
        303,
        data=lambda w, loc: {"start": at(DAY, 14, tz=LA if loc == "sf" else NY).isoformat()},
    ),
    Endpoint(
        "rota add shift",
        "POST",
        lambda w, loc: f"/staff/{loc}/rota/shifts",
        303,
        allowed=settings_access,
        data=lambda w, loc: {
            "clinician": str(w.clinician.id),
            "date": DAY.isoformat(),
            "starts": "19:00",
            "ends": "20:00",
        },
    ),
    Endpoint(
        "rota remove shift",
        "POST",
        lambda w, loc: f"/staff/{loc}/rota/shifts/{w.shifts[loc]}/delete",
        303,
        allowed=settings_access,
        data=lambda w, loc: {"week": DAY.isoformat()},
    ),
    Endpoint(
        "rota copy week",
        "POST",
        lambda w, loc: f"/staff/{loc}/rota/copy",
        303,
        allowed=settings_access,
        data=lambda w, loc: {"week": DAY.isoformat(), "target": "2026-12-08"},
    ),
    Endpoint(
        "visit nurse",
        "POST",
        lambda w, loc: f"/staff/appointments/{w.appts[loc].id}/nurse",
        303,
        data=lambda w, loc: {"nurse": ""},
    ),
    Endpoint(
        "staffing rules",
        "POST",
        lambda w, loc: f"/staff/settings/locations/{loc}/staffing",
        303,
        allowed=settings_access,
        data=lambda w, loc: {
            "patients_per_nurse": "5",
            "starts_per_window": "3",
            "start_window_minutes": "30",
        },
    ),
    Endpoint(
        "patient record",
        "GET",
        lambda w, loc: f"/staff/patients/{w.appts[loc].patient_id}",
        200,
        denied=_not_found_elsewhere,
    ),
    Endpoint(
        "patient edit",
        "POST",
        lambda w, loc: f"/staff/patients/{w.appts[loc].patient_id}",
        303,
        data=lambda w, loc: {
            "name": w.appts[loc].patient.name,
            "phone": w.appts[loc].patient.phone,
            "email": w.appts[loc].patient.email,
            "notes": "prefers mornings",
        },
        denied=_not_found_elsewhere,
    ),
    # Not tied to a location: the same answer for "own" and "other".
    Endpoint(
        "patient search",
        "GET",
        lambda w, loc: "/staff/patients?q=patient",
        200,
        allowed=lambda r, o: True,
    ),
    Endpoint("home", "GET", lambda w, loc: "/staff/", 200, allowed=lambda r, o: True),
    Endpoint("account", "GET", lambda w, loc: "/staff/account", 200, allowed=lambda r, o: True),
    Endpoint("audit log", "GET", lambda w, loc: "/staff/audit", 200, allowed=lambda r, o: True),
    Endpoint(
        "settings",
        "GET",
        lambda w, loc: "/staff/settings",
        200,
        allowed=lambda r, o: r in ("admin", "manager"),
    ),
    Endpoint(
        "staff users",
        "GET",
        lambda w, loc: "/staff/settings/staff/new",
        200,
        allowed=lambda r, o: r == "admin",
    ),
    Endpoint(
        "new location",
        "GET",
        lambda w, loc: "/staff/settings/locations/new",
        200,
        allowed=lambda r, o: r == "admin",
    ),
    # Clinicians float between locations: one list for managers and admins.
    Endpoint(
        "clinicians",
        "GET",
        lambda w, loc: "/staff/settings/clinicians",
        200,
        allowed=lambda r, o: r in ("admin", "manager"),
    ),
    Endpoint(
        "clinician edit",
        "POST",
        lambda w, loc: f"/staff/settings/clinicians/{w.clinician.id}",
        303,
        allowed=lambda r, o: r in ("admin", "manager"),
        data=lambda w, loc: {"name": "Nurse Float", "title": "RN", "active": "on"},
    ),
    Endpoint("course page", "GET", lambda w, loc: f"/staff/courses/{w.courses[loc].id}", 200),
    Endpoint(
        "course review",
        "POST",
        lambda w, loc: f"/staff/courses/{w.courses[loc].id}/review",
        303,
        allowed=lambda r, o: r == "admin" or (r in ("manager", "prescriber") and o),
        data=lambda w, loc: {"decision": "continue"},
    ),
    Endpoint(
        "course settings",
        "GET",
        lambda w, loc: "/staff/settings/courses",
        200,
        allowed=lambda r, o: r in ("admin", "manager"),
    ),
    Endpoint(
        "new course template",
        "GET",
        lambda w, loc: "/staff/settings/courses/new",
        200,
        allowed=lambda r, o: r in ("admin", "manager"),
    ),
    # Its service is offered at both locations: only an admin may edit it.
    Endpoint(
        "course template",
        "GET",
        lambda w, loc: "/staff/settings/courses/pair",
        200,
        allowed=lambda r, o: r == "admin",
    ),
    # The JSON API, with the same users' Bearer tokens.
    Endpoint(
        "api calendar",
        "GET",
        lambda w, loc: f"/api/v1/locations/{loc}/calendar?date={DAY}",
        200,
        api=True,
    ),
    Endpoint(
        "api block",
        "POST",
        lambda w, loc: f"/api/v1/locations/{loc}/blocks",
        201,
        data=_api_block,
        api=True,
    ),
    Endpoint(
        "api unblock",
        "DELETE",
        lambda w, loc: f"/api/v1/locations/{loc}/blocks/{w.blocks[loc].id}",
        204,
        api=True,
    ),
    Endpoint(
        "api shifts",
        "GET",
        lambda w, loc: f"/api/v1/locations/{loc}/shifts?from={DAY}&to={DAY}",
        200,
        api=True,
    ),
    Endpoint(
        "api add shift",
        "POST",
        lambda w, loc: f"/api/v1/locations/{loc}/shifts",
        201,
        allowed=settings_access,
        data=_api_shift,
        api=True,
    ),
    Endpoint(
        "api remove shift",
        "DELETE",
        lambda w, loc: f"/api/v1/locations/{loc}/shifts/{w.shifts[loc]}",
        204,
        allowed=settings_access,
        api=True,
    ),
    Endpoint(
        "api utilisation",
        "GET",
        lambda w, loc: f"/api/v1/locations/{loc}/utilisation?from={DAY}&to={DAY}",
        200,
        api=True,
    ),
    Endpoint(
        "api staffing",
        "GET",
        lambda w, loc: f"/api/v1/locations/{loc}/staffing",
        200,
        api=True,
    ),
    Endpoint(
        "api change staffing",
        "PATCH",
        lambda w, loc: f"/api/v1/locations/{loc}/staffing",
        200,
        allowed=settings_access,
        data=lambda w, loc: {"patients_per_nurse": 5},
        api=True,
    ),
    Endpoint(
        "api clinicians",
        "GET",
        lambda w, loc: "/api/v1/clinicians",
        200,
        allowed=lambda r, o: True,
        api=True,
    ),
    Endpoint(
        "api add clinician",
        "POST",
        lambda w, loc: "/api/v1/clinicians",
        201,
        allowed=lambda r, o: r in ("admin", "manager"),
        data=lambda w, loc: {"name": "New Nurse", "role": "nurse"},
        api=True,
    ),
    Endpoint(
        "api edit clinician",
        "PATCH",
        lambda w, loc: f"/api/v1/clinicians/{w.clinician.id}",
        200,
        allowed=lambda r, o: r in ("admin", "manager"),
        data=lambda w, loc: {"title": "RN"},
        api=True,
    ),
    Endpoint(
        "api status",
        "POST",
        lambda w, loc: f"/api/v1/appointments/{w.appts[loc].id}/status",
        200,
        data=lambda w, loc: {"status": "checked_in"},
        api=True,
    ),
    Endpoint(
        "api escort ready",
        "POST",
        lambda w, loc: f"/api/v1/appointments/{w.here[loc].id}/ready",
        200,
        api=True,
    ),
    Endpoint(
        "api patient search",
        "GET",
        lambda w, loc: "/api/v1/patients?q=patient",
        200,
        allowed=lambda r, o: True,
        api=True,
    ),
    Endpoint(
        "api patient",
        "GET",
        lambda w, loc: f"/api/v1/patients/{w.appts[loc].patient_id}",
        200,
        denied=_not_found_elsewhere,
        api=True,
    ),
    Endpoint(
        "api patient edit",
        "PATCH",
        lambda w, loc: f"/api/v1/patients/{w.appts[loc].patient_id}",
        200,
        data=lambda w, loc: {"notes": "prefers mornings"},
        denied=_not_found_elsewhere,
        api=True,
    ),
    Endpoint(
        "api clearance",
        "POST",
        lambda w, loc: f"/api/v1/patients/{w.appts[loc].patient_id}/clearances",
        201,
        allowed=lambda r, o: r == "admin" or (r in ("manager", "prescriber") and o),
        data=lambda w, loc: {"services": ["infusion"], "until": "2027-06-30"},
        denied=_not_found_elsewhere,
        api=True,
    ),
    Endpoint(
        "api course",
        "GET",
        lambda w, loc: f"/api/v1/courses/{w.courses[loc].id}",
        200,
        api=True,
    ),
    Endpoint(
        "api course review",
        "POST",
        lambda w, loc: f"/api/v1/courses/{w.courses[loc].id}/review",
        200,
        allowed=lambda r, o: r == "admin" or (r in ("manager", "prescriber") and o),
        data=lambda w, loc: {"decision": "continue"},
        api=True,
    ),
    Endpoint(
        "api waitlist",
        "GET",
        lambda w, loc: f"/api/v1/locations/{loc}/waitlist",
        200,
        api=True,
    ),
    Endpoint(
        "api waitlist offer by hand",
        "POST",
        lambda w, loc: f"/api/v1/locations/{loc}/waitlist/{w.entries[loc].id}/offers",
        201,
        data=lambda w, loc: {"start": at(DAY, 13, tz=LA if loc == "sf" else NY).isoformat()},
        api=True,
    ),
]


def _call(client: Any, ep: Endpoint, w: World, loc: str, headers: dict[str, str]) -> Any:
    path = ep.path(w, loc)
    data = ep.data(w, loc) if ep.data else None
    if ep.api:
        return client.open(path, method=ep.method, json=data, headers=headers)
    return client.open(path, method=ep.method, data=data, headers=headers)


# Reads change nothing, so one world serves every role (each with a client of its own); each
# write gets a fresh world per role. Building a world is most of a case's cost.
READS = [ep for ep in ENDPOINTS if ep.method == "GET"]
WRITES = [ep for ep in ENDPOINTS if ep.method != "GET"]


def _check_role(client: Any, world: World, role: str, ep: Endpoint) -> None:
    user = world.clinic.users[role]
    headers = {}
    if ep.api:
        headers = {"Authorization": f"Bearer {world.clinic.tokens[role]}"}
    else:
        assert sign_in(client, user.email).status_code == 302
    for loc, own in (("sf", True), ("ny", False)):
        r = _call(client, ep, world, loc, headers)
        expected = ep.ok if ep.allowed(role, own) else ep.denied(role, own)
        assert r.status_code == expected, (role, loc, ep.name, r.get_data(as_text=True)[:300])
        if role != "admin":
            body = r.get_data(as_text=True)
            for name in OTHER_NAMES:
                assert name not in body, (role, loc, ep.name, name)


@pytest.mark.parametrize("ep", READS, ids=lambda ep: ep.name)
def test_every_role_reads_at_own_and_other_location(app, world, ep):
    for role in ROLES:
        _check_role(app.test_client(), world, role, ep)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("ep", WRITES, ids=lambda ep: ep.name)
def test_role_writes_at_own_and_other_location(client, world, role, ep):
    _check_role(client, world, role, ep)


def test_without_credentials_pages_go_to_sign_in_and_api_says_401(client, world):
    for ep in ENDPOINTS:  # refused before anything runs, so one world serves them all
        r = _call(client, ep, world, "sf", {})
        if ep.api:
            assert r.status_code == 401, ep.name
            r = _call(client, ep, world, "sf", {"Authorization": "Bearer cs_not-a-token"})
            assert r.status_code == 401, ep.name
        else:
            assert r.status_code == 302, ep.name
            assert "/staff/sign-in" in r.headers["Location"], ep.name


@pytest.mark.parametrize("role", ROLES)
def test_tokens_of_a_deactivated_user_stop_working(client, session, world, role):
    token = world.clinic.tokens[role]
    headers = {"Authorization": f"Bearer {token}"}
    assert (
        client.get(f"/api/v1/locations/sf/calendar?date={DAY}", headers=headers).status_code == 200
    )
    world.clinic.users[role].active = False
    session.commit()
    assert (
        client.get(f"/api/v1/locations/sf/calendar?date={DAY}", headers=headers).status_code == 401
    )


def test_unknown_location_looks_like_a_forbidden_one(client, world):
    sign_in(client, world.clinic.users["nurse"].email)
    unknown = client.get("/staff/nowhere/calendar")
    other = client.get("/staff/ny/calendar")
    assert unknown.status_code == other.status_code == 403
    # The signed CSRF token carries a timestamp: two requests a second apart differ only there.
    token = re.compile(rb'name="csrf_token" value="[^"]+"')
    assert token.sub(b"", unknown.get_data()) == token.sub(b"", other.get_data())


def test_deactivated_user_cannot_sign_in(client, session, world):
    world.clinic.users["nurse"].active = False
    session.commit()
    assert sign_in(client, world.clinic.users["nurse"].email).status_code == 401
