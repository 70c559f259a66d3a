"""Factories for test data: make_* functions that add rows and flush."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from itertools import count

from sqlalchemy.orm import Session

from scheduler.models import Location, OpeningHours, Resource, Service, StaffUser
from scheduler.services import staff as staff_service

_seq = count(1)
HASHER = staff_service.password_hasher({"time_cost": 1, "memory_cost": 1024, "parallelism": 1})


def make_location(
    session: Session,
    *,
    slug: str | None = None,
    timezone: str = "America/Los_Angeles",
    chairs: int = 4,
    rooms: int = 1,
    hours: Sequence[tuple[dt.time, dt.time]] = ((dt.time(9), dt.time(17)),),
    weekdays: Sequence[int] = range(7),
    name: str | None = None,
    phone: str = "+14155550100",
) -> Location:
    n = next(_seq)
    location = Location(
        slug=slug or f"loc-{n}",
        name=name or f"Location {n}",
        timezone=timezone,
        address=f"{n} Main St",
        phone=phone,
    )
    for weekday in weekdays:
        for opens, closes in hours:
            location.hours.append(OpeningHours(weekday=weekday, opens=opens, closes=closes))
    for i in range(1, chairs + 1):
        location.resources.append(Resource(kind="chair", name=f"Chair {i}", position=i))
    for i in range(1, rooms + 1):
        location.resources.append(Resource(kind="room", name=f"Room {i}", position=100 + i))
    session.add(location)
    session.flush()
    return location


def make_service(
    session: Session,
    locations: Sequence[Location],
    *,
    slug: str | None = None,
    kind: str = "infusion",
    resource_kind: str = "chair",
    duration: int = 40,
    prep: int = 10,
    recovery: int = 10,
    step: int = 15,
    notice_minutes: int = 60,
    horizon_days: int = 60,
    late_cancel_hours: int = 24,
    name: str | None = None,
    requires_clearance: bool = False,
    min_gap_hours: int = 0,
) -> Service:
    n = next(_seq)
    service = Service(
        slug=slug or f"svc-{n}",
        name=name or f"Service {n}",
        kind=kind,
        resource_kind=resource_kind,
        duration_minutes=duration,
        prep_minutes=prep,
        recovery_minutes=recovery,
        slot_step_minutes=step,
        min_notice_minutes=notice_minutes,
        horizon_days=horizon_days,
        late_cancel_hours=late_cancel_hours,
        requires_clearance=requires_clearance,
        min_gap_hours=min_gap_hours,
        locations=list(locations),
    )
    session.add(service)
    session.flush()
    return service


def make_staff(
    session: Session,
    *,
    role: str = "admin",
    locations: Sequence[Location] = (),
    email: str | None = None,
    password: str = "correct horse battery",
    now: dt.datetime | None = None,
) -> tuple[StaffUser, str]:
    """A staff user and a fresh API token for them."""
    user = staff_service.create_staff(
        session,
        email=email or f"staff{next(_seq)}@clinic.example",
        name="Staff Member",
        password=password,
        role=role,
        location_slugs=[x.slug for x in locations],
        hasher=HASHER,
    )
    token = staff_service.issue_token(session, user, now or dt.datetime.now(dt.UTC))
    return user, token


def patient_json(n: int = 1) -> dict[str, str]:
    return {
        "name": f"Pat Patient {n}",
        "phone": f"+1415555{n:04d}",
        "email": f"pat{n}@example.com",
    }
