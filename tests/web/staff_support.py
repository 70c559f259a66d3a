"""Helpers for the staff portal tests: a clinic, signed-in clients, a busy demo day."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from scheduler.models import Location, Service, StaffUser
from scheduler.services import booking
from scheduler.services.clock import local_to_utc
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service, make_staff

PASSWORD = "correct horse battery"
LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
# Tuesday 1 Dec 2026, the day after the suite's fixed "now" (Mon 30 Nov 08:00 in LA).
DAY = dt.date(2026, 12, 1)


@dataclass
class Clinic:
    sf: Location
    ny: Location
    infusion: Service
    consult: Service
    users: dict[str, StaffUser]
    tokens: dict[str, str]


def make_clinic(session: Session) -> Clinic:
    """Two locations (LA and NY zones), an infusion and a consultation, one user per role at SF."""
    sf = make_location(
        session,
        slug="sf",
        name="San Francisco Mission",
        chairs=4,
        rooms=1,
        hours=((dt.time(8), dt.time(18)),),
    )
    ny = make_location(
        session,
        slug="ny",
        name="New York Flatiron",
        timezone="America/New_York",
        chairs=3,
        rooms=1,
        hours=((dt.time(8), dt.time(18)),),
    )
    infusion = make_service(
        session, [sf, ny], slug="infusion", name="Infusion (40 minutes)", notice_minutes=120
    )
    consult = make_service(
        session,
        [sf, ny],
        slug="consult",
        kind="consultation",
        resource_kind="room",
        duration=60,
        prep=0,
        recovery=0,
        step=30,
        name="Initial consultation",
    )
    users: dict[str, StaffUser] = {}
    tokens: dict[str, str] = {}
    for role in ("admin", "manager", "front_desk", "nurse", "prescriber"):
        user, token = make_staff(
            session,
            role=role,
            locations=() if role == "admin" else (sf,),
            email=f"{role}@clinic.example",
            password=PASSWORD,
        )
        user.name = f"{role.replace('_', ' ').title()} User"
        users[role], tokens[role] = user, token
    session.flush()
    return Clinic(sf, ny, infusion, consult, users, tokens)


def at(day: dt.date, hh: int, mm: int = 0, tz: ZoneInfo = LA) -> dt.datetime:
    return local_to_utc(day, dt.time(hh, mm), tz)


def book(
    session: Session,
    location: Location,
    service: Service,
    start: dt.datetime,
    now: dt.datetime,
    n: int = 1,
    name: str | None = None,
    resource_id: int | None = None,
) -> Any:
    return booking.book(
        session,
        booking.BookingRequest(
            location=location.slug,
            service=service.slug,
            start=start,
            patient=PatientDetails(
                name or f"Pat Patient {n}", f"+1415555{n:04d}", f"pat{n}@example.com", True
            ),
            source="staff",
            allow_short_notice=True,
            resource_id=resource_id,
        ),
        now=now,
        settings=ClinicSettings(),
    )


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    page = client.get("/staff/sign-in")
    data = {"email": email, "password": password}
    match = CSRF.search(page.get_data(as_text=True))
    if match:
        data["csrf_token"] = match.group(1)
    return client.post("/staff/sign-in", data=data)


FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Radia",
    "Tim",
    "Margaret",
    "John",
    "Hedy",
    "Claude",
    "Sophie",
    "Linus",
    "Katherine",
    "Dennis",
    "Annie",
    "Niklaus",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Perlman",
    "Berners-Lee",
    "Hamilton",
    "Backus",
    "Lamarr",
    "Shannon",
    "Wilson",
    "Torvalds",
    "Johnson",
    "Ritchie",
    "Easley",
    "Wirth",
]


def busy_day(session: Session, now: dt.datetime) -> tuple[Location, list[Any]]:
    """A busy day at one location: 20 chairs, 2 rooms, 60 infusions and 2 consultations."""
    from scheduler.models import Resource

    loc = make_location(
        session,
        slug="busy",
        name="San Francisco Mission",
        chairs=20,
        rooms=2,
        hours=((dt.time(8), dt.time(18)),),
    )
    infusion = make_service(
        session, [loc], slug="infusion", name="Infusion (40 min)", notice_minutes=120
    )
    long = make_service(
        session,
        [loc],
        slug="long-infusion",
        name="Long infusion (4 h)",
        duration=240,
        prep=15,
        recovery=15,
        step=30,
    )
    consult = make_service(
        session,
        [loc],
        slug="consult",
        name="Consultation",
        kind="consultation",
        resource_kind="room",
        duration=60,
        prep=0,
        recovery=0,
        step=30,
    )
    chairs = [r for r in loc.resources if r.kind == "chair"]
    rooms: list[Resource] = [r for r in loc.resources if r.kind == "room"]
    plan: list[tuple[Service, Resource, int, int]] = []
    for i, chair in enumerate(chairs):
        if i < 5:
            plan += [(long, chair, 8, 30), (infusion, chair, 13, 30), (infusion, chair, 15, 0)]
        else:
            plan += [
                (infusion, chair, 8, 15 + 15 * (i % 3)),
                (infusion, chair, 10, 15 * (i % 4)),
                (infusion, chair, 13, 15 + 30 * (i % 2)),
            ]
    plan += [(consult, rooms[0], 9, 0), (consult, rooms[1], 14, 0)]
    appts = []
    for n, (service, resource, hh, mm) in enumerate(plan, start=1):
        name = f"{FIRST[n % 20]} {LAST[(n * 7) % 20]}"
        appts.append(
            book(
                session, loc, service, at(DAY, hh, mm), now, n=n, name=name, resource_id=resource.id
            )
        )
    booking.create_block(
        session, chairs[19], at(DAY, 15), at(DAY, 17), reason="Pump maintenance", now=now
    )
    session.flush()
    return loc, appts


def play_day_until(session: Session, appts: list[Any], until: dt.datetime) -> None:
    """Statuses as the day would have them at `until`: done, in the chair, two no-shows."""
    no_shows = 0
    for i, appt in enumerate(appts):
        if appt.start_at > until:
            continue
        if appt.end_at <= until and no_shows < 2 and i % 7 == 6:
            booking.set_status(session, appt, "no_show", now=until, settings=ClinicSettings())
            no_shows += 1
            continue
        booking.set_status(session, appt, "checked_in", now=until, settings=ClinicSettings())
        if appt.end_at <= until:
            booking.set_status(session, appt, "completed", now=until, settings=ClinicSettings())
    session.flush()
