"""Clinicians, the rota (weekly patterns and their changes -> concrete shifts) and staffing rules.

Shifts of a date range are each location's patterns expanded in its zone (08:00-18:00 local on
both sides of a DST change), minus skipped occurrences, plus one-off shifts. A pattern's
occurrence has the id "p{pattern}:{YYYY-MM-DD}", a one-off "s{id}".

Locks. Capacity (nurses, starts per window, prescribers) is a count, not an exclusion, so every
writer of it takes a lock per location and local day before it reads, for every local day its
check reads (`lock_days`, in date order): a booking (through `availability.slot_at(lock=True)`)
the days of its occupied interval widened by the start window either side, so a window or a
visit across midnight is serialized with both days; a move those of its old time too; a shift
removal the days of the shift. A change of the rules takes `lock_location`, which waits for
every day's writers (they hold the location's lock shared).
On PostgreSQL these are transaction-scoped advisory locks; SQLite's write lock (BEGIN IMMEDIATE)
already serializes every writer. One clinician's shifts are written under that clinician's row
lock, and PostgreSQL's no_clinician_overlap constraint backs up the one-off rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.models import (
    Appointment,
    Clinician,
    ClinicianRole,
    FreedReason,
    Location,
    Service,
    ServiceKind,
    Shift,
    ShiftPattern,
    ShiftSkip,
    StaffUser,
    end_of_day,
)
from scheduler.services import audit, availability
from scheduler.services.clock import RANGE_MESSAGE, in_supported_range
from scheduler.services.errors import (
    ClinicianBusy,
    ClinicianInUse,
    Conflict,
    InvalidInput,
    NotFound,
    ShiftInUse,
    StaffingInUse,
)

UTC = dt.UTC
MAX_SHIFT = dt.timedelta(hours=24)
# How far ahead a new weekly pattern is checked against the clinician's other shifts.
PATTERN_CHECK_DAYS = 371


@dataclass(frozen=True)
class ShiftInterval:
    """One concrete shift: a pattern's occurrence or a one-off."""

    id: str
    clinician_id: int
    name: str
    role: str
    location_id: int
    start: dt.datetime  # UTC
    end: dt.datetime


# --- locks ----------------------------------------------------------------------------------------


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_day(session: Session, location_id: int, day: dt.date) -> None:
    """Serialize the capacity writers of one location's local day (PostgreSQL; SQLite holds its
    write lock already). Shares the location's lock, so `lock_location` waits for them."""
    if _is_postgresql(session):
        session.execute(
            text(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended(:loc, 0)),"
                " pg_advisory_xact_lock(hashtextextended(:day, 0))"
            ),
            {"loc": f"staffing:{location_id}", "day": f"staffing:{location_id}:{day.isoformat()}"},
        )


def lock_days(
    session: Session, location: Location, *intervals: tuple[dt.datetime, dt.datetime]
) -> None:
    """`lock_day` for every local day that any of `intervals` ([start, end)) touches, in date
    order, so two writers never wait for each other's days crosswise. A capacity check looks
    past the visit itself (the start window either side), and a move frees one time and takes
    another: every day such a check reads is locked, not only the start's."""
    if not _is_postgresql(session):
        return
    tz = ZoneInfo(location.timezone)
    days: set[dt.date] = set()
    for start, end in intervals:
        last = max(start, end - dt.timedelta(microseconds=1))
        days.update(_days(start.astimezone(tz).date(), last.astimezone(tz).date()))
    for day in sorted(days):
        lock_day(session, location.id, day)


def checked_interval(
    location: Location, occupied_start: dt.datetime, occupied_end: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """What a capacity check of a visit occupying [occupied_start, occupied_end) reads: that
    interval and the start window either side."""
    window = dt.timedelta(minutes=location.start_window_minutes)
    return occupied_start - window, occupied_end + window


def lock_location(session: Session, location_id: int) -> None:
    """Wait for every booking and shift change at the location in flight, and hold them off."""
    if _is_postgresql(session):
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:loc, 0))"),
            {"loc": f"staffing:{location_id}"},
        )


def _lock_clinician(session: Session, clinician_id: int) -> Clinician:
    query = select(Clinician).where(Clinician.id == clinician_id)
    if _is_postgresql(session):
        query = query.with_for_update()
    clinician = session.scalars(query).first()
    if clinician is None:
        raise NotFound("No such clinician.", {"clinician": "unknown clinician"})
    return clinician


# --- clinicians -----------------------------------------------------------------------------------


def list_clinicians(session: Session, *, active_only: bool = False) -> list[Clinician]:
    query = select(Clinician).order_by(Clinician.role, Clinician.name, Clinician.id)
    if active_only:
        query = query.where(Clinician.active.is_(True))
    return list(session.scalars(query))


def get_clinician(session: Session, clinician_id: int) -> Clinician:
    clinician = session.get(Clinician, clinician_id)
    if clinician is None:
        raise NotFound("No such clinician.", {"clinician": "unknown clinician"})
    return clinician


def _clinician_fields(
    session: Session,
    fields: dict[str, str],
    *,
    name: str | None,
    title: str | None,
    staff_user_id: int | None,
    clinician_id: int | None = None,
) -> tuple[str | None, str | None]:
    """Check a clinician's name, title and staff user (None: not given); problems go in
    `fields`. The staff user must exist and not be linked to another clinician."""
    if name is not None:
        name = " ".join(name.split())
        if not name:
            fields["name"] = "required"
        elif len(name) > 200:
            fields["name"] = "at most 200 characters"
    if title is not None:
        title = " ".join(title.split())
        if len(title) > 100:
            fields["title"] = "at most 100 characters"
    if staff_user_id is not None:
        if session.get(StaffUser, staff_user_id) is None:
            fields["staff_user"] = "unknown staff user"
        else:
            linked = session.scalars(
                select(Clinician.id).where(Clinician.staff_user_id == staff_user_id)
            ).first()
            if linked is not None and linked != clinician_id:
                fields["staff_user"] = "already linked to another clinician"
    return name, title


def _linked_elsewhere() -> InvalidInput:
    # The unique staff_user_id: a concurrent link of the same staff user won.
    return InvalidInput(
        "Some fields need correcting.", {"staff_user": "already linked to another clinician"}
    )


def create_clinician(
    session: Session,
    *,
    name: str,
    role: str,
    title: str = "",
    staff_user_id: int | None = None,
) -> Clinician:
    fields: dict[str, str] = {}
    clean_name, clean_title = _clinician_fields(
        session, fields, name=name, title=title, staff_user_id=staff_user_id
    )
    if role not in {r.value for r in ClinicianRole}:
        fields["role"] = "prescriber or nurse"
    if fields:
        raise InvalidInput("Some fields need correcting.", fields)
    clinician = Clinician(
        name=clean_name, role=role, title=clean_title, active=True, staff_user_id=staff_user_id
    )
    try:
        with session.begin_nested():
            session.add(clinician)
            session.flush()
    except IntegrityError as exc:
        raise _linked_elsewhere() from exc
    return clinician


@dataclass(frozen=True)
class ClinicianChange:
    """What an edit changes: None leaves a field as it is. The staff user is changed only with
    `link` (then `staff_user_id` None unlinks). The role never changes (see `update_clinician`)."""

    name: str | None = None
    title: str | None = None
    active: bool | None = None
    link: bool = False
    staff_user_id: int | None = None


@dataclass(frozen=True)
class ClinicianEdit:
    """What an edit changed ({field: new value}, for the audit log), and a deactivated nurse's
    visits handed on (per location; audit them with `record_handed_on`)."""

    changed: dict[str, Any]
    handed_on: tuple[tuple[Location, Removed], ...] = ()


def update_clinician(
    session: Session, clinician: Clinician, change: ClinicianChange, *, now: dt.datetime
) -> ClinicianEdit:
    """Edit a clinician.

    The role is fixed: shifts, booked consultations and assigned infusions were checked against
    it, so a prescriber who becomes a nurse would silently leave visits without the cover they
    were booked with. Deactivating is refused with `clinician_in_use` (listing the visits) while
    visits still to come need the clinician; once inactive, their shifts stop counting
    everywhere and their future infusions are given another nurse on shift (or none)."""
    fields: dict[str, str] = {}
    name, title = _clinician_fields(
        session,
        fields,
        name=change.name,
        title=change.title,
        staff_user_id=change.staff_user_id if change.link else None,
        clinician_id=clinician.id,
    )
    if fields:
        raise InvalidInput("Some fields need correcting.", fields)
    changed: dict[str, Any] = {}
    if name is not None and name != clinician.name:
        changed["name"] = name
    if title is not None and title != clinician.title:
        changed["title"] = title
    if change.link and change.staff_user_id != clinician.staff_user_id:
        changed["staff_user"] = change.staff_user_id
    if change.active is not None and change.active != clinician.active:
        changed["active"] = change.active
    if not changed:
        return ClinicianEdit(changed)
    if changed.get("active") is False:
        _lock_clinician(session, clinician.id)
        broken = clinician_in_use(session, clinician, now=now)
        if broken:
            raise ClinicianInUse(
                f"Booked visits need {clinician.name}: move or cancel them first.",
                {"active": "booked visits need this clinician"},
                appointments=broken,
            )
    clinician.name = changed.get("name", clinician.name)
    clinician.title = changed.get("title", clinician.title)
    if "staff_user" in changed:
        clinician.staff_user_id = changed["staff_user"]
    if "active" in changed:
        clinician.active = changed["active"]
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise _linked_elsewhere() from exc
    handed = _hand_on(session, clinician, now=now) if changed.get("active") is False else ()
    if changed.get("active") is True:
        _back_on_shift(session, clinician, now=now)
    return ClinicianEdit(changed, handed)


def _back_on_shift(session: Session, clinician: Clinician, *, now: dt.datetime) -> None:
    """A reactivated clinician's shifts count again: under the staffing rules the waitlist
    looks at each shift still to come, as when the shift was added (`add_shift`, `add_pattern`)."""
    from scheduler.services import waitlist  # (waitlist -> booking -> staffing)

    shifts = session.scalars(
        select(Shift)
        .where(Shift.clinician_id == clinician.id, Shift.end_at > now)
        .order_by(Shift.start_at, Shift.id)
    )
    for shift in shifts:
        if shift.location.staffing_rules:
            waitlist.queue_freed(
                session,
                shift.location_id,
                max(shift.start_at, now),
                shift.end_at,
                reason=FreedReason.SHIFT,
                now=now,
            )
    patterns = session.scalars(
        select(ShiftPattern)
        .where(ShiftPattern.clinician_id == clinician.id)
        .order_by(ShiftPattern.id)
    )
    for pattern in patterns:
        location = session.get(Location, pattern.location_id)
        if location is not None and location.staffing_rules:
            waitlist.pattern_added(session, location, pattern, now=now)


def linkable_staff(session: Session) -> list[StaffUser]:
    """The staff users a clinician may be linked to: active ones, by name."""
    return list(
        session.scalars(
            select(StaffUser).where(StaffUser.active.is_(True)).order_by(StaffUser.name)
        )
    )


def _clinician_locations(session: Session, clinician: Clinician) -> list[Location]:
    """The locations whose capacity the clinician counts in, or whose visits name them."""
    ids = (
        select(ShiftPattern.location_id)
        .where(ShiftPattern.clinician_id == clinician.id)
        .union(
            select(Shift.location_id).where(Shift.clinician_id == clinician.id),
            select(Appointment.location_id).where(Appointment.clinician_id == clinician.id),
            select(Appointment.location_id).where(Appointment.nurse_id == clinician.id),
        )
    )
    return list(session.scalars(select(Location).where(Location.id.in_(ids)).order_by(Location.id)))


def clinician_in_use(session: Session, clinician: Clinician, *, now: dt.datetime) -> list[int]:
    """Ids of the visits still to come that would break without the clinician: those their
    shifts give a prescriber or nurse capacity to (under each location's rules, as a shift's
    removal is checked), and consultations booked with them (whatever the rules). Takes each
    location's lock (as a change of the rules does), in id order, so no booking slips past."""
    locations = _clinician_locations(session, clinician)
    for location in locations:
        lock_location(session, location.id)
    broken: set[int] = set()
    for location in locations:
        broken.update(
            stranded(session, location, now, None, now=now, without_clinician=clinician.id)
        )
    broken.update(
        session.scalars(
            select(Appointment.id).where(
                Appointment.clinician_id == clinician.id,
                Appointment.active.is_(True),
                Appointment.occupied_end > now,
            )
        )
    )
    return sorted(broken)


# Where a deactivated nurse's visits are handed on from: every one still to start.
_FOREVER = dt.datetime(9999, 1, 1, tzinfo=UTC)


def _hand_on(
    session: Session, clinician: Clinician, *, now: dt.datetime
) -> tuple[tuple[Location, Removed], ...]:
    """A deactivated nurse's visits still to start, at every location, each given the nurse
    `pick_nurse` balances it to (or none): `reassign_nurses`, as for a removed shift, with all
    of their time removed. The caller holds the locations' locks (`clinician_in_use`)."""
    if clinician.role != ClinicianRole.NURSE:
        return ()
    handed = []
    for location in _clinician_locations(session, clinician):
        gone = ShiftInterval(
            f"c{clinician.id}",
            clinician.id,
            clinician.name,
            clinician.role,
            location.id,
            now,
            _FOREVER,
        )
        removal = Removed(
            gone,
            reassign_nurses(session, location, gone, now=now),
            why=f"{clinician.name} deactivated",
        )
        if removal.nurses:
            handed.append((location, removal))
    return tuple(handed)


def record_handed_on(
    session: Session, edit: ClinicianEdit, *, actor: StaffUser | None, at: dt.datetime
) -> None:
    """Audit the visits a deactivation handed to another nurse (`record_nurse_changes`)."""
    for location, removal in edit.handed_on:
        record_nurse_changes(session, location, [removal], actor=actor, at=at)


def prescribers_at(
    session: Session, location: Location, service: Service, *, now: dt.datetime
) -> list[Clinician]:
    """The prescribers a patient may choose for `service` at `location`: active prescribers with
    a shift there from `now` to the end of the service's booking horizon (none for an infusion:
    a patient does not choose). One whose shifts there are all past, or beyond the horizon, could
    never be booked, so is not listed."""
    if service.kind != ServiceKind.CONSULTATION:
        return []
    horizon = now + dt.timedelta(days=service.horizon_days)
    ids = {
        s.clinician_id
        for s in shift_intervals(session, location, now, horizon)
        if s.role == ClinicianRole.PRESCRIBER
    }
    if not ids:
        return []
    return list(
        session.scalars(
            select(Clinician)
            .where(Clinician.id.in_(sorted(ids)))
            .order_by(Clinician.name, Clinician.id)
        )
    )


# --- expanding the rota ---------------------------------------------------------------------------


def _days(first: dt.date, last: dt.date) -> Iterable[dt.date]:
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


class _Weekly(Protocol):
    """A weekly pattern: the ORM row, or the plain row `shift_intervals` reads."""

    @property
    def id(self) -> int: ...
    @property
    def location_id(self) -> int: ...
    @property
    def weekday(self) -> int: ...
    @property
    def starts(self) -> dt.time: ...
    @property
    def ends(self) -> dt.time: ...
    @property
    def valid_from(self) -> dt.date | None: ...
    @property
    def valid_until(self) -> dt.date | None: ...


class _Person(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...


class _PatternRow(NamedTuple):
    id: int
    location_id: int
    weekday: int
    starts: dt.time
    ends: dt.time
    valid_from: dt.date | None
    valid_until: dt.date | None


class _PersonRow(NamedTuple):
    id: int
    name: str
    role: str


def occurrence(
    pattern: _Weekly, day: dt.date, tz: ZoneInfo
) -> tuple[dt.datetime, dt.datetime] | None:
    """The pattern's shift on local date `day` as UTC instants, or None if it does not fall then."""
    if day.weekday() != pattern.weekday:
        return None
    if pattern.valid_from is not None and day < pattern.valid_from:
        return None
    if pattern.valid_until is not None and day > pattern.valid_until:
        return None
    start = dt.datetime.combine(day, pattern.starts, tzinfo=tz).astimezone(UTC)
    end = end_of_day(day, pattern.ends).replace(tzinfo=tz).astimezone(UTC)
    return start, end


def _local_days(start: dt.datetime, end: dt.datetime, tz: ZoneInfo) -> tuple[dt.date, dt.date]:
    # A day either side: a pattern's local day may begin before `start` in UTC terms.
    return (
        start.astimezone(tz).date() - dt.timedelta(days=1),
        end.astimezone(tz).date() + dt.timedelta(days=1),
    )


_K = ShiftSkip.__table__.c
_SKIPS = select(_K.pattern_id, _K.day).where(
    _K.pattern_id.in_(bindparam("ids", expanding=True)),
    _K.day >= bindparam("first"),
    _K.day <= bindparam("last"),
)


def _skipped(
    session: Session, pattern_ids: Sequence[int], first: dt.date, last: dt.date
) -> set[tuple[int, dt.date]]:
    """The (pattern, local day) occurrences removed (leave) between first and last."""
    params = {"ids": list(pattern_ids), "first": first, "last": last}
    return {(pid, day) for pid, day in session.connection().execute(_SKIPS, params)}


def _expand(
    session: Session,
    rows: Sequence[tuple[_Weekly, _Person, str]],
    start: dt.datetime,
    end: dt.datetime,
) -> list[ShiftInterval]:
    """Occurrences of the patterns (with their clinician and zone) meeting [start, end)."""
    if not rows:
        return []
    windows = {}
    for pattern, _, zone in rows:
        tz = ZoneInfo(zone)
        windows[pattern.id] = (tz, *_local_days(start, end, tz))
    first = min(w[1] for w in windows.values())
    last = max(w[2] for w in windows.values())
    skipped = _skipped(session, list(windows), first, last)
    out: list[ShiftInterval] = []
    for pattern, clinician, _ in rows:
        tz, day_first, day_last = windows[pattern.id]
        offset = (pattern.weekday - day_first.weekday()) % 7
        day = day_first + dt.timedelta(days=offset)
        while day <= day_last:
            hit = occurrence(pattern, day, tz)
            if hit and hit[0] < end and hit[1] > start and (pattern.id, day) not in skipped:
                out.append(
                    ShiftInterval(
                        id=f"p{pattern.id}:{day.isoformat()}",
                        clinician_id=clinician.id,
                        name=clinician.name,
                        role=clinician.role,
                        location_id=pattern.location_id,
                        start=hit[0],
                        end=hit[1],
                    )
                )
            day += dt.timedelta(days=7)
    return out


def _one_off(shift: Shift, clinician: _Person) -> ShiftInterval:
    return ShiftInterval(
        id=f"s{shift.id}",
        clinician_id=clinician.id,
        name=clinician.name,
        role=clinician.role,
        location_id=shift.location_id,
        start=shift.start_at,
        end=shift.end_at,
    )


def _sorted(shifts: list[ShiftInterval]) -> list[ShiftInterval]:
    return sorted(shifts, key=lambda x: (x.start, x.role != ClinicianRole.PRESCRIBER, x.name, x.id))


_P, _C, _S = ShiftPattern.__table__.c, Clinician.__table__.c, Shift.__table__.c
# Plain columns (not ORM entities): availability reads the rota on every listing and booking.
_LOCATION_PATTERNS = (
    select(
        _P.id,
        _P.location_id,
        _P.weekday,
        _P.starts,
        _P.ends,
        _P.valid_from,
        _P.valid_until,
        _C.id,
        _C.name,
        _C.role,
    )
    .join_from(ShiftPattern.__table__, Clinician.__table__, _C.id == _P.clinician_id)
    .where(_P.location_id == bindparam("location_id"), _C.active.is_(True))
)
_LOCATION_ONE_OFFS = (
    select(_S.id, _S.location_id, _S.start_at, _S.end_at, _C.id, _C.name, _C.role)
    .join_from(Shift.__table__, Clinician.__table__, _C.id == _S.clinician_id)
    .where(
        _S.location_id == bindparam("location_id"),
        _C.active.is_(True),
        _S.start_at < bindparam("end"),
        _S.end_at > bindparam("start"),
    )
)


def shift_intervals(
    session: Session, location: Location, start: dt.datetime, end: dt.datetime
) -> list[ShiftInterval]:
    """The shifts of active clinicians at `location` meeting [start, end), in time order."""
    params = {"location_id": location.id, "start": start, "end": end}
    rows = [
        (_PatternRow(*row[:7]), _PersonRow(row[7], row[8], row[9]), location.timezone)
        for row in session.execute(_LOCATION_PATTERNS, params).all()
    ]
    shifts = _expand(session, rows, start, end)
    for shift_id, location_id, s, e, *person in session.execute(_LOCATION_ONE_OFFS, params).all():
        cid, name, role = person
        shifts.append(ShiftInterval(f"s{shift_id}", cid, name, role, location_id, s, e))
    return _sorted(shifts)


@functools.lru_cache(maxsize=2048)
def _weekly_us(
    zone: str,
    weekday: int,
    starts: dt.time,
    ends: dt.time,
    valid_from: dt.date | None,
    valid_until: dt.date | None,
    first: dt.date,
    last: dt.date,
) -> tuple[tuple[dt.date, int, int], ...]:
    """A weekly pattern's occurrences on the local days first..last: (day, start, end), instants
    in epoch microseconds. A pure function of its arguments (the pattern's own fields, not its
    id), so it is cached: the rota is read on every listing and booking and rarely changes, and
    an edited pattern is a new key."""
    tz = ZoneInfo(zone)
    day = first + dt.timedelta(days=(weekday - first.weekday()) % 7)
    if valid_from is not None and day < valid_from:
        day += dt.timedelta(days=-(-(valid_from - day).days // 7) * 7)
    if valid_until is not None:
        last = min(last, valid_until)
    found = []
    while day <= last:
        start = dt.datetime.combine(day, starts, tzinfo=tz)
        end = end_of_day(day, ends).replace(tzinfo=tz)
        found.append((day, availability.to_us(start), availability.to_us(end)))
        day += dt.timedelta(days=7)
    return tuple(found)


def shift_spans(
    session: Session, location: Location, start: dt.datetime, end: dt.datetime
) -> tuple[dict[int, list[tuple[int, int]]], list[tuple[int, int]]]:
    """What the availability engine needs of `shift_intervals` (the same shifts): each
    prescriber's shifts and the nurses' shifts meeting [start, end), as spans in epoch
    microseconds, with no object per occurrence (the patterns' expansion is cached)."""
    params = {"location_id": location.id, "start": start, "end": end}
    # Core on the session's connection: no ORM step per statement (read on every listing).
    patterns = session.connection().execute(_LOCATION_PATTERNS, params).all()
    prescribers: dict[int, list[tuple[int, int]]] = {}
    nurses: list[tuple[int, int]] = []
    start_us, end_us = availability.to_us(start), availability.to_us(end)
    if patterns:
        zone = location.timezone
        first, last = _local_days(start, end, ZoneInfo(zone))
        skipped = _skipped(session, [row[0] for row in patterns], first, last)
        for pid, _, weekday, starts, ends, valid_from, valid_until, cid, _, role in patterns:
            spans = prescribers.setdefault(cid, []) if role == ClinicianRole.PRESCRIBER else nurses
            for day, s, e in _weekly_us(
                zone, weekday, starts, ends, valid_from, valid_until, first, last
            ):
                if s < end_us and e > start_us and (pid, day) not in skipped:
                    spans.append((s, e))
    one_offs = session.connection().execute(_LOCATION_ONE_OFFS, params).all()
    for _, _, s_at, e_at, cid, _, role in one_offs:
        span = (availability.to_us(s_at), availability.to_us(e_at))
        if role == ClinicianRole.PRESCRIBER:
            prescribers.setdefault(cid, []).append(span)
        else:
            nurses.append(span)
    return prescribers, nurses


def location_shifts(
    session: Session, location: Location, first: dt.date, last: dt.date
) -> list[ShiftInterval]:
    """The shifts at `location` on the local dates first..last (inclusive)."""
    if last < first:
        raise InvalidInput("The range ends before it starts.", {"to": "before from"})
    if (last - first).days > 92:
        raise InvalidInput("At most 93 days at a time.", {"to": "at most 93 days after from"})
    tz = ZoneInfo(location.timezone)
    start = dt.datetime.combine(first, dt.time(0), tzinfo=tz).astimezone(UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=tz).astimezone(UTC)
    return shift_intervals(session, location, start, end)


def clinician_shifts(
    session: Session, clinician: Clinician, start: dt.datetime, end: dt.datetime
) -> list[ShiftInterval]:
    """The clinician's shifts anywhere meeting [start, end)."""
    rows = session.execute(
        select(ShiftPattern, Location.timezone)
        .join(Location, Location.id == ShiftPattern.location_id)
        .where(ShiftPattern.clinician_id == clinician.id)
    )
    shifts = _expand(session, [(p, clinician, zone) for p, zone in rows], start, end)
    for shift in session.scalars(
        select(Shift).where(
            Shift.clinician_id == clinician.id, Shift.start_at < end, Shift.end_at > start
        )
    ):
        shifts.append(_one_off(shift, clinician))
    return _sorted(shifts)


# --- changing the rota ----------------------------------------------------------------------------


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("Times need a UTC offset.", {name: "must include a UTC offset"})
    return value.astimezone(UTC)


def _busy(
    clinician: Clinician,
    clash: ShiftInterval,
    location: Location,
    viewer: StaffUser | None,
) -> ClinicianBusy:
    """`clinician_busy`, naming the clashing shift's times only where the one asking may see
    that shift's location (this one, or another of theirs); else only that it is elsewhere."""
    if clash.location_id == location.id or (
        viewer is not None and viewer.can_access(clash.location_id)
    ):
        tz = ZoneInfo(location.timezone)
        when = f"{clash.start.astimezone(tz):%a %d %b %H:%M}-{clash.end.astimezone(tz):%H:%M}"
    else:
        when = "at another location"
    return ClinicianBusy(
        f"{clinician.name} already has a shift then ({when}).",
        {"clinician": "already on shift then"},
    )


def check_shift_range(
    location: Location,
    start: dt.datetime,
    end: dt.datetime,
    *,
    fields: tuple[str, str] = ("start", "end"),
) -> None:
    """A shift lies on local dates (at `location`) that the listing accepts, so every shift
    written can be listed, removed and copied: refused naming `fields` (start's, end's) else."""
    tz = ZoneInfo(location.timezone)
    problems: dict[str, str] = {}
    if not in_supported_range(start.astimezone(tz).date()):
        problems[fields[0]] = RANGE_MESSAGE
    # A shift ending at midnight after the last day still lies on that day.
    last = max(start, end - dt.timedelta(microseconds=1))
    if not in_supported_range(last.astimezone(tz).date()):
        problems.setdefault(fields[1], RANGE_MESSAGE)
    if problems:
        raise InvalidInput("That shift is out of range.", problems)


def add_shift(
    session: Session,
    location: Location,
    clinician_id: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    note: str = "",
    now: dt.datetime | None = None,
    viewer: StaffUser | None = None,
) -> ShiftInterval:
    """A one-off shift (an extra day, or cover); refused if the clinician is busy anywhere then
    (the clash's times are named only if `viewer` may see its location).
    Under the staffing rules more staff is more room: the waitlist looks at the shift's time."""
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise InvalidInput("The shift must end after it starts.", {"end": "must be after start"})
    if end - start > MAX_SHIFT:
        raise InvalidInput("A shift lasts at most 24 hours.", {"end": "at most 24 hours"})
    check_shift_range(location, start, end)
    clinician = _lock_clinician(session, clinician_id)
    if not clinician.active:
        raise InvalidInput("That clinician is inactive.", {"clinician": "inactive"})
    clashes = clinician_shifts(session, clinician, start, end)
    if clashes:
        raise _busy(clinician, clashes[0], location, viewer)
    shift = Shift(
        clinician_id=clinician.id,
        location_id=location.id,
        start_at=start,
        end_at=end,
        note=note.strip()[:200],
    )
    try:
        with session.begin_nested():
            session.add(shift)
            session.flush()
    except IntegrityError as exc:  # no_clinician_overlap (PostgreSQL): a concurrent twin
        raise ClinicianBusy(
            f"{clinician.name} already has a shift then.", {"clinician": "already on shift then"}
        ) from exc
    if location.staffing_rules:
        from scheduler.services import waitlist  # (waitlist -> booking -> staffing)

        when = now if now is not None else dt.datetime.now(UTC)
        waitlist.queue_freed(
            session, location.id, max(start, when), end, reason=FreedReason.SHIFT, now=when
        )
    return _one_off(shift, clinician)


def add_pattern(
    session: Session,
    location: Location,
    clinician_id: int,
    *,
    weekday: int,
    starts: dt.time,
    ends: dt.time,
    now: dt.datetime,
    valid_from: dt.date | None = None,
    valid_until: dt.date | None = None,
) -> ShiftPattern:
    """A weekly shift; refused if it would overlap the clinician's shifts in the next year.
    Under the staffing rules the waitlist looks at its days, as for a one-off shift."""
    fields: dict[str, str] = {}
    if not 0 <= weekday <= 6:
        fields["weekday"] = "0 (Monday) to 6 (Sunday)"
    if not (starts < ends or ends == dt.time(0)):
        fields["ends"] = "must be after starts"
    if valid_from and valid_until and valid_until < valid_from:
        fields["valid_until"] = "before valid_from"
    if fields:
        raise InvalidInput("Some fields need correcting.", fields)
    clinician = _lock_clinician(session, clinician_id)
    pattern = ShiftPattern(
        clinician_id=clinician.id,
        location_id=location.id,
        weekday=weekday,
        starts=starts,
        ends=ends,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    tz = ZoneInfo(location.timezone)
    today = now.astimezone(tz).date()
    first = max(today, valid_from) if valid_from else today
    last = first + dt.timedelta(days=PATTERN_CHECK_DAYS)
    if valid_until is not None:
        last = min(last, valid_until)
    span_start = dt.datetime.combine(first, dt.time(0), tzinfo=tz).astimezone(UTC)
    span_end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    existing = availability.Steps(
        (s.start, s.end, 1)
        for s in clinician_shifts(session, clinician, span_start, span_end.astimezone(UTC))
    )
    for day in _days(first, last):
        hit = occurrence(pattern, day, tz)
        if hit and existing.max_over(*hit) > 0:
            raise ClinicianBusy(
                f"{clinician.name} already has a shift on {day:%a %d %b} at that time.",
                {"clinician": "already on shift then"},
            )
    session.add(pattern)
    session.flush()
    if location.staffing_rules:
        from scheduler.services import waitlist  # (waitlist -> booking -> staffing)

        waitlist.pattern_added(session, location, pattern, now=now)
    return pattern


# Nine digits at most: every id fits the 32-bit integer columns (a longer one is unknown).
_PATTERN_ID = re.compile(r"^p(\d{1,9}):(\d{4}-\d{2}-\d{2})$")
_ONE_OFF_ID = re.compile(r"^s(\d{1,9})$")


def find_shift(
    session: Session, location: Location, shift_id: str
) -> tuple[ShiftInterval, ShiftPattern | Shift, dt.date | None]:
    """A concrete shift at `location` by its id; NotFound otherwise."""
    missing = NotFound("No such shift at this location.", {"shift": "unknown shift"})
    match = _PATTERN_ID.match(shift_id)
    if match:
        try:
            day = dt.date.fromisoformat(match.group(2))
        except ValueError:
            raise missing from None
        if not in_supported_range(day):
            raise missing
        pattern = session.get(ShiftPattern, int(match.group(1)))
        if pattern is None or pattern.location_id != location.id:
            raise missing
        hit = occurrence(pattern, day, ZoneInfo(location.timezone))
        skipped = session.scalars(
            select(ShiftSkip.id).where(ShiftSkip.pattern_id == pattern.id, ShiftSkip.day == day)
        ).first()
        if hit is None or skipped is not None:
            raise missing
        clinician = pattern.clinician
        view = ShiftInterval(
            shift_id, clinician.id, clinician.name, clinician.role, location.id, *hit
        )
        return view, pattern, day
    match = _ONE_OFF_ID.match(shift_id)
    shift = session.get(Shift, int(match.group(1))) if match else None
    if shift is None or shift.location_id != location.id:
        raise missing
    return _one_off(shift, shift.clinician), shift, None


@dataclass(frozen=True)
class NurseChange:
    """A visit whose nurse lost the shift covering its start, given another (or none)."""

    appointment_id: int
    before: str
    after: str | None  # None: no nurse on shift then; the visit is left without one


@dataclass(frozen=True)
class Removed:
    """A removed shift, and the visits its nurse was watching that were handed on."""

    shift: ShiftInterval
    nurses: tuple[NurseChange, ...] = ()
    why: str = ""  # the audit's reason; "" for "shift {id} removed"


def delete_shift(
    session: Session, location: Location, shift_id: str, *, now: dt.datetime, reason: str = ""
) -> Removed:
    """Remove one concrete shift (a pattern's occurrence is skipped that day); refused with
    `shift_in_use` when booked visits would lose the prescriber or nurse capacity they need.
    A nurse's visits that start during the shift are given another nurse on shift then
    (`pick_nurse`), or none if nobody is (`reassign_nurses`), in the same transaction."""
    view, row, day = find_shift(session, location, shift_id)
    lock_days(session, location, (view.start, view.end))
    broken = stranded(session, location, view.start, view.end, now=now, without=view.id)
    if broken:
        raise ShiftInUse(
            "Booked visits need this shift: move or cancel them first.",
            {"shift": "booked visits need it"},
            appointments=broken,
        )
    if isinstance(row, ShiftPattern):
        assert day is not None
        session.add(ShiftSkip(pattern_id=row.id, day=day, reason=reason.strip()[:200]))
    else:
        session.delete(row)
    session.flush()
    return Removed(view, reassign_nurses(session, location, view, now=now))


def reassign_nurses(
    session: Session, location: Location, removed: ShiftInterval, *, now: dt.datetime
) -> tuple[NurseChange, ...]:
    """After `removed` is gone: every visit still to come whose nurse it was (its occupied
    start falls in the shift, so no other shift of hers covers it) gets the nurse `pick_nurse`
    balances it to, or none. The caller holds the shift's days' locks (`delete_shift`)."""
    if removed.role != ClinicianRole.NURSE:
        return ()
    visits = session.scalars(
        select(Appointment)
        .where(
            Appointment.location_id == location.id,
            Appointment.nurse_id == removed.clinician_id,
            Appointment.active.is_(True),
            Appointment.occupied_start >= removed.start,
            Appointment.occupied_start < removed.end,
            Appointment.occupied_end > now,
        )
        .order_by(Appointment.occupied_start, Appointment.id)
    ).all()
    changes: list[NurseChange] = []
    for visit in visits:
        nurse_id = pick_nurse(
            session,
            location,
            visit.occupied_start,
            visit.occupied_end,
            exclude_appointment_id=visit.id,
        )
        visit.nurse_id = nurse_id
        session.flush()  # the next pick counts this one's new nurse
        after = session.get(Clinician, nurse_id) if nurse_id is not None else None
        changes.append(NurseChange(visit.id, removed.name, after.name if after else None))
    return tuple(changes)


def record_nurse_changes(
    session: Session,
    location: Location,
    removed: Iterable[Removed],
    *,
    actor: StaffUser | None,
    at: dt.datetime,
) -> None:
    """Audit each visit a shift removal handed to another nurse (or left without one), as a
    staff nurse change is (`appointment.nurse_changed`), in the removal's transaction."""
    for removal in removed:
        for change in removal.nurses:
            audit.record(
                session,
                actor=actor,
                action="appointment.nurse_changed",
                at=at,
                location_id=location.id,
                appointment_id=change.appointment_id,
                target=f"appointment {change.appointment_id}",
                details={
                    "from": change.before,
                    "to": change.after,
                    "reason": removal.why or f"shift {removal.shift.id} removed",
                },
            )


def add_leave(
    session: Session,
    location: Location,
    clinician: Clinician,
    day: dt.date,
    *,
    now: dt.datetime,
    reason: str = "",
) -> list[Removed]:
    """The clinician is away from `location` on local date `day`: each of their weekly shifts
    there that day is removed (as `delete_shift`, so refused if booked visits need it). Their
    shifts at other locations are another location's rota, left alone."""
    removed: list[Removed] = []
    tz = ZoneInfo(location.timezone)
    for pattern in session.scalars(
        select(ShiftPattern)
        .where(
            ShiftPattern.clinician_id == clinician.id,
            ShiftPattern.location_id == location.id,
            ShiftPattern.weekday == day.weekday(),
        )
        .order_by(ShiftPattern.id)
    ):
        if occurrence(pattern, day, tz) is None:
            continue
        shift_id = f"p{pattern.id}:{day.isoformat()}"
        try:
            removed.append(delete_shift(session, location, shift_id, now=now, reason=reason))
        except NotFound:
            continue  # already skipped
    return removed


def copy_week(
    session: Session,
    location: Location,
    source: dt.date,
    target: dt.date,
    *,
    now: dt.datetime | None = None,
    viewer: StaffUser | None = None,
) -> list[ShiftInterval]:
    """Copy the shifts of the week from `source` (7 local days) to the week from `target`, as
    one-off shifts starting at the same local time and lasting as long (elapsed time: a night
    across a DST change keeps its hours, so its end's local time moves by the hour the clocks
    do). Shifts already there are kept; a clash with another shift of the clinician refuses the
    whole copy (`clinician_busy`), as does a copy past the dates shifts may have (`target`)."""
    if source == target:
        raise InvalidInput("Pick another week to copy to.", {"target": "same week"})
    tz = ZoneInfo(location.timezone)
    offset = target - source
    wanted = location_shifts(session, location, source, source + dt.timedelta(days=6))
    present = {
        (s.clinician_id, s.start, s.end)
        for s in location_shifts(session, location, target, target + dt.timedelta(days=6))
    }
    created: list[ShiftInterval] = []
    for shift in wanted:
        local_start = shift.start.astimezone(tz).replace(tzinfo=None) + offset
        start = local_start.replace(tzinfo=tz).astimezone(UTC)
        end = start + (shift.end - shift.start)
        check_shift_range(location, start, end, fields=("target", "target"))
        if (shift.clinician_id, start, end) in present:
            continue
        created.append(
            add_shift(session, location, shift.clinician_id, start, end, now=now, viewer=viewer)
        )
    return created


# --- staffing rules and what they would break -----------------------------------------------------

LIMITS = {
    "patients_per_nurse": (1, 20),
    "starts_per_window": (1, 50),
    "start_window_minutes": (1, 240),
}


def staffing_of(location: Location) -> dict[str, Any]:
    return {
        "rules": bool(location.staffing_rules),
        "patients_per_nurse": location.patients_per_nurse,
        "starts_per_window": location.starts_per_window,
        "start_window_minutes": location.start_window_minutes,
    }


def _staffing(values: Mapping[str, Any]) -> availability.Staffing:
    return availability.Staffing(
        rules=bool(values["rules"]),
        patients_per_nurse=int(values["patients_per_nurse"]),
        starts_per_window=int(values["starts_per_window"]),
        start_window=dt.timedelta(minutes=int(values["start_window_minutes"])),
    )


def validate_staffing(changes: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "rules":
            if not isinstance(value, bool):
                fields[name] = "true or false"
            clean[name] = value
        elif name in LIMITS:
            low, high = LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                fields[name] = f"a whole number from {low} to {high}"
            clean[name] = value
        else:
            fields[name] = "unknown setting"
    if fields:
        raise InvalidInput("Some fields need correcting.", fields)
    return clean


def patch_staffing(
    session: Session, location: Location, changes: Mapping[str, Any], *, now: dt.datetime
) -> dict[str, Any]:
    """Change the location's staffing rules; refused with `staffing_in_use` (listing the visits)
    when booked visits that hold now would break."""
    clean = validate_staffing(changes)
    lock_location(session, location.id)
    before = staffing_of(location)
    after = {**before, **clean}
    if after != before:
        broken = stranded(
            session, location, now, None, now=now, staffing_before=before, staffing_after=after
        )
        if broken:
            raise StaffingInUse(
                "Booked visits would break these rules: move or cancel them first.",
                {next(iter(clean)): "booked visits would break it"},
                appointments=broken,
            )
    location.staffing_rules = after["rules"]
    location.patients_per_nurse = after["patients_per_nurse"]
    location.starts_per_window = after["starts_per_window"]
    location.start_window_minutes = after["start_window_minutes"]
    session.flush()
    return after


def _visits(
    session: Session,
    location: Location,
    start: dt.datetime,
    end: dt.datetime | None,
    *,
    exclude: int | None = None,
) -> list[availability.Visit]:
    """Active visits at the location occupying time after `start` (and within a day of `end`)."""
    a = Appointment
    query = (
        select(
            a.id,
            a.start_at,
            a.end_at,
            a.occupied_start,
            a.occupied_end,
            a.clinician_id,
            Service.kind,
        )
        .join(Service, Service.id == a.service_id)
        .where(a.location_id == location.id, a.active.is_(True), a.occupied_end > start)
    )
    if end is not None:
        query = query.where(a.occupied_start < end + dt.timedelta(days=1))
    if exclude is not None:
        query = query.where(a.id != exclude)
    return [availability.Visit(*row) for row in session.execute(query)]


def breaks_rules(session: Session, appointment: Appointment) -> bool:
    """Would taking `appointment`'s time back (undoing a no-show or a check-in's cancel) break the
    staffing rules for it or another visit? Taken under the day's lock, like a booking."""
    location = appointment.location
    if not location.staffing_rules:
        return False
    lock_days(
        session,
        location,
        checked_interval(location, appointment.occupied_start, appointment.occupied_end),
    )
    start = appointment.occupied_start - dt.timedelta(days=1)
    end = appointment.occupied_end
    others = _visits(session, location, start, end, exclude=appointment.id)
    this = availability.Visit(
        appointment.id,
        appointment.start_at,
        appointment.end_at,
        appointment.occupied_start,
        appointment.occupied_end,
        appointment.clinician_id,
        appointment.service.kind,
    )
    visits = [*others, this]
    shifts = shift_intervals(
        session,
        location,
        min(v.occupied_start for v in visits),
        max(v.occupied_end for v in visits),
    )
    rules = _staffing(staffing_of(location))
    before = availability.broken_visits(rules, shifts, others)
    return bool(availability.broken_visits(rules, shifts, visits) - before)


def stranded(
    session: Session,
    location: Location,
    start: dt.datetime,
    end: dt.datetime | None,
    *,
    now: dt.datetime,
    without: str | None = None,
    without_clinician: int | None = None,
    staffing_before: Mapping[str, Any] | None = None,
    staffing_after: Mapping[str, Any] | None = None,
) -> list[int]:
    """Ids of the visits still to come, meeting [start, end) (None: open-ended), that the change
    would break: the shift `without` (or every shift of the clinician `without_clinician`)
    removed, and/or the rules changed. Visits already breaking
    the rules before the change are not counted against it."""
    visits = _visits(session, location, max(now, start - dt.timedelta(days=1)), end)
    if not visits:
        return []
    first = min(v.occupied_start for v in visits)
    last = max(v.occupied_end for v in visits)
    shifts = shift_intervals(session, location, first, last)
    current = staffing_of(location)
    before = _staffing(staffing_before or current)
    after = _staffing(staffing_after or current)
    remaining = [s for s in shifts if s.id != without and s.clinician_id != without_clinician]
    broken_before = availability.broken_visits(before, shifts, visits)
    broken_after = availability.broken_visits(after, remaining, visits)
    return sorted(broken_after - broken_before)


def nurse_load(
    session: Session, location: Location, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, int, int]]:
    """(instant, patients in infusion, nurse capacity) at each change point in [start, end)."""
    floor = availability.load_floor(session, location, start, end)
    ppn = location.patients_per_nurse
    patients = availability.Steps((s, e, 1) for s, e in floor.infusions)
    capacity = availability.Steps((s, e, ppn) for s, e in floor.nurses)
    changes = (t for s, e in (*floor.infusions, *floor.nurses) for t in (s, e))
    points = sorted({start, *(t for t in changes if start < t < end)})
    return [(t, patients.at(t), capacity.at(t)) for t in points]


def pick_nurse(
    session: Session,
    location: Location,
    start: dt.datetime,
    end: dt.datetime,
    *,
    exclude_appointment_id: int | None = None,
) -> int | None:
    """The nurse to watch an infusion occupying [start, end): on shift at its start (one whose
    shift covers all of it first), with the fewest infusions overlapping it; None if none."""
    on_shift = [
        s
        for s in shift_intervals(session, location, start, end)
        if s.role == ClinicianRole.NURSE and s.start <= start
    ]
    if not on_shift:
        return None
    query = (
        select(Appointment.nurse_id, func.count())
        .where(
            Appointment.location_id == location.id,
            Appointment.active.is_(True),
            Appointment.nurse_id.in_([s.clinician_id for s in on_shift]),
            Appointment.occupied_start < end,
            Appointment.occupied_end > start,
        )
        .group_by(Appointment.nurse_id)
    )
    if exclude_appointment_id is not None:
        query = query.where(Appointment.id != exclude_appointment_id)
    load: dict[int, int] = {nid: n for nid, n in session.execute(query) if nid is not None}
    best = min(on_shift, key=lambda s: (s.end < end, load.get(s.clinician_id, 0), s.clinician_id))
    return best.clinician_id


def set_nurse(session: Session, appointment: Appointment, nurse_id: int | None) -> None:
    """Staff reassign an infusion's nurse (any active nurse; None clears it)."""
    if appointment.service.kind == ServiceKind.CONSULTATION:
        raise InvalidInput("Consultations have no nurse.", {"nurse": "not for a consultation"})
    if nurse_id is not None:
        nurse = session.get(Clinician, nurse_id)
        if nurse is None or nurse.role != ClinicianRole.NURSE or not nurse.active:
            raise InvalidInput("That is not an active nurse.", {"nurse": "not an active nurse"})
    appointment.nurse_id = nurse_id
    session.flush()


def change_nurse(session: Session, appointment: Appointment, nurse_id: int | None) -> None:
    """Staff pick the nurse who watches an infusion: a nurse on shift at the location from the
    visit's start; with the rules on, one watching fewer than `patients_per_nurse` other
    infusions at every instant of it. Taken under the day's lock, like a booking."""
    if nurse_id is None or nurse_id == appointment.nurse_id:
        set_nurse(session, appointment, nurse_id)
        return
    location = appointment.location
    start, end = appointment.occupied_start, appointment.occupied_end
    lock_days(session, location, checked_interval(location, start, end))
    on_shift = [
        s
        for s in shift_intervals(session, location, start, end)
        if s.clinician_id == nurse_id and s.role == ClinicianRole.NURSE and s.start <= start
    ]
    if not on_shift:
        raise InvalidInput(
            "That nurse is not on shift here when this visit starts.",
            {"nurse": "not on shift then"},
        )
    if location.staffing_rules:
        watched = availability.Steps(
            (s, e, 1)
            for s, e in session.execute(
                select(Appointment.occupied_start, Appointment.occupied_end).where(
                    Appointment.nurse_id == nurse_id,
                    Appointment.active.is_(True),
                    Appointment.id != appointment.id,
                    Appointment.occupied_start < end,
                    Appointment.occupied_end > start,
                )
            )
        )
        if watched.max_over(start, end) >= location.patients_per_nurse:
            raise Conflict(
                f"{on_shift[0].name} already watches {location.patients_per_nurse} patients"
                " during this visit.",
                {"nurse": "at capacity then"},
            )
    set_nurse(session, appointment, nurse_id)
