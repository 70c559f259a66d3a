"""Editing the clinic's settings: locations, hours, closures, chairs and rooms, services, staff.

Plain functions: they validate, change rows and flush; the caller audits and commits. Each
returns (or takes) plain values so the caller can record what changed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import (
    Appointment,
    Closure,
    Location,
    OpeningHours,
    Resource,
    ResourceKind,
    Service,
    ServiceKind,
    StaffRole,
    StaffUser,
)
from scheduler.services import staff as staff_service
from scheduler.services.clock import is_valid_zone
from scheduler.services.errors import Conflict, Forbidden, InvalidInput
from scheduler.services.patients import normalize_phone

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_INTERVAL = re.compile(r"^\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")


def _require(fields: dict[str, str], name: str, value: str, limit: int) -> str:
    value = " ".join(value.split())
    if not value:
        fields[name] = "required"
    elif len(value) > limit:
        fields[name] = f"at most {limit} characters"
    return value


def _raise(fields: Mapping[str, str]) -> None:
    if fields:
        raise InvalidInput("Some fields need correcting.", dict(fields))


def _phone(fields: dict[str, str], raw: str) -> str:
    if not raw.strip():
        return ""
    try:
        return normalize_phone(raw)
    except InvalidInput as exc:
        fields.update(exc.fields)
        return raw


# --- locations ------------------------------------------------------------------------------------


def create_location(
    session: Session, *, slug: str, name: str, timezone: str, address: str, phone: str
) -> Location:
    fields: dict[str, str] = {}
    slug = slug.strip().lower()
    if not SLUG.match(slug):
        fields["slug"] = "lower-case letters, digits and dashes"
    elif session.scalars(select(Location).where(Location.slug == slug)).first():
        fields["slug"] = "already used"
    name = _require(fields, "name", name, 200)
    if not is_valid_zone(timezone.strip()):
        fields["timezone"] = "not an IANA time zone (e.g. America/Los_Angeles)"
    phone = _phone(fields, phone)
    _raise(fields)
    location = Location(
        slug=slug,
        name=name,
        timezone=timezone.strip(),
        address=address.strip()[:500],
        phone=phone,
        staffing_rules=True,  # a new location starts with the staffing rules on
    )
    session.add(location)
    session.flush()
    return location


def update_location(
    session: Session,
    location: Location,
    *,
    name: str,
    timezone: str,
    address: str,
    phone: str,
    active: bool | None = None,
) -> dict[str, Any]:
    fields: dict[str, str] = {}
    name = _require(fields, "name", name, 200)
    if not is_valid_zone(timezone.strip()):
        fields["timezone"] = "not an IANA time zone (e.g. America/Los_Angeles)"
    if len(address) > 500:
        fields["address"] = "at most 500 characters"
    phone = _phone(fields, phone)
    _raise(fields)
    before = _location_values(location)
    location.name, location.timezone = name, timezone.strip()
    location.address, location.phone = address.strip(), phone
    if active is not None:
        location.active = active
    session.flush()
    after = _location_values(location)
    return {k: f"{before[k]} -> {after[k]}" for k in after if before[k] != after[k]}


def _location_values(location: Location) -> dict[str, Any]:
    return {
        "name": location.name,
        "timezone": location.timezone,
        "address": location.address,
        "phone": location.phone,
        "active": location.active,
    }


def hours_text(location: Location) -> dict[int, str]:
    """Per weekday, e.g. '08:00-12:30, 13:00-18:00' (empty when closed)."""
    out: dict[int, list[str]] = {d: [] for d in range(7)}
    for row in sorted(location.hours, key=lambda r: (r.weekday, r.opens)):
        closes = "24:00" if row.closes == dt.time(0) else f"{row.closes:%H:%M}"
        out[row.weekday].append(f"{row.opens:%H:%M}-{closes}")
    return {d: ", ".join(v) for d, v in out.items()}


def parse_hours(text: str) -> list[tuple[dt.time, dt.time]]:
    """'08:00-12:30, 13:00-18:00' -> sorted, non-overlapping intervals; raises ValueError.

    '24:00' closes at midnight, stored as 00:00 (see OpeningHours)."""
    intervals: list[tuple[dt.time, dt.time]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        match = _INTERVAL.match(part)
        if not match:
            raise ValueError("use HH:MM-HH:MM, separated by commas")
        try:
            opens = dt.time.fromisoformat(match.group(1).zfill(5))
            midnight = match.group(2).zfill(5) == "24:00"
            closes = dt.time(0) if midnight else dt.time.fromisoformat(match.group(2).zfill(5))
        except ValueError:
            raise ValueError("use HH:MM-HH:MM, separated by commas") from None
        if not midnight and opens >= closes:
            raise ValueError("each interval must close after it opens")
        intervals.append((opens, closes))
    intervals.sort()
    for (_, a_close), (b_open, _) in zip(intervals, intervals[1:], strict=False):
        if a_close == dt.time(0) or b_open < a_close:
            raise ValueError("intervals overlap")
    return intervals


def set_hours(session: Session, location: Location, texts: Mapping[int, str]) -> dict[str, Any]:
    fields: dict[str, str] = {}
    parsed: dict[int, list[tuple[dt.time, dt.time]]] = {}
    for day in range(7):
        try:
            parsed[day] = parse_hours(texts.get(day, ""))
        except ValueError as exc:
            fields[f"day{day}"] = f"{WEEKDAYS[day]}: {exc}"
    _raise(fields)
    location.hours.clear()
    session.flush()
    for day, intervals in parsed.items():
        for opens, closes in intervals:
            location.hours.append(OpeningHours(weekday=day, opens=opens, closes=closes))
    session.flush()
    return {WEEKDAYS[d]: texts.get(d, "") or "closed" for d in range(7)}


def add_closure(
    session: Session, location: Location, first: dt.date | None, last: dt.date | None, reason: str
) -> dict[str, Any]:
    if first is None or last is None:
        raise InvalidInput("Choose the first day of the closure.", {"first_day": "required"})
    if last < first:
        raise InvalidInput("The last day is before the first.", {"last_day": "before first day"})
    closure = Closure(first_day=first, last_day=last, reason=reason.strip()[:200])
    location.closures.append(closure)
    session.flush()
    return {"first_day": first.isoformat(), "last_day": last.isoformat(), "reason": closure.reason}


def delete_closure(session: Session, closure: Closure) -> dict[str, Any]:
    details = {
        "first_day": closure.first_day.isoformat(),
        "last_day": closure.last_day.isoformat(),
        "reason": closure.reason,
    }
    session.delete(closure)
    session.flush()
    return details


# --- chairs and rooms -----------------------------------------------------------------------------


def _position(fields: dict[str, str], raw: str, default: int) -> int:
    if not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        fields["position"] = "a whole number"
        return default
    if not 0 <= value <= 10000:
        fields["position"] = "between 0 and 10000"
    return value


def add_resource(
    session: Session, location: Location, *, kind: str, name: str, position: str
) -> dict[str, Any]:
    fields: dict[str, str] = {}
    if kind not in {k.value for k in ResourceKind}:
        fields["kind"] = "chair or room"
    name = _require(fields, "name", name, 100)
    if name and any(r.name == name for r in location.resources):
        fields["name"] = "already used at this location"
    same_kind = [r.position for r in location.resources if r.kind == kind]
    pos = _position(fields, position, max(same_kind, default=0) + 1)
    _raise(fields)
    location.resources.append(Resource(kind=kind, name=name, position=pos, active=True))
    session.flush()
    return {"kind": kind, "name": name, "position": pos}


def update_resource(
    session: Session,
    resource: Resource,
    *,
    name: str,
    position: str,
    active: bool,
    now: dt.datetime,
) -> dict[str, Any]:
    fields: dict[str, str] = {}
    if resource.active and not active:
        _refuse_with_visits_ahead(session, resource, now)
    name = _require(fields, "name", name, 100)
    clash = session.scalars(
        select(Resource).where(
            Resource.location_id == resource.location_id,
            Resource.name == name,
            Resource.id != resource.id,
        )
    ).first()
    if clash is not None:
        fields["name"] = "already used at this location"
    pos = _position(fields, position, resource.position)
    _raise(fields)
    before = f"{resource.name} #{resource.position} {'active' if resource.active else 'inactive'}"
    resource.name, resource.position, resource.active = name, pos, active
    session.flush()
    after = f"{resource.name} #{resource.position} {'active' if resource.active else 'inactive'}"
    return {"from": before, "to": after}


def _refuse_with_visits_ahead(session: Session, resource: Resource, now: dt.datetime) -> None:
    """A chair taken out of use for good must not strand the visits booked on it: they are moved
    or cancelled first (a block is the way to take it out for a while)."""
    if session.get_bind().dialect.name == "postgresql":
        # Bookings share-lock their candidate chairs: none is half-way through booking this one,
        # and any that comes after this transaction finds the chair inactive.
        session.execute(select(Resource.id).where(Resource.id == resource.id).with_for_update())
    ahead = list(
        session.scalars(
            select(Appointment)
            .where(
                Appointment.resource_id == resource.id,
                Appointment.active.is_(True),
                Appointment.occupied_end > now,
            )
            .order_by(Appointment.start_at)
            .limit(6)
        )
    )
    if ahead:
        tz = ZoneInfo(resource.location.timezone)
        times = ", ".join(a.start_at.astimezone(tz).strftime("%a %d %b %H:%M") for a in ahead[:5])
        more = " and more" if len(ahead) > 5 else ""
        raise Conflict(
            f"{resource.name} has booked visits ahead ({times}{more}). Move or cancel them "
            "first, or block the chair for a while instead.",
            {"active": "has booked visits ahead"},
        )


# --- services -------------------------------------------------------------------------------------


def can_edit_service(staff: StaffUser, service: Service) -> bool:
    """Admins: any. Managers: a service offered only at their locations (or nowhere yet)."""
    if not staff.active:
        return False
    if staff.role == StaffRole.ADMIN:
        return True
    if staff.role != StaffRole.MANAGER:
        return False
    mine = {x.id for x in staff.locations}
    return all(x.id in mine for x in service.locations)


INT_FIELDS = {
    "duration_minutes": (5, 12 * 60),
    "prep_minutes": (0, 240),
    "recovery_minutes": (0, 240),
    "slot_step_minutes": (5, 240),
    "min_notice_minutes": (0, 60 * 24 * 30),
    "horizon_days": (1, 730),
    "late_cancel_hours": (0, 24 * 30),
}
# Pre-visit instructions: blank means none (0); absent from `values` keeps the current value.
INSTRUCTION_FIELDS = {"fasting_hours": (0, 48), "arrive_early_minutes": (0, 240)}
FLAG_FIELDS = ("escort_required", "no_driving")


def save_service(
    session: Session, staff: StaffUser, service: Service | None, values: Mapping[str, Any]
) -> Service:
    """Create (service None) or update a service from form values; managers stay in their lane."""
    fields: dict[str, str] = {}
    ints: dict[str, int] = {}
    for name, (low, high) in INT_FIELDS.items():
        raw = str(values.get(name, "")).strip()
        try:
            ints[name] = int(raw)
        except ValueError:
            fields[name] = "a whole number"
            continue
        if not low <= ints[name] <= high:
            fields[name] = f"between {low} and {high}"
    for name, (low, high) in INSTRUCTION_FIELDS.items():
        if name not in values:
            continue
        raw = str(values.get(name, "")).strip() or "0"
        try:
            ints[name] = int(raw)
        except ValueError:
            fields[name] = "a whole number"
            continue
        if not low <= ints[name] <= high:
            fields[name] = f"between {low} and {high}"
    name = _require(fields, "name", str(values.get("name", "")), 200)
    kind = str(values.get("kind", ""))
    if kind not in {k.value for k in ServiceKind}:
        fields["kind"] = "consultation or infusion"
    resource_kind = str(values.get("resource_kind", ""))
    if resource_kind not in {k.value for k in ResourceKind}:
        fields["resource_kind"] = "chair or room"
    slug = str(values.get("slug", "")).strip().lower()
    if service is None:
        if not SLUG.match(slug):
            fields["slug"] = "lower-case letters, digits and dashes"
        elif session.scalars(select(Service).where(Service.slug == slug)).first():
            fields["slug"] = "already used"
    public_title = str(values.get("public_title", "")).strip()
    if len(public_title) > 200:
        fields["public_title"] = "at most 200 characters"
    wanted = set(values.get("locations", set()))
    all_locations = {x.id: x for x in session.scalars(select(Location))}
    if any(i not in all_locations for i in wanted):
        fields["locations"] = "unknown location"
    if staff.role == StaffRole.ADMIN:
        allowed = set(all_locations)
    else:
        allowed = {x.id for x in staff.locations}
    current = {x.id for x in service.locations} if service else set()
    if (wanted ^ current) - allowed:
        raise Forbidden("You can only change which of your own locations offer a service.")
    if service is None and staff.role != StaffRole.ADMIN and not wanted:
        fields["locations"] = "choose at least one of your locations"
    _raise(fields)
    if service is None:
        service = Service(slug=slug)
        session.add(service)
    service.name, service.kind, service.resource_kind = name, kind, resource_kind
    service.description = str(values.get("description", "")).strip()
    service.what_to_bring = str(values.get("what_to_bring", "")).strip()
    service.public_title = public_title
    service.active = bool(values.get("active", True))
    for flag in FLAG_FIELDS:
        if flag in values:
            setattr(service, flag, bool(values[flag]))
    for key, value in ints.items():
        setattr(service, key, value)
    service.locations = [all_locations[i] for i in sorted(wanted)]
    session.flush()
    return service


# --- staff users ----------------------------------------------------------------------------------


def save_staff(
    session: Session,
    user: StaffUser | None,
    values: Mapping[str, Any],
    hasher: PasswordHasher,
    *,
    now: dt.datetime,
) -> StaffUser:
    """Create (user None) or update a staff user from the settings form (`locations` are ids)."""
    fields: dict[str, str] = {}
    ids = set(values.get("locations", set()))
    locations = list(session.scalars(select(Location).where(Location.id.in_(ids)))) if ids else []
    if len(locations) != len(ids):
        fields["locations"] = "unknown location"
    return staff_service.save_staff(
        session,
        user,
        email=str(values.get("email", "")),
        name=str(values.get("name", "")),
        role=str(values.get("role", "")),
        password=str(values.get("password", "")),
        locations=locations,
        active=bool(values.get("active", True)),
        hasher=hasher,
        now=now,
        fields=fields,
    )


__all__ = [
    "add_closure",
    "add_resource",
    "can_edit_service",
    "create_location",
    "delete_closure",
    "hours_text",
    "parse_hours",
    "save_service",
    "save_staff",
    "set_hours",
    "update_location",
    "update_resource",
]
