"""The demo clinic: two locations in different zones, chairs, rooms, services and an admin."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import (
    Clinician,
    CourseTemplate,
    Location,
    OpeningHours,
    Resource,
    Service,
    ShiftPattern,
    StaffRole,
    StaffUser,
)
from scheduler.services import courses
from scheduler.services import staff as staff_service

ADMIN_EMAIL = "admin@chairside.example"

LOCATIONS = [
    {
        "slug": "sf-mission",
        "name": "San Francisco – Mission",
        "timezone": "America/Los_Angeles",
        "address": "2100 Mission St, San Francisco, CA 94110",
        "phone": "+14155550100",
    },
    {
        "slug": "nyc-flatiron",
        "name": "New York – Flatiron",
        "timezone": "America/New_York",
        "address": "28 W 23rd St, New York, NY 10010",
        "phone": "+12125550100",
    },
]

SERVICES = [
    {
        "slug": "initial-consultation",
        "name": "Initial consultation",
        "kind": "consultation",
        "resource_kind": "room",
        "duration_minutes": 60,
        "prep_minutes": 0,
        "recovery_minutes": 0,
        "slot_step_minutes": 30,
        "description": "Meet a clinician to talk through your history and whether treatment fits.",
        "what_to_bring": "Photo ID, insurance card, a list of your medications.",
    },
    {
        "slug": "infusion",
        "name": "Infusion (40 minutes)",
        "kind": "infusion",
        "resource_kind": "chair",
        "duration_minutes": 40,
        "prep_minutes": 10,
        "recovery_minutes": 10,
        "slot_step_minutes": 15,
        "description": "A 40-minute infusion in a private reclining chair, then a short rest.",
        "what_to_bring": "Comfortable clothes. You will need someone to drive you home.",
        # After a consultation and a prescriber's clearance; never two on one day.
        "requires_clearance": True,
        "min_gap_hours": 20,
        # An adult takes the patient home; the usual pre-infusion instructions.
        "escort_required": True,
        "fasting_hours": 4,
        "arrive_early_minutes": 30,
        "no_driving": True,
    },
    {
        "slug": "long-infusion",
        "name": "Long infusion (4 hours)",
        "kind": "infusion",
        "resource_kind": "chair",
        "duration_minutes": 240,
        "prep_minutes": 15,
        "recovery_minutes": 15,
        "slot_step_minutes": 30,
        "description": "A four-hour infusion. Snacks and blankets are provided.",
        "what_to_bring": "Something to read or listen to. You will need someone to drive you home.",
        "requires_clearance": True,
        "min_gap_hours": 20,
        # An adult takes the patient home; the usual pre-infusion instructions.
        "escort_required": True,
        "fasting_hours": 4,
        "arrive_early_minutes": 30,
        "no_driving": True,
    },
]

CHAIRS = 6

# Treatment courses (services/courses.py): a depression induction (six infusions in two to three
# weeks, reviewed after the second) and a CRPS course (five consecutive weekdays of 4-hour
# infusions; a closed weekday moves a session to the next one, within the maximum gap).
COURSES = [
    {
        "slug": "iv-ketamine-induction",
        "name": "IV ketamine induction",
        "service": "infusion",
        "sessions": 6,
        "min_gap_hours": 44,
        "max_gap_hours": 7 * 24,
        "within_days": 21,
        "weekdays": None,
        "review_after": 2,
    },
    {
        "slug": "crps-5-day",
        "name": "CRPS 5-day",
        "service": "long-infusion",
        "sessions": 5,
        "min_gap_hours": 20,
        "max_gap_hours": 96,
        "within_days": 10,
        "weekdays": "consecutive_weekdays",
        "review_after": None,
    },
]


# Per location: one prescriber all day, two nurses at 1:4 (see the locations' rules: one start
# per 10 minutes). At the first location the prescriber leaves at 13:00 on Wednesdays, so no
# infusion is offered on Wednesday afternoons there.
ROTA = (
    (
        ("Maya Chen", "prescriber", "MD"),
        ("Sam Ortiz", "nurse", "RN"),
        ("Priya Nair", "nurse", "RN"),
    ),
    (("Jon Weiss", "prescriber", "NP"), ("Ana Lima", "nurse", "RN"), ("Lee Park", "nurse", "RN")),
)


def _seed_rota(session: Session) -> None:
    """Clinicians and weekly shifts for each demo location, once (a second run adds nothing)."""
    for index, spec in enumerate(LOCATIONS):
        location = session.scalars(select(Location).where(Location.slug == spec["slug"])).one()
        if session.scalars(
            select(ShiftPattern.id).where(ShiftPattern.location_id == location.id)
        ).first():
            continue
        for name, role, title in ROTA[index % len(ROTA)]:
            clinician = Clinician(name=name, role=role, title=title)
            session.add(clinician)
            session.flush()
            for weekday in range(6):
                ends = dt.time(18) if weekday < 5 else dt.time(14)
                if index == 0 and role == "prescriber" and weekday == 2:
                    ends = dt.time(13)  # Wednesday afternoon without a prescriber
                session.add(
                    ShiftPattern(
                        clinician_id=clinician.id,
                        location_id=location.id,
                        weekday=weekday,
                        starts=dt.time(8),
                        ends=ends,
                    )
                )
    session.flush()


@dataclass
class SeedResult:
    created: bool
    admin_email: str
    admin_password: str | None  # None when the admin already existed
    api_token: str | None


def seed_demo(session: Session, hasher: PasswordHasher, now: dt.datetime) -> SeedResult:
    """Create the demo clinic; a second run changes nothing and reports the existing admin."""
    for spec in LOCATIONS:
        location = session.scalars(select(Location).where(Location.slug == spec["slug"])).first()
        if location is None:
            location = Location(
                **spec,
                staffing_rules=True,
                patients_per_nurse=4,
                starts_per_window=1,
                start_window_minutes=10,
            )
            session.add(location)
            for weekday in range(6):  # Monday to Saturday
                closes = dt.time(18) if weekday < 5 else dt.time(14)
                location.hours.append(
                    OpeningHours(weekday=weekday, opens=dt.time(8), closes=dt.time(12, 30))
                )
                location.hours.append(
                    OpeningHours(weekday=weekday, opens=dt.time(13), closes=closes)
                )
            for i in range(1, CHAIRS + 1):
                location.resources.append(Resource(kind="chair", name=f"Chair {i}", position=i))
            location.resources.append(Resource(kind="room", name="Consult room", position=100))
    session.flush()
    _seed_rota(session)
    locations = list(session.scalars(select(Location)))
    for service_spec in SERVICES:
        slug = service_spec["slug"]
        service = session.scalars(select(Service).where(Service.slug == slug)).first()
        if service is None:
            service = Service(**service_spec)
            session.add(service)
        for location in locations:
            if (
                location.slug in {x["slug"] for x in LOCATIONS}
                and location not in service.locations
            ):
                service.locations.append(location)
    session.flush()
    for course_spec in COURSES:
        if session.scalars(
            select(CourseTemplate.id).where(CourseTemplate.slug == course_spec["slug"])
        ).first():
            continue
        courses.save_template(session, None, course_spec)
    admin = session.scalars(select(StaffUser).where(StaffUser.email == ADMIN_EMAIL)).first()
    if admin is not None:
        return SeedResult(False, ADMIN_EMAIL, None, None)
    password = secrets.token_urlsafe(12)
    admin = staff_service.create_staff(
        session,
        email=ADMIN_EMAIL,
        name="Demo Admin",
        password=password,
        role=StaffRole.ADMIN,
        hasher=hasher,
    )
    token = staff_service.issue_token(session, admin, now, label="seed-demo")
    return SeedResult(True, ADMIN_EMAIL, password, token)
