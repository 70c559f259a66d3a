"""The rota and the floor as page data: a location's week of shifts (clinicians x days), who is
on shift on a day and the nurse load per hour against capacity, and the visits a refused change
names. Read-only; the rules themselves live in services/staffing.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from scheduler.models import Appointment, ClinicianRole, Location
from scheduler.services import calendar_view, staffing

UTC = dt.UTC
ROLE_ORDER: dict[str, int] = {ClinicianRole.PRESCRIBER: 0, ClinicianRole.NURSE: 1}


def span(start: dt.datetime, end: dt.datetime, tz: ZoneInfo) -> str:
    """ "08:00–18:00" in local time; "22:00–06:00 (+1)" when it ends on a later local day."""
    s, e = start.astimezone(tz), end.astimezone(tz)
    days = (e.date() - s.date()).days
    if days == 1 and e.time() == dt.time(0):
        return f"{s:%H:%M}–24:00"
    suffix = f" (+{days})" if days else ""
    return f"{s:%H:%M}–{e:%H:%M}{suffix}"


@dataclass(frozen=True)
class ShiftCell:
    id: str
    label: str  # local "08:00–18:00"
    weekly: bool  # a weekly pattern's occurrence (else a one-off: extra shift or cover)


@dataclass
class RotaRow:
    clinician_id: int
    name: str
    role: str
    days: list[list[ShiftCell]]  # 7 lists, Monday first


@dataclass
class RotaWeek:
    monday: dt.date
    days: list[dt.date]
    rows: list[RotaRow]

    @property
    def prev_week(self) -> dt.date:
        return self.monday - dt.timedelta(days=7)

    @property
    def next_week(self) -> dt.date:
        return self.monday + dt.timedelta(days=7)


def rota_week(session: Session, location: Location, day: dt.date) -> RotaWeek:
    """The shifts of the week (Monday to Sunday) around `day`, one row per clinician on it;
    a shift sits on the local day it starts."""
    tz = ZoneInfo(location.timezone)
    monday = calendar_view.week_start(day)
    days = [monday + dt.timedelta(days=i) for i in range(7)]
    rows: dict[int, RotaRow] = {}
    for shift in staffing.location_shifts(session, location, days[0], days[-1]):
        index = (shift.start.astimezone(tz).date() - monday).days
        if not 0 <= index < 7:
            continue
        row = rows.setdefault(
            shift.clinician_id,
            RotaRow(shift.clinician_id, shift.name, shift.role, [[] for _ in days]),
        )
        row.days[index].append(
            ShiftCell(shift.id, span(shift.start, shift.end, tz), shift.id.startswith("p"))
        )
    ordered = sorted(
        rows.values(), key=lambda r: (ROLE_ORDER.get(r.role, 9), r.name, r.clinician_id)
    )
    return RotaWeek(monday, days, ordered)


# --- the day's floor ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnShift:
    name: str
    role: str
    label: str


@dataclass(frozen=True)
class LoadHour:
    """One local hour: the most infusions in progress at any instant of it, and the nurse
    capacity at the tightest instant. `state` is "ok", "full" (at capacity) or "over"."""

    label: str
    patients: int
    capacity: int
    state: str

    @property
    def percent(self) -> int:
        """Share of capacity, rounded to 5 and capped at 100 (a class of the grid stylesheet)."""
        if self.capacity <= 0:
            return 100 if self.patients else 0
        return min(100, int(round(self.patients * 100 / self.capacity / 5) * 5))


@dataclass
class DayFloor:
    rules: bool
    patients_per_nurse: int
    on_shift: list[OnShift] = field(default_factory=list)
    hours: list[LoadHour] = field(default_factory=list)

    @property
    def busiest(self) -> LoadHour | None:
        return max(self.hours, key=lambda h: (h.state != "ok", h.patients), default=None)


def hourly_load(
    points: Sequence[tuple[dt.datetime, int, int]], hours: Sequence[tuple[dt.datetime, str]]
) -> list[LoadHour]:
    """Per hour [start, start + 1h): `points` are (instant, patients, capacity) change points
    (each holding until the next), as `staffing.nurse_load` gives them."""
    out: list[LoadHour] = []
    for start, label in hours:
        end = start + dt.timedelta(hours=1)
        held = [p for p in points if p[0] <= start][-1:]
        inside = [p for p in points if start < p[0] < end]
        values = [(p, c) for _, p, c in held + inside] or [(0, 0)]
        patients = max(p for p, _ in values)
        busy = [c for p, c in values if p > 0]
        capacity = min(busy) if busy else min(c for _, c in values)
        if any(p > c for p, c in values):
            state = "over"
        elif any(p == c and p > 0 for p, c in values):
            state = "full"
        else:
            state = "ok"
        out.append(LoadHour(label, patients, capacity, state))
    return out


def day_floor(session: Session, location: Location, day: dt.date) -> DayFloor:
    """Who is on shift on the local `day`, and nurse load per opening (or shift) hour."""
    tz = ZoneInfo(location.timezone)
    start, end = calendar_view.local_day_bounds(day, tz)
    shifts = staffing.shift_intervals(session, location, start, end)
    floor = DayFloor(bool(location.staffing_rules), location.patients_per_nurse)
    floor.on_shift = [OnShift(s.name, s.role, span(s.start, s.end, tz)) for s in shifts]
    first, last = calendar_view._hours_for(location, [day])
    for s in shifts:
        first = min(first, max(s.start, start).astimezone(tz).hour)
        if s.end >= end:
            last = 24
        else:
            local_end = s.end.astimezone(tz)
            last = max(last, local_end.hour + (1 if local_end.minute else 0))
    hours: list[tuple[dt.datetime, str]] = []
    for hour in range(first, last):
        instant = dt.datetime.combine(day, dt.time(hour), tzinfo=tz).astimezone(UTC)
        if not hours or instant > hours[-1][0]:  # the skipped spring-forward hour
            hours.append((instant, f"{hour:02d}:00"))
    points = staffing.nurse_load(session, location, start, end)
    floor.hours = hourly_load(points, hours)
    return floor


# --- refused changes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    id: int
    when: str  # local "Tue 01 Dec 09:00–09:40"
    patient: str
    service: str


def visits(
    session: Session, ids: Sequence[int] | None, *, location_id: int | Collection[int]
) -> list[Visit]:
    """The visits a refusal (`shift_in_use`, `staffing_in_use`, `clinician_in_use`) lists, as the
    calendar names them: those at `location_id` only (the page's own, or the locations the user
    may see), so no refusal shows another location's patients."""
    if not ids:
        return []
    places = [location_id] if isinstance(location_id, int) else list(location_id)
    query = (
        select(Appointment)
        .options(
            selectinload(Appointment.patient),
            selectinload(Appointment.service),
            selectinload(Appointment.location),
        )
        .where(Appointment.id.in_(list(ids)), Appointment.location_id.in_(places))
        .order_by(Appointment.start_at)
    )
    rows = session.scalars(query)
    out = []
    for a in rows:
        tz = ZoneInfo(a.location.timezone)
        when = f"{a.start_at.astimezone(tz):%a %d %b} {span(a.start_at, a.end_at, tz)}"
        out.append(Visit(a.id, when, a.patient.name, a.service.name))
    return out
