"""A seeded fortnight of visits, blocks, closures and shifts, and the utilisation counted minute by
minute in Python: the reference the report (SQL and steps) must equal."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import (
    Appointment,
    Clinician,
    Closure,
    Location,
    Patient,
    Resource,
    ResourceBlock,
    Service,
    Shift,
    ShiftPattern,
    ShiftSkip,
    end_of_day,
)
from scheduler.services import booking, staffing
from tests.factories import make_location, make_service

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
_names = itertools.count(1)
STATUSES = ("booked", "checked_in", "completed", "no_show", "cancelled")


@dataclass
class Fortnight:
    location: Location
    first: dt.date
    last: dt.date


def _appt(
    session: Session, loc: Location, res: Resource, svc: Service, start: dt.datetime, status: str
) -> Appointment:
    n = next(_names)
    patient = Patient(
        name=f"Pat {n}", phone="+14155550100", email="p@example.com", match_key=f"pat {n}"
    )
    begin = start - dt.timedelta(minutes=svc.prep_minutes)
    end = start + dt.timedelta(minutes=svc.duration_minutes)
    appt = Appointment(
        location_id=loc.id,
        resource_id=res.id,
        service_id=svc.id,
        patient=patient,
        start_at=start,
        end_at=end,
        occupied_start=begin,
        occupied_end=end + dt.timedelta(minutes=svc.recovery_minutes),
        duration_minutes=svc.duration_minutes,
        prep_minutes=svc.prep_minutes,
        recovery_minutes=svc.recovery_minutes,
        status=status,
        active=status in ("booked", "checked_in", "completed"),
        manage_token=secrets.token_hex(16),
        ics_uid=secrets.token_hex(16),
    )
    if status == "cancelled":
        appt.cancelled_at = start - dt.timedelta(hours=random.choice([1, 5, 23, 25, 72]))
    session.add(appt)
    return appt


def seed_fortnight(session: Session, zone: str, first: dt.date, seed: int = 7) -> Fortnight:
    """Two weeks from `first` at a location in `zone`: open round the clock on Sundays (the DST
    day), split hours otherwise, a closure day, 4 chairs (one deactivated after its visits) and a
    room, infusions of two lengths and consultations, every status, blocks (two overlapping,
    one outside the hours), nurses on a weekly pattern with a day of leave, and one-off shifts."""
    random.seed(seed)
    tz = ZoneInfo(zone)
    last = first + dt.timedelta(days=13)
    loc = make_location(
        session, timezone=zone, chairs=4, rooms=1, hours=((dt.time(8), dt.time(12)),)
    )
    for weekday in range(7):
        from scheduler.models import OpeningHours

        if weekday == 6:
            loc.hours.append(OpeningHours(weekday=6, opens=dt.time(0), closes=dt.time(0)))
        else:
            loc.hours.append(OpeningHours(weekday=weekday, opens=dt.time(13), closes=dt.time(18)))
    loc.patients_per_nurse = 3
    session.add(
        Closure(
            location_id=loc.id,
            first_day=first + dt.timedelta(days=2),
            last_day=first + dt.timedelta(days=2),
        )
    )
    short = make_service(session, [loc], duration=40, prep=10, recovery=15)
    long = make_service(session, [loc], duration=240, prep=15, recovery=30)
    consult = make_service(
        session, [loc], kind="consultation", resource_kind="room", duration=60, prep=0, recovery=0
    )
    chairs = [r for r in loc.resources if r.kind == "chair"]
    room = next(r for r in loc.resources if r.kind == "room")
    day = first - dt.timedelta(days=1)  # visits the day before may run into the range
    while day <= last + dt.timedelta(days=1):
        for res in [*chairs, room]:
            t = dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(UTC)
            t += dt.timedelta(minutes=5 * random.randrange(0, 60))
            day_end = t + dt.timedelta(hours=23)
            while True:
                svc = consult if res is room else random.choice([short, short, long])
                start = t + dt.timedelta(minutes=svc.prep_minutes)
                if start + dt.timedelta(minutes=svc.duration_minutes + 60) > day_end:
                    break
                status = random.choice(STATUSES)
                _appt(session, loc, res, svc, start, status)
                occupied = svc.prep_minutes + svc.duration_minutes + svc.recovery_minutes
                t += dt.timedelta(minutes=occupied + 5 * random.randrange(0, 40))
        day += dt.timedelta(days=1)
    session.flush()
    chairs[3].active = False
    at = lambda d, h, m=0: dt.datetime.combine(  # noqa: E731
        first + dt.timedelta(days=d), dt.time(h, m), tzinfo=tz
    ).astimezone(UTC)
    for resource, s, e in (
        (chairs[0], at(1, 10), at(1, 15)),
        (chairs[0], at(1, 14), at(1, 16, 30)),  # overlaps the one before
        (chairs[1], at(4, 19), at(4, 21)),  # after hours: costs nothing
        (chairs[2], at(6, 1), at(7, 2)),  # across a Sunday
    ):
        session.add(ResourceBlock(resource_id=resource.id, start_at=s, end_at=e))
    nurses = [Clinician(name=f"Nurse {i}", role="nurse") for i in range(3)]
    prescriber = Clinician(name="Dr P", role="prescriber")
    session.add_all([*nurses, prescriber])
    session.flush()
    for weekday in range(7):
        session.add(
            ShiftPattern(
                clinician_id=nurses[0].id,
                location_id=loc.id,
                weekday=weekday,
                starts=dt.time(7, 30),
                ends=dt.time(16),
            )
        )
        session.add(
            ShiftPattern(
                clinician_id=nurses[1].id,
                location_id=loc.id,
                weekday=weekday,
                starts=dt.time(0) if weekday == 6 else dt.time(12),
                ends=dt.time(0),
            )
        )
        session.add(
            ShiftPattern(
                clinician_id=prescriber.id,
                location_id=loc.id,
                weekday=weekday,
                starts=dt.time(8),
                ends=dt.time(18),
            )
        )
    session.flush()
    pattern = session.scalars(
        select(ShiftPattern).where(ShiftPattern.clinician_id == nurses[0].id)
    ).first()
    assert pattern is not None
    session.add(ShiftSkip(pattern_id=pattern.id, day=first + dt.timedelta(days=pattern.weekday)))
    session.add(
        Shift(
            clinician_id=nurses[2].id, location_id=loc.id, start_at=at(5, 9, 15), end_at=at(5, 20)
        )
    )
    session.add(
        Shift(clinician_id=nurses[2].id, location_id=loc.id, start_at=at(-1, 20), end_at=at(0, 3))
    )
    session.flush()
    return Fortnight(loc, first, last)


def brute_force(session: Session, f: Fortnight, now: dt.datetime) -> dict[str, Any]:
    """The same figures counted minute by minute: cells keyed (weekday, hour), then the counts."""
    loc = f.location
    tz = ZoneInfo(loc.timezone)
    start = dt.datetime.combine(f.first, dt.time(0), tzinfo=tz).astimezone(UTC)
    end = dt.datetime.combine(f.last + dt.timedelta(days=1), dt.time(0), tzinfo=tz).astimezone(UTC)
    n = int((end - start) / MINUTE)
    minutes = [start + i * MINUTE for i in range(n)]
    local = [m.astimezone(tz) for m in minutes]

    closed: set[dt.date] = set()
    for c in session.scalars(select(Closure).where(Closure.location_id == loc.id)):
        d = c.first_day
        while d <= c.last_day:
            closed.add(d)
            d += dt.timedelta(days=1)
    hours: dict[int, list[tuple[dt.time, dt.time]]] = {}
    for h in loc.hours:
        hours.setdefault(h.weekday, []).append((h.opens, h.closes))

    def is_open(t: dt.datetime) -> bool:
        day = t.date()
        if day in closed:
            return False
        wall = t.replace(tzinfo=None)
        return any(
            dt.datetime.combine(day, o) <= wall < end_of_day(day, c)
            for o, c in hours.get(day.weekday(), [])
        )

    def covering(intervals: list[tuple[dt.datetime, dt.datetime]]) -> list[int]:
        counts = [0] * n
        for s, e in intervals:
            m = max(s, start)
            while m < min(e, end):
                counts[int((m - start) / MINUTE)] += 1
                m += MINUTE
        return counts

    chairs = [
        r
        for r in session.scalars(select(Resource).where(Resource.location_id == loc.id))
        if r.kind == "chair"
    ]
    blocks = {
        r.id: [
            (b.start_at, b.end_at)
            for b in session.scalars(select(ResourceBlock).where(ResourceBlock.resource_id == r.id))
        ]
        for r in chairs
    }
    appts = list(session.scalars(select(Appointment).where(Appointment.location_id == loc.id)))
    kinds = {r.id: r.kind for r in chairs}
    open_flags = [is_open(t) for t in local]
    open_count = [0] * n
    for chair in chairs:
        if not chair.active:
            continue
        blocked = covering(blocks[chair.id])
        for i in range(n):
            if open_flags[i] and not blocked[i]:
                open_count[i] += 1
    booked = covering(
        [(a.occupied_start, a.occupied_end) for a in appts if a.active and a.resource_id in kinds]
    )
    load = covering(
        [
            (a.occupied_start, a.occupied_end)
            for a in appts
            if a.active and a.service.kind != "consultation"
        ]
    )
    shifts = staffing.shift_intervals(session, loc, start, end)
    on_shift = covering([(s.start, s.end) for s in shifts if s.role == "nurse"])
    cells: dict[tuple[int, int], Counter[str]] = {
        (d, h): Counter() for d in range(7) for h in range(24)
    }
    for i, t in enumerate(local):
        c = cells[(t.weekday(), t.hour)]
        c["open_chair_minutes"] += open_count[i]
        c["booked_chair_minutes"] += booked[i]
        c["nurse_capacity_minutes"] += on_shift[i] * loc.patients_per_nurse
        c["nurse_load_minutes"] += load[i]
    in_range = [a for a in appts if start <= a.start_at < end]
    due = [a for a in in_range if a.status != "cancelled" and a.start_at < now]
    late = [
        a
        for a in in_range
        if a.status == "cancelled"
        and a.cancelled_at is not None
        and booking.inside_change_window(a.service, a.start_at, a.cancelled_at)
    ]
    return {
        "cells": {k: dict(v) for k, v in cells.items()},
        "due": len(due),
        "no_shows": len([a for a in due if a.status == "no_show"]),
        "booked": len(in_range),
        "late_cancels": len(late),
    }
