"""Patients as people: identity (phone + birth date + name), clearance, spacing, merge, search.

Identity. A patient is found again by their phone (E.164), birth date and name, the name
compared without accents, case or extra spaces (`name_key`); `match_key` (`name_key|date`) is
unique per phone, so people sharing a phone (a family) stay separate and two concurrent
bookings of a new person make one row. Rows from before birth dates were asked have an unknown
date (`name_key|`): a booking with a birth date claims the phone's unknown-date row of that
name (filling the date in) when no row has that date yet; a booking without a birth date (API
v1 clients, services without clearance) takes the phone's one row of that name, else the
unknown-date row. A merged duplicate stays as an alias that points to the record kept.

Clearance and spacing are checked by `check_visit` on every path that books or moves a visit
(booking.py calls it), after `lock_patient`: on PostgreSQL the patient's row lock serializes
the checks of concurrent requests for one person; on SQLite the write lock does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.db import attach
from scheduler.models import (
    Appointment,
    AuditEntry,
    Clearance,
    Location,
    Patient,
    Service,
    ServiceKind,
    StaffRole,
    StaffUser,
    service_locations,
)
from scheduler.services import reminders
from scheduler.services.errors import Forbidden, InvalidInput, NotCleared, NotFound, TooSoon

DEFAULT_REGION = "US"
EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)
# Who may record a clearance: a prescriber's own staff account, or a manager or admin for them.
CLEARANCE_ROLES = frozenset({StaffRole.PRESCRIBER, StaffRole.MANAGER, StaffRole.ADMIN})


@dataclass(frozen=True)
class PatientDetails:
    name: str
    phone: str
    email: str
    sms_consent: bool = False
    date_of_birth: dt.date | None = None


# --- normalization and validation -----------------------------------------------------------------


def name_key(name: str) -> str:
    """The name as compared: accents stripped (NFKD), case-folded, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def match_key(key: str, date_of_birth: dt.date | None) -> str:
    return f"{key}|{date_of_birth.isoformat() if date_of_birth else ''}"


def normalize_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    """A mobile number in E.164, or InvalidInput naming the `phone` field."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput("Enter a valid phone number.", {"phone": "not a phone number"}) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("Enter a valid phone number.", {"phone": "not a valid phone number"})
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput("Enter a valid e-mail address.", {"email": str(exc)}) from exc
    return result.normalized


def birth_date_problem(value: dt.date, *, today: dt.date, min_age_years: int) -> str | None:
    """Why `value` is not a believable birth date of a patient, or None."""
    if value > today:
        return "is in the future"
    if value < EARLIEST_BIRTH_DATE:
        return "is before 1900"
    try:
        youngest = today.replace(year=today.year - min_age_years)
    except ValueError:  # 29 February
        youngest = today.replace(year=today.year - min_age_years, day=28)
    if value > youngest:
        return f"patients must be at least {min_age_years}"
    return None


def parse_birth_date(raw: str) -> dt.date:
    """A YYYY-MM-DD date from a form, or InvalidInput naming `date_of_birth`."""
    try:
        return dt.date.fromisoformat(raw.strip())
    except ValueError as exc:
        raise InvalidInput(
            "Enter your date of birth.", {"date_of_birth": "not a date (YYYY-MM-DD)"}
        ) from exc


def validate_details(
    details: PatientDetails,
    *,
    require_email: bool = True,
    today: dt.date | None = None,
    min_age_years: int = 18,
    birth_date_required: bool = False,
) -> PatientDetails:
    """The details normalized, or InvalidInput naming every field that needs correcting.

    Staff booking for a patient on the phone may leave the e-mail empty
    (`require_email=False`): no invite is mailed then. The birth date is checked against
    `today` (the clinic's date) when given.
    """
    fields: dict[str, str] = {}
    name = " ".join(details.name.split())
    if not name:
        fields["name"] = "required"
    elif len(name) > 200:
        fields["name"] = "at most 200 characters"
    phone = email = ""
    try:
        phone = normalize_phone(details.phone)
    except InvalidInput as exc:
        fields.update(exc.fields)
    if details.email.strip() or require_email:
        try:
            email = normalize_email(details.email)
        except InvalidInput as exc:
            fields.update(exc.fields)
    dob = details.date_of_birth
    if dob is None and birth_date_required:
        fields["date_of_birth"] = "required"
    elif dob is not None and today is not None:
        problem = birth_date_problem(dob, today=today, min_age_years=min_age_years)
        if problem:
            fields["date_of_birth"] = problem
    if fields:
        raise InvalidInput("Some details need correcting.", fields)
    return PatientDetails(name, phone, email, details.sms_consent, dob)


# --- identity -------------------------------------------------------------------------------------


@functools.cache
def _upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Patient.__table__).values(
        name=bindparam("name"),
        phone=bindparam("phone"),
        email=bindparam("email"),
        date_of_birth=bindparam("date_of_birth"),
        name_key=bindparam("name_key"),
        match_key=bindparam("match_key"),
        notes="",
        sms_consent=bindparam("sms_consent"),
        created_at=bindparam("now"),
    )
    return stmt.on_conflict_do_update(
        index_elements=["phone", "match_key"],
        set_={"sms_consent": stmt.excluded.sms_consent, "email": stmt.excluded.email},
    ).returning(*Patient.__table__.columns)


def _claim_unknown_birth_date(
    session: Session, phone: str, key: str, date_of_birth: dt.date
) -> None:
    """Give the phone's unknown-date row of this name the birth date, unless one has it."""
    legacy, dated = match_key(key, None), match_key(key, date_of_birth)
    found = set(
        session.scalars(
            select(Patient.match_key).where(
                Patient.phone == phone, Patient.match_key.in_([legacy, dated])
            )
        )
    )
    if found != {legacy}:
        return
    try:
        with session.begin_nested():
            # The match_key condition is re-checked on the row after a concurrent claim
            # (PostgreSQL), so only one request claims it; the other finds it by its new key.
            session.execute(
                update(Patient)
                .where(Patient.phone == phone, Patient.match_key == legacy)
                .values(date_of_birth=date_of_birth, match_key=dated)
                .execution_options(synchronize_session=False)
            )
    except IntegrityError:
        pass  # a concurrent booking created the dated row first: the upsert finds it


def find_or_create(session: Session, details: PatientDetails, now: dt.datetime) -> Patient:
    """The patient these (validated) details name, created when new; followed to the record
    kept when it was merged. The row is locked for this transaction (see `lock_patient`).

    The latest booking's SMS choice and e-mail win: unticking the box stops reminders.
    """
    key = name_key(details.name)
    dob = details.date_of_birth
    if dob is None:
        same_name = session.scalars(
            select(Patient.id)
            .where(Patient.phone == details.phone, Patient.name_key == key)
            .order_by(Patient.id)
            .limit(2)
        ).all()
        if len(same_name) == 1:
            patient = lock_patient(session, same_name[0])
            patient.sms_consent, patient.email = details.sms_consent, details.email
            session.flush()
            return _follow_merge(session, patient)
    else:
        _claim_unknown_birth_date(session, details.phone, key, dob)
    params = {
        "name": details.name,
        "phone": details.phone,
        "email": details.email,
        "date_of_birth": dob,
        "name_key": key,
        "match_key": match_key(key, dob),
        "sms_consent": details.sms_consent,
        "now": now,
    }
    # INSERT ... ON CONFLICT DO UPDATE: a concurrent twin waits for the first insert and then
    # updates the same row, holding its lock (PostgreSQL) until it commits.
    row = session.execute(_upsert(session.get_bind().dialect.name), params).one()
    patient = attach(session, Patient(**row._mapping), written=True)
    return _follow_merge(session, patient)


def _follow_merge(session: Session, patient: Patient) -> Patient:
    seen = {patient.id}
    while patient.merged_into_id is not None and patient.merged_into_id not in seen:
        patient = lock_patient(session, patient.merged_into_id)
        seen.add(patient.id)
    return patient


def lock_patient(session: Session, patient_id: int) -> Patient:
    """The patient's row, locked FOR UPDATE on PostgreSQL (SQLite holds the write lock already):
    every check of one person's visits, and a merge, runs one at a time."""
    query = select(Patient).where(Patient.id == patient_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update().execution_options(populate_existing=True)
    patient = session.scalars(query).first()
    if patient is None:
        raise NotFound("No such patient.")
    return patient


# --- clearance and spacing ------------------------------------------------------------------------


def consultation_for(session: Session, location: Location) -> Service | None:
    """The consultation a patient books first at `location` (named when they are not cleared)."""
    return session.scalars(
        select(Service)
        .join(service_locations, service_locations.c.service_id == Service.id)
        .where(
            service_locations.c.location_id == location.id,
            Service.kind == ServiceKind.CONSULTATION,
            Service.active.is_(True),
        )
        .order_by(Service.name)
    ).first()


def is_cleared(session: Session, patient_id: int, service_id: int, on: dt.date) -> bool:
    return (
        session.scalars(
            select(Clearance.id).where(
                Clearance.patient_id == patient_id,
                Clearance.service_id == service_id,
                Clearance.until >= on,
            )
        ).first()
        is not None
    )


def check_visit(
    session: Session,
    patient_id: int,
    location: Location,
    service: Service,
    start: dt.datetime,
    *,
    exclude_appointment_id: int | None = None,
    override_clearance: bool = False,
) -> None:
    """Raise NotCleared or TooSoon when this patient may not have this visit at `start`.

    Call with the patient locked (`lock_patient`), so concurrent requests see each other.
    """
    tz = ZoneInfo(location.timezone)
    if (
        service.requires_clearance
        and not override_clearance
        and not is_cleared(session, patient_id, service.id, start.astimezone(tz).date())
    ):
        found = consultation_for(session, location)
        consultation = found.name if found else "a consultation"
        raise NotCleared(
            f"{service.name} needs a prescriber's clearance first: please book "
            f"{consultation} before your first {service.name.lower()}.",
            {"service": "needs a prescriber's clearance"},
        )
    clash = too_close(session, patient_id, service, start, exclude_appointment_id)
    if clash is not None:
        other_start, other_tz, hours = clash
        # With the zone's abbreviation: the other visit may be at a location in another zone.
        when = other_start.astimezone(ZoneInfo(other_tz)).strftime("%a %d %b %Y at %H:%M %Z")
        raise TooSoon(
            f"You have another visit on {when}; these visits need at least "
            f"{hours} hours between them.",
            {"start": f"within {hours} hours of another visit"},
        )


def too_close(
    session: Session,
    patient_id: int,
    service: Service,
    start: dt.datetime,
    exclude_appointment_id: int | None,
) -> tuple[dt.datetime, str, int] | None:
    """The patient's nearest active visit, at any location, whose start is closer to `start`
    than the larger minimum gap of the two services (only services with a gap count)."""
    if service.min_gap_hours <= 0:
        return None
    widest = max(
        service.min_gap_hours,
        session.scalar(select(func.max(Service.min_gap_hours))) or 0,
    )
    window = dt.timedelta(hours=widest)
    query = (
        select(Appointment.start_at, Location.timezone, Service.min_gap_hours)
        .join(Service, Service.id == Appointment.service_id)
        .join(Location, Location.id == Appointment.location_id)
        .where(
            Appointment.patient_id == patient_id,
            Appointment.active.is_(True),
            Service.min_gap_hours > 0,
            Appointment.start_at > start - window,
            Appointment.start_at < start + window,
        )
        .order_by(Appointment.start_at)
    )
    if exclude_appointment_id is not None:
        query = query.where(Appointment.id != exclude_appointment_id)
    for other_start, timezone, other_gap in session.execute(query):
        hours = max(service.min_gap_hours, other_gap)
        if abs(other_start - start) < dt.timedelta(hours=hours):
            return other_start, timezone, hours
    return None


def may_record_clearance(staff: StaffUser) -> bool:
    return staff.active and staff.role in CLEARANCE_ROLES


def record_clearances(
    session: Session,
    patient: Patient,
    service_slugs: Sequence[str],
    until: dt.date,
    *,
    staff: StaffUser,
    note: str = "",
    now: dt.datetime,
) -> list[Clearance]:
    """Clear `patient` for each service until the local date `until` (inclusive)."""
    if not may_record_clearance(staff):
        raise Forbidden("Only a prescriber, a manager or an admin may record a clearance.")
    fields: dict[str, str] = {}
    if until < now.date():
        fields["until"] = "is in the past"
    elif until > now.date() + dt.timedelta(days=3 * 366):
        fields["until"] = "at most three years ahead"
    if len(note) > 2000:
        fields["note"] = "at most 2000 characters"
    slugs = list(dict.fromkeys(service_slugs))
    if not slugs:
        fields["services"] = "name at least one service"
    services = {s.slug: s for s in session.scalars(select(Service).where(Service.slug.in_(slugs)))}
    unknown = [slug for slug in slugs if slug not in services]
    if unknown:
        fields["services"] = f"unknown service: {', '.join(unknown)[:100]}"
    if fields:
        raise InvalidInput("Some fields need correcting.", fields)
    made = [
        Clearance(
            patient_id=patient.id,
            service_id=services[slug].id,
            until=until,
            recorded_by_id=staff.id,
            recorded_by_name=staff.name,
            note=note.strip(),
            created_at=now,
        )
        for slug in slugs
    ]
    session.add_all(made)
    session.flush()
    return made


def clearance_ends(
    session: Session, appointments: Sequence[Appointment]
) -> dict[int, dt.date | None]:
    """For each visit of a service that needs clearance: the last date its patient is cleared
    for that service (None: never cleared), keyed by appointment id; in one query."""
    wanted = [a for a in appointments if a.service.requires_clearance]
    if not wanted:
        return {}
    rows = session.execute(
        select(Clearance.patient_id, Clearance.service_id, func.max(Clearance.until))
        .where(Clearance.patient_id.in_({a.patient_id for a in wanted}))
        .group_by(Clearance.patient_id, Clearance.service_id)
    ).all()
    ends = {(pid, sid): until for pid, sid, until in rows}
    return {a.id: ends.get((a.patient_id, a.service_id)) for a in wanted}


def clearances_of(session: Session, patient_id: int) -> list[Clearance]:
    return list(
        session.scalars(
            select(Clearance)
            .where(Clearance.patient_id == patient_id)
            .order_by(Clearance.until.desc(), Clearance.id.desc())
        )
    )


# --- staff: access, search, record, edit, merge ---------------------------------------------------


def _location_ids(staff: StaffUser) -> list[int] | None:
    """The staff member's locations, or None for every location (admins)."""
    if staff.role == StaffRole.ADMIN:
        return None
    return [loc.id for loc in staff.locations]


def _visited(location_ids: list[int] | None) -> Any:
    """Patients with a visit at these locations (every patient when None)."""
    if location_ids is None:
        return Patient.id.is_not(None)
    return Patient.id.in_(
        select(Appointment.patient_id).where(Appointment.location_id.in_(location_ids))
    )


def visible_patient(session: Session, staff: StaffUser, patient_id: int) -> Patient:
    """The patient, if they have a visit at one of the staff member's locations; else NotFound
    (another location's patients are not revealed)."""
    patient = session.get(Patient, patient_id)
    if (
        patient is None
        or not staff.active
        or patient.merged_into_id is not None
        or session.scalar(
            select(Patient.id).where(Patient.id == patient_id, _visited(_location_ids(staff)))
        )
        is None
    ):
        raise NotFound("No such patient.")
    return patient


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(session: Session, staff: StaffUser, q: str, *, limit: int = 50) -> list[Patient]:
    """Patients seen at the staff member's locations whose name, phone, e-mail or birth date
    matches `q` (substring of the normalized name, the phone's digits or the e-mail; a whole
    YYYY-MM-DD date). On PostgreSQL the pg_trgm GIN indexes answer the substring matches."""
    q = q.strip()[:100]
    if not q:
        return []
    conditions = []
    with contextlib.suppress(ValueError):
        conditions.append(Patient.date_of_birth == dt.date.fromisoformat(q))
    digits = "".join(ch for ch in q if ch.isdigit())
    if len(digits) >= 3 and len(digits) >= len(q.replace(" ", "")) - 4:
        conditions.append(Patient.phone.like(f"%{digits}%"))
    key = name_key(q)
    if len(key) >= 2:
        conditions.append(Patient.name_key.like(f"%{_escape_like(key)}%", escape="\\"))
        if "@" in q or "." in q:
            conditions.append(
                func.lower(Patient.email).like(f"%{_escape_like(q.lower())}%", escape="\\")
            )
    if not conditions:
        return []
    return list(
        session.scalars(
            select(Patient)
            .where(or_(*conditions), Patient.merged_into_id.is_(None))
            .where(_visited(_location_ids(staff)))
            .order_by(Patient.name_key, Patient.id)
            .limit(limit)
        )
    )


def appointments_of(session: Session, staff: StaffUser, patient_id: int) -> list[Appointment]:
    """The patient's visits at the staff member's locations, latest first."""
    query = select(Appointment).where(Appointment.patient_id == patient_id)
    ids = _location_ids(staff)
    if ids is not None:
        query = query.where(Appointment.location_id.in_(ids))
    return list(session.scalars(query.order_by(Appointment.start_at.desc())))


def update_details(
    session: Session,
    patient: Patient,
    *,
    name: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    date_of_birth: dt.date | None = None,
    notes: str | None = None,
    today: dt.date,
    min_age_years: int = 18,
) -> dict[str, tuple[Any, Any]]:
    """Edit a patient's details (staff); returns what changed as field: (before, after).

    InvalidInput names a bad field; a change that would make this patient the twin of another
    one on the same phone is refused (merge them instead).
    """
    current = PatientDetails(
        name if name is not None else patient.name,
        phone if phone is not None else patient.phone,
        email if email is not None else patient.email,
        patient.sms_consent,
        date_of_birth if date_of_birth is not None else patient.date_of_birth,
    )
    details = validate_details(current, today=today, min_age_years=min_age_years)
    if notes is not None and len(notes) > 5000:
        raise InvalidInput("The notes are too long.", {"notes": "at most 5000 characters"})
    key = name_key(details.name)
    new_match = match_key(key, details.date_of_birth)
    if patient.match_key.startswith(f"{key}|#") and details.date_of_birth is None:
        new_match = patient.match_key  # an unmatched legacy twin stays unmatched
    twin = session.scalars(
        select(Patient.id).where(
            Patient.phone == details.phone,
            Patient.match_key == new_match,
            Patient.id != patient.id,
        )
    ).first()
    if twin is not None:
        raise InvalidInput(
            "Another patient on this phone has this name and date of birth: merge the two.",
            {"name": f"same as patient {twin}"},
        )
    changes: dict[str, tuple[Any, Any]] = {}
    for field, value in (
        ("name", details.name),
        ("phone", details.phone),
        ("email", details.email),
        ("date_of_birth", details.date_of_birth),
        ("notes", notes.strip() if notes is not None else patient.notes),
    ):
        if getattr(patient, field) != value:
            changes[field] = (getattr(patient, field), value)
            setattr(patient, field, value)
    patient.name_key, patient.match_key = key, new_match
    session.flush()
    return changes


def _reassign(
    session: Session,
    model: type[Appointment] | type[Clearance] | type[AuditEntry],
    old: int,
    new: int,
) -> int:
    result = session.execute(
        update(model)
        .where(model.patient_id == old)
        .values(patient_id=new)
        .execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], result).rowcount)


@dataclass(frozen=True)
class MergeResult:
    kept: Patient
    appointments: int
    clearances: int
    audit_entries: int
    opted_out: bool


def merge(session: Session, kept_id: int, duplicate_id: int, *, staff: StaffUser) -> MergeResult:
    """Move the duplicate's visits, clearances, audit entries and SMS opt-out to the kept
    record; the duplicate stays as an alias (so its spelling keeps finding the person).

    Both rows are locked (in id order, PostgreSQL) first: a concurrent booking of either
    person waits, or has committed and its visit is moved too. The staff member must see both.
    """
    if kept_id == duplicate_id:
        raise InvalidInput("A patient cannot be merged into themselves.", {"duplicate": "same"})
    visible_patient(session, staff, kept_id)
    visible_patient(session, staff, duplicate_id)
    first, second = sorted((kept_id, duplicate_id))
    locked = {first: lock_patient(session, first), second: lock_patient(session, second)}
    kept, duplicate = locked[kept_id], locked[duplicate_id]
    if kept.merged_into_id is not None or duplicate.merged_into_id is not None:
        raise NotFound("No such patient.")
    moved = _reassign(session, Appointment, duplicate.id, kept.id)
    cleared = _reassign(session, Clearance, duplicate.id, kept.id)
    audited = _reassign(session, AuditEntry, duplicate.id, kept.id)
    # A STOP from the duplicate's phone stands for the person: no reminders until START.
    opted_out = duplicate.phone != kept.phone and reminders.is_opted_out(session, duplicate.phone)
    if opted_out:
        kept.sms_consent = False
    if not kept.notes and duplicate.notes:
        kept.notes = duplicate.notes
    elif duplicate.notes and duplicate.notes not in kept.notes:
        kept.notes = f"{kept.notes}\n{duplicate.notes}"[:5000]
    if kept.date_of_birth is None and duplicate.date_of_birth is not None:
        kept.date_of_birth = duplicate.date_of_birth
    duplicate.merged_into_id = kept.id
    session.flush()
    session.expire_all()
    return MergeResult(
        kept=session.get(Patient, kept.id) or kept,
        appointments=moved,
        clearances=cleared,
        audit_entries=audited,
        opted_out=opted_out,
    )
