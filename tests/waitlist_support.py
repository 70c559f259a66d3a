"""A location whose only free hour on DAY is the one its booked visits hold: cancel them and
the waitlist has exactly one start (10:00 local) to offer. Shared by the waitlist tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from scheduler.models import Appointment, Clearance, Location, Service, WaitlistEntry
from scheduler.services import booking, waitlist
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service

LA = ZoneInfo("America/Los_Angeles")
DAY = dt.date(2026, 12, 2)  # a Wednesday; the tests' clock is Monday 30 Nov, 08:00 in LA
SLUG = "wl"
SETTINGS = ClinicSettings(public_base_url="https://book.chairside.example")


def at(day: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), tzinfo=LA).astimezone(dt.UTC)


def phone(n: int) -> str:
    return f"+1415556{n:04d}"


@dataclass
class World:
    location: Location
    infusion: Service  # 60 minutes, no buffers, on the hour
    visits: list[Appointment] = field(default_factory=list)


def make_world(session: Session, now: dt.datetime, *, chairs: int = 1) -> World:
    """`chairs` chairs, each blocked on DAY but for 10:00-11:00, which a visit holds."""
    location = make_location(session, slug=SLUG, chairs=chairs, rooms=0, name="Mission Clinic")
    infusion = make_service(
        session,
        [location],
        slug="infusion",
        name="Ketamine infusion",
        duration=60,
        prep=0,
        recovery=0,
        step=60,
        notice_minutes=60,
    )
    for resource in location.resources:
        for start, end in ((9, 10), (11, 17)):
            booking.create_block(session, resource, at(DAY, start), at(DAY, end), now=now)
    world = World(location, infusion)
    for i in range(chairs):
        world.visits.append(book(session, now, infusion, at(DAY, 10), 9000 + i))
    return world


def book(
    session: Session, now: dt.datetime, service: Service, start: dt.datetime, n: int
) -> Appointment:
    request = booking.BookingRequest(
        location=SLUG,
        service=service.slug,
        start=start,
        patient=PatientDetails(f"Booked Patient{n}", phone(n), f"b{n}@example.com"),
        override_clearance=True,
    )
    return booking.book(session, request, now=now, settings=SETTINGS)


def join(
    session: Session,
    now: dt.datetime,
    n: int,
    *,
    service: str = "infusion",
    earliest: dt.date = DAY,
    latest: dt.date = DAY,
    times: str = "any",
    dob: dt.date | None = None,
) -> WaitlistEntry:
    request = waitlist.JoinRequest(
        location=SLUG,
        service=service,
        course=None,
        patient=PatientDetails(f"Waiting Person{n}", phone(n), "", True, dob),
        earliest=earliest,
        latest=latest,
        times=times,
    )
    return waitlist.join(session, request, now=now, settings=SETTINGS)


def clear(session: Session, entry: WaitlistEntry, service: Service) -> None:
    session.add(
        Clearance(
            patient_id=entry.patient_id, service_id=service.id, until=DAY + dt.timedelta(days=30)
        )
    )
    session.flush()


def cancel_all(session: Session, world: World, now: dt.datetime) -> None:
    for visit in world.visits:
        booking.cancel(session, visit, now=now, settings=SETTINGS, by_staff=True)
