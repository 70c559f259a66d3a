"""Test helpers for the rota: clinicians with weekly shifts at a location, rules turned on."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from scheduler.models import Clinician, Location, ShiftPattern


def rota(
    session: Session,
    location: Location,
    *,
    prescribers: int = 1,
    nurses: int = 2,
    hours: tuple[dt.time, dt.time] = (dt.time(7), dt.time(0)),
    weekdays: range = range(7),
    patients_per_nurse: int = 4,
    starts_per_window: int = 3,
    start_window_minutes: int = 30,
    rules: bool = True,
) -> tuple[list[Clinician], list[Clinician]]:
    """Prescribers and nurses on shift every weekday `hours` (default 07:00-24:00)."""
    people: dict[str, list[Clinician]] = {"prescriber": [], "nurse": []}
    for role, count in (("prescriber", prescribers), ("nurse", nurses)):
        for i in range(count):
            clinician = Clinician(name=f"{role.title()} {location.slug} {i + 1}", role=role)
            session.add(clinician)
            session.flush()
            people[role].append(clinician)
            for weekday in weekdays:
                session.add(
                    ShiftPattern(
                        clinician_id=clinician.id,
                        location_id=location.id,
                        weekday=weekday,
                        starts=hours[0],
                        ends=hours[1],
                    )
                )
    location.staffing_rules = rules
    location.patients_per_nurse = patients_per_nurse
    location.starts_per_window = starts_per_window
    location.start_window_minutes = start_window_minutes
    session.flush()
    return people["prescriber"], people["nurse"]
