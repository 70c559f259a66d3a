"""Booking: the only writer of appointments (book, reschedule, cancel, status changes, blocks).

Lock, then check, then write; the database is the backstop. On PostgreSQL two exclusion
constraints make a double booking (per resource) and an overlapping pair (per patient)
impossible. A new booking inserts with ON CONFLICT ON CONSTRAINT no_double_booking DO NOTHING,
so a chair just taken by a concurrent booking means "try the next free chair" without aborting
anything; a move does the same inside a savepoint (where a deadlock also means "next chair").
The candidate chairs are share-locked before their busy time is read, and a block takes the
chair's exclusive lock, so a block and a booking never both win. On SQLite every transaction
starts with BEGIN IMMEDIATE (see scheduler.db), so the check and the write run under the one
write lock.

Every booking and move also keeps the patient's own rules (a prescriber's clearance, the
minimum gap between visits: `patients.check_visit`), checked with the patient's row locked so
concurrent requests for one person take turns.

Booking a new visit is the hot path: it reads and writes with a handful of prebuilt Core
statements (see `_offer`, `_insert`) and hands ORM objects for those rows to the rest.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, make_transient_to_detached

from scheduler.db import attach, is_deadlock
from scheduler.models import (
    ACTIVE_STATUSES,
    Appointment,
    AppointmentStatus,
    Clinician,
    ClinicianRole,
    FreedReason,
    Location,
    Patient,
    Resource,
    ResourceBlock,
    Service,
    ServiceKind,
    StaffUser,
    service_locations,
)
from scheduler.services import availability, notifications, patients, staffing, waitlist
from scheduler.services.availability import Slot, overlaps
from scheduler.services.day_of import Escort, validate_escort
from scheduler.services.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    SlotUnavailable,
    TooLate,
)
from scheduler.services.patients import PatientDetails, validate_details
from scheduler.services.settings import ClinicSettings

UTC = dt.UTC


@dataclass(frozen=True)
class BookingRequest:
    location: str  # slug
    service: str  # slug
    start: dt.datetime  # aware
    patient: PatientDetails
    note: str = ""
    source: str = "online"  # online | staff
    allow_short_notice: bool = False  # staff may book walk-ins inside the minimum notice
    resource_id: int | None = None  # staff may ask for one chair
    require_email: bool = True  # staff booking by phone may leave it empty (online and API: not)
    clinician: int | None = None  # a consultation's prescriber, if the patient chose one
    override_clearance: bool = False  # staff may book an uncleared patient (the view audits it)
    escort: Escort | None = None  # who takes the patient home
    # The patient pages ask for the escort of an escort_required service; the API (v1 clients)
    # may leave it out: the visit is then shown to staff as missing its escort.
    require_escort: bool = False
    # A session of a treatment course (services/courses.py books every session through here).
    course_id: int | None = None
    course_session: int | None = None
    awaiting_review: bool = False  # after the course's review point: no reminders yet
    send_invite: bool = True  # False: the caller mails the invite (a course's one e-mail)


def get_location(session: Session, slug: str) -> Location:
    location = session.scalars(
        select(Location).where(Location.slug == slug, Location.active.is_(True))
    ).first()
    if location is None:
        raise NotFound("No such location.", {"location": "unknown location"})
    return location


def get_service(session: Session, location: Location, slug: str) -> Service:
    service = session.scalars(
        select(Service)
        .join(service_locations, service_locations.c.service_id == Service.id)
        .where(
            Service.slug == slug,
            Service.active.is_(True),
            service_locations.c.location_id == location.id,
        )
    ).first()
    if service is None:
        raise NotFound(
            "This service is not offered at this location.", {"service": "unknown service"}
        )
    return service


_L, _S, _R = Location.__table__, Service.__table__, Resource.__table__
_LOCATION_COLUMNS, _SERVICE_COLUMNS, _RESOURCE_COLUMNS = tuple(_L.c), tuple(_S.c), tuple(_R.c)
# Plain table columns throughout (not ORM attributes): the statement runs as Core.
_OFFER = (
    select(*_LOCATION_COLUMNS, *_SERVICE_COLUMNS, *_RESOURCE_COLUMNS)
    .join_from(_L, service_locations, service_locations.c.location_id == _L.c.id)
    .join(_S, _S.c.id == service_locations.c.service_id)
    .join(
        _R,
        and_(
            _R.c.location_id == _L.c.id,
            _R.c.kind == _S.c.resource_kind,
            _R.c.active.is_(True),
        ),
    )
    .where(
        _L.c.slug == bindparam("location"),
        _L.c.active.is_(True),
        _S.c.slug == bindparam("service"),
        _S.c.active.is_(True),
    )
    .order_by(_R.c.position, _R.c.id)
    .with_for_update(read=True, of=_R)
)


def _columns(row: Sequence[Any], columns: Sequence[Any], start: int) -> dict[str, Any]:
    return {c.key: row[start + i] for i, c in enumerate(columns)}


def _offer(
    session: Session, location_slug: str, service_slug: str
) -> tuple[Location, Service, dict[int, dict[str, Any]]]:
    """The location, a service it offers, and the resources that can serve it, in one query.

    The resources (active, of the service's kind, in calendar order) come as plain rows keyed
    by id, share-locked on PostgreSQL: a block, which takes a resource's exclusive lock, cannot
    be added to them until this transaction ends, so the busy time read next is final.
    NotFound names what is unknown.
    """
    rows = session.execute(_OFFER, {"location": location_slug, "service": service_slug}).all()
    if not rows:
        location = get_location(session, location_slug)
        return location, get_service(session, location, service_slug), {}
    at_service, at_resource = len(_LOCATION_COLUMNS), len(_LOCATION_COLUMNS) + len(_SERVICE_COLUMNS)
    location = attach(session, Location(**_columns(rows[0], _LOCATION_COLUMNS, 0)))
    service = attach(session, Service(**_columns(rows[0], _SERVICE_COLUMNS, at_service)))
    resources = {row[at_resource]: _columns(row, _RESOURCE_COLUMNS, at_resource) for row in rows}
    return location, service, resources


def get_by_token(session: Session, token: str) -> Appointment:
    appointment = None
    if 20 <= len(token) <= 64:
        appointment = session.scalars(
            select(Appointment).where(Appointment.manage_token == token)
        ).first()
    if appointment is None:
        raise NotFound("No such appointment.")
    return appointment


def get_appointment(session: Session, appointment_id: int) -> Appointment:
    appointment = session.get(Appointment, appointment_id)
    if appointment is None:
        raise NotFound("No such appointment.")
    return appointment


def _as_utc(start: dt.datetime) -> dt.datetime:
    if start.tzinfo is None or start.utcoffset() is None:
        raise InvalidInput(
            "The start time needs a UTC offset.", {"start": "must include a UTC offset"}
        )
    try:
        return start.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInput("That time is out of range.", {"start": "out of range"}) from exc


def require_future(start: dt.datetime, now: dt.datetime) -> None:
    """A visit is booked or moved only to a time still ahead."""
    if start <= now:
        raise InvalidInput("That time has passed.", {"start": "is in the past"})


def _slot_for(
    session: Session,
    location: Location,
    service: Service,
    start: dt.datetime,
    now: dt.datetime,
    *,
    allow_short_notice: bool,
    exclude_appointment_id: int | None = None,
    resource_ids: Sequence[int] | None = None,
    clinician: int | None = None,
    moving_from: tuple[dt.datetime, dt.datetime] | None = None,
) -> Slot:
    """The engine's slot at `start`, with its free resources; raises if not bookable.

    The candidate resources are share-locked before their busy time is read (PostgreSQL): by
    the caller when it passes `resource_ids`, else here. A block added concurrently is either
    seen here or waits for this transaction to end. Staff (`allow_short_notice`) may book any
    whole minute that fits, not only the grid. Every limit (chairs, prescribers, nurse capacity,
    the start window) is checked by `availability.slot_at` under the location's day locks (a
    move, `moving_from` its current occupied interval, locks the days it leaves too).
    """
    require_future(start, now)
    slot = availability.slot_at(
        session,
        location,
        service,
        start,
        now,
        allow_short_notice=allow_short_notice,
        any_minute=allow_short_notice,
        exclude_appointment_id=exclude_appointment_id,
        lock=True,
        resource_ids=resource_ids,
        clinician=clinician,
        moving_from=moving_from,
    )
    if slot is None:
        raise InvalidInput(
            "That time cannot be booked for this service.",
            {"start": "not an offered time for this service"},
        )
    if not slot.free:
        if clinician is not None:
            raise SlotUnavailable(
                "That time is not free with the chosen prescriber. Please choose another time"
                " or another prescriber.",
                {"clinician": "not free then"},
            )
        raise SlotUnavailable("That time has just been taken. Please choose another.")
    return slot


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _lock_resource(session: Session, resource_id: int) -> None:
    """PostgreSQL: share-lock the resource row so a concurrent block waits (and we see it)."""
    if _is_postgresql(session):
        session.execute(
            select(Resource.id).where(Resource.id == resource_id).with_for_update(read=True)
        )


def _constraint_name(exc: IntegrityError | OperationalError) -> str:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None) or ""


def patient_overlaps(
    session: Session,
    patient_id: int,
    start: dt.datetime,
    end: dt.datetime,
    exclude: int | None = None,
) -> bool:
    """The patient has an active visit (other than `exclude`) overlapping [start, end)."""
    query = select(Appointment.id).where(
        Appointment.patient_id == patient_id,
        Appointment.active.is_(True),
        Appointment.start_at < end,
        Appointment.end_at > start,
    )
    if exclude is not None:
        query = query.where(Appointment.id != exclude)
    return session.scalars(query).first() is not None


_PATIENT_OVERLAP = Conflict(
    "You already have an appointment at that time.", {"start": "overlaps your other appointment"}
)


def _place(
    session: Session, appointment: Appointment, candidates: Sequence[int], slot: Slot
) -> None:
    """Put `appointment` on the first candidate resource the database accepts.

    The candidates were share-locked and checked for blocks by `_slot_for`; the exclusion
    constraints catch a concurrent booking of the same time (PostgreSQL).
    """
    occ_start = slot.start - dt.timedelta(minutes=appointment.prep_minutes)
    occ_end = slot.end + dt.timedelta(minutes=appointment.recovery_minutes)
    for resource_id in candidates:
        try:
            with session.begin_nested():
                appointment.resource_id = resource_id
                appointment.start_at, appointment.end_at = slot.start, slot.end
                appointment.occupied_start, appointment.occupied_end = occ_start, occ_end
                session.add(appointment)
                session.flush()
            return
        except IntegrityError as exc:
            if _constraint_name(exc) == "no_patient_overlap":
                raise _PATIENT_OVERLAP from exc
            if _constraint_name(exc) != "no_double_booking":
                raise
        except OperationalError as exc:
            if not is_deadlock(exc):
                raise
    raise SlotUnavailable("That time has just been taken. Please choose another.")


def _candidates(slot: Slot, resource_id: int | None) -> tuple[int, ...]:
    if resource_id is None:
        return slot.resources
    if resource_id not in slot.resources:
        raise SlotUnavailable(
            "That chair is not free at that time.", {"resource": "not free at that time"}
        )
    return (resource_id,)


def clinician_choice_problem(
    session: Session, service: Service, clinician: int | None
) -> tuple[str, dict[str, str]] | None:
    """Why a patient's chosen clinician cannot be asked for with `service` (message, fields),
    or None: a clinician is chosen for a consultation only, and must be an active prescriber.
    Booking refuses with 422, the availability query with 400 (a query parameter), never a
    misleading "slot unavailable" or an empty list."""
    if clinician is None:
        return None
    if service.kind != ServiceKind.CONSULTATION:
        return "A clinician is chosen for consultations only.", {
            "clinician": "only for a consultation"
        }
    chosen = session.get(Clinician, clinician)
    if chosen is None or not chosen.active or chosen.role != ClinicianRole.PRESCRIBER:
        return (
            "Consultations are with a prescriber: choose one from the clinicians list.",
            {"clinician": "not an active prescriber"},
        )
    return None


def _check_clinician_request(session: Session, service: Service, clinician: int | None) -> None:
    problem = clinician_choice_problem(session, service, clinician)
    if problem is not None:
        raise InvalidInput(*problem)


def move_clinician(appointment: Appointment) -> int | None:
    """The prescriber a move of `appointment` must keep: the one chosen at booking, else None
    (booked for "any prescriber": a move takes whoever is free then). Every path that offers or
    makes a move (the API, the patient's and the staff pages) asks availability for this one."""
    return appointment.clinician_id if appointment.clinician_chosen else None


def _assign_staff(session: Session, appointment: Appointment, slot: Slot) -> None:
    """A consultation's prescriber (the one asked for, else the first free); an infusion's nurse
    (the least loaded on shift, with the staffing rules on)."""
    if appointment.service.kind == ServiceKind.CONSULTATION:
        appointment.clinician_id = slot.clinicians[0] if slot.clinicians else None
        return
    if appointment.location.staffing_rules:
        appointment.nurse_id = staffing.pick_nurse(
            session,
            appointment.location,
            appointment.occupied_start,
            appointment.occupied_end,
            exclude_appointment_id=appointment.id,
        )


def book(
    session: Session, request: BookingRequest, *, now: dt.datetime, settings: ClinicSettings
) -> Appointment:
    """Book the request on a free resource of the right kind, or raise a DomainError."""
    details = validate_details(
        request.patient,
        require_email=request.require_email,
        today=now.date(),
        min_age_years=settings.patient_min_age_years,
    )
    session.flush()  # the Core statements below do not autoflush the caller's changes
    try:
        return _book(session, request, details, now, settings)
    except OperationalError as exc:
        # PostgreSQL broke a lock cycle with a concurrent change (another booking or move of the
        # same patient, a chair being edited) by aborting this transaction: the caller rolls
        # back, and the request may simply be sent again.
        if is_deadlock(exc):
            raise SlotUnavailable("That time has just been taken. Please choose another.") from exc
        raise


def _require_birth_date(details: PatientDetails, service: Service) -> None:
    """A service that needs clearance needs to know who the patient is: their birth date."""
    if service.requires_clearance and details.date_of_birth is None:
        raise InvalidInput(
            "Your date of birth is needed for this service.", {"date_of_birth": "required"}
        )


def _patient_for(
    session: Session,
    details: PatientDetails,
    location: Location,
    service: Service,
    start: dt.datetime,
    request: BookingRequest,
    now: dt.datetime,
) -> Patient:
    """The (locked) patient, once their clearance and spacing allow this visit."""
    patient = patients.find_or_create(session, details, now)
    patients.check_visit(
        session,
        patient.id,
        location,
        service,
        start,
        override_clearance=request.override_clearance,
    )
    return patient


def _check_move(
    session: Session, appointment: Appointment, start: dt.datetime, *, override_clearance: bool
) -> None:
    """A move keeps the patient's clearance and spacing rules (the patient locked first)."""
    patients.lock_patient(session, appointment.patient_id)
    patients.check_visit(
        session,
        appointment.patient_id,
        appointment.location,
        appointment.service,
        start,
        exclude_appointment_id=appointment.id,
        override_clearance=override_clearance,
    )


def _book(
    session: Session,
    request: BookingRequest,
    details: PatientDetails,
    now: dt.datetime,
    settings: ClinicSettings,
) -> Appointment:
    location, service, resources = _offer(session, request.location, request.service)
    _require_birth_date(details, service)
    escort = validate_escort(
        request.escort, required=request.require_escort and service.escort_required
    )
    start = _as_utc(request.start)
    if len(request.note) > 2000:
        raise InvalidInput("The note is too long.", {"note": "at most 2000 characters"})
    _check_clinician_request(session, service, request.clinician)
    slot = _slot_for(
        session,
        location,
        service,
        start,
        now,
        allow_short_notice=request.allow_short_notice,
        resource_ids=list(resources),
        clinician=request.clinician,
    )
    candidates = _candidates(slot, request.resource_id)
    patient = _patient_for(session, details, location, service, slot.start, request, now)
    if not _is_postgresql(session) and patient_overlaps(
        session, patient.id, slot.start, slot.end, None
    ):
        # PostgreSQL's no_patient_overlap constraint makes the insert below find this.
        raise _PATIENT_OVERLAP
    appointment = Appointment(
        location_id=location.id,
        service_id=service.id,
        patient_id=patient.id,
        resource_id=candidates[0],
        start_at=slot.start,
        end_at=slot.end,
        occupied_start=slot.start - dt.timedelta(minutes=service.prep_minutes),
        occupied_end=slot.end + dt.timedelta(minutes=service.recovery_minutes),
        duration_minutes=service.duration_minutes,
        prep_minutes=service.prep_minutes,
        recovery_minutes=service.recovery_minutes,
        status=AppointmentStatus.BOOKED,
        active=True,
        manage_token=secrets.token_urlsafe(32),
        ics_uid=f"{secrets.token_hex(16)}@chairside",
        ics_sequence=0,
        note=request.note.strip(),
        source=request.source,
        clinician_chosen=request.clinician is not None,
        escort_name=escort.name if escort else None,
        escort_phone=escort.phone if escort else None,
        course_id=request.course_id,
        course_session=request.course_session,
        # Set, not left out: a column left out of the INSERT is read back on first use (one
        # more statement per booking: the response reads the prescriber and nurse).
        clinician_id=None,
        nurse_id=None,
        ride_confirmed_at=None,
        escort_notified_at=None,
        awaiting_review=request.awaiting_review,
        cancel_reason="",
        confirmed_at=None,
        cancelled_at=None,
        created_at=now,
        updated_at=now,
    )
    appointment.location, appointment.service, appointment.patient = location, service, patient
    _assign_staff(session, appointment, slot)
    appointment = _insert(session, appointment, {rid: resources[rid] for rid in candidates})
    notifications.appointment_changed(
        session, appointment, "booked", now, settings, invite=request.send_invite
    )
    return appointment


@functools.cache
def _insert_query(dialect: str) -> Any:
    table = Appointment.__table__
    if dialect == "postgresql":
        pg_insert = postgresql.insert(table).on_conflict_do_nothing(constraint="no_double_booking")
        return pg_insert.returning(table.c.id)
    return sqlite.insert(table).returning(table.c.id)


def _insert(
    session: Session, appointment: Appointment, candidates: dict[int, dict[str, Any]]
) -> Appointment:
    """Insert the new `appointment` on the first candidate resource (id: row, in order of
    preference) the database accepts.

    On PostgreSQL, INSERT ... ON CONFLICT ON CONSTRAINT no_double_booking DO NOTHING: a clash
    with a concurrent booking of the chair inserts nothing and aborts nothing, so the next
    candidate needs no savepoint; the patient's own overlap constraint raises (the caller rolls
    back). On SQLite the write lock makes the checks already done final. The row goes in as one
    plain statement (no unit-of-work flush); the object then joins the session as that row.
    """
    stmt = _insert_query(session.get_bind().dialect.name)
    columns = {c.key: getattr(appointment, c.key) for c in Appointment.__table__.columns}
    del columns["id"]
    for resource_id, resource in candidates.items():
        columns["resource_id"] = resource_id
        try:
            new_id = session.scalar(stmt, columns)
        except IntegrityError as exc:
            if _constraint_name(exc) == "no_patient_overlap":
                raise _PATIENT_OVERLAP from exc
            raise
        if new_id is not None:
            appointment.id, appointment.resource_id = new_id, resource_id
            appointment.resource = attach(session, Resource(**resource))
            make_transient_to_detached(appointment)
            session.add(appointment)
            return appointment
    raise SlotUnavailable("That time has just been taken. Please choose another.")


def inside_change_window(service: Service, start: dt.datetime, now: dt.datetime) -> bool:
    """A visit at `start` is inside the late-cancel window: no online cancel or change."""
    return start - now < dt.timedelta(hours=service.late_cancel_hours)


def _require_patient_window(appointment: Appointment, now: dt.datetime, action: str) -> None:
    if inside_change_window(appointment.service, appointment.start_at, now):
        phone = appointment.location.phone
        call = f" Please call the clinic on {phone}." if phone else " Please call the clinic."
        raise TooLate(
            f"It is too late to {action} this appointment online.{call}",
        )


def _with_snapshot(session: Session, appointment: Appointment, slot: Slot) -> Slot:
    """The slot as the appointment occupies it: its snapshot of duration and buffers stays.

    The engine checked the service's current duration and buffers; where the service has been
    edited since booking, the resources are checked again for the snapshot's occupied time.
    """
    service = appointment.service
    end = slot.start + dt.timedelta(minutes=appointment.duration_minutes)
    if (appointment.duration_minutes, appointment.prep_minutes, appointment.recovery_minutes) == (
        service.duration_minutes,
        service.prep_minutes,
        service.recovery_minutes,
    ):
        return Slot(slot.start, end, slot.free, slot.clinicians, slot.resources)
    busy = availability.busy_intervals(
        session,
        slot.resources,
        slot.start - dt.timedelta(minutes=appointment.prep_minutes),
        end + dt.timedelta(minutes=appointment.recovery_minutes),
        exclude_appointment_id=appointment.id,
    )
    free = tuple(rid for rid in slot.resources if not busy[rid])
    if not free:
        raise SlotUnavailable("That time has just been taken. Please choose another.")
    return Slot(slot.start, end, len(free), slot.clinicians, free)


def reschedule(
    session: Session,
    appointment: Appointment,
    new_start: dt.datetime,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    by_staff: bool = False,
    resource_id: int | None = None,
    override_clearance: bool = False,
) -> Appointment:
    """Move the appointment (same row and token) to `new_start`, atomically."""
    start = _as_utc(new_start)
    if appointment.status != AppointmentStatus.BOOKED:
        raise Conflict(
            "Only a booked appointment can be moved.", {"status": f"is {appointment.status}"}
        )
    if not by_staff:
        _require_patient_window(appointment, now, "change")
    if appointment.course_id is not None:
        # A course's session keeps the course's spacing (courses books through this module).
        from scheduler.services import courses

        courses.check_move(session, appointment, start)
    previous = (appointment.occupied_start, appointment.occupied_end)
    chosen = move_clinician(appointment)
    try:
        slot = _slot_for(
            session,
            appointment.location,
            appointment.service,
            start,
            now,
            allow_short_notice=by_staff,
            exclude_appointment_id=appointment.id,
            moving_from=(appointment.occupied_start, appointment.occupied_end),
            clinician=chosen,
        )
    except SlotUnavailable as exc:
        if chosen is None or appointment.clinician is None:
            raise
        raise SlotUnavailable(
            f"That time is not free with {appointment.clinician.name}, the prescriber chosen"
            " for this visit. Please choose another time.",
            {"start": "the chosen prescriber is not free then"},
        ) from exc
    keep = appointment.clinician_id
    if keep is not None and keep in slot.clinicians:
        # "Any prescriber": the one it has stays when free, else the first free one.
        slot = Slot(slot.start, slot.end, slot.free, (keep,), slot.resources)
    slot = _with_snapshot(session, appointment, slot)
    candidates = _candidates(slot, resource_id)
    if resource_id is None and appointment.resource_id in candidates:
        candidates = (appointment.resource_id,) + tuple(
            c for c in candidates if c != appointment.resource_id
        )
    _check_move(session, appointment, slot.start, override_clearance=override_clearance)
    if patient_overlaps(session, appointment.patient_id, slot.start, slot.end, appointment.id):
        raise _PATIENT_OVERLAP
    _place(session, appointment, candidates, slot)
    _assign_staff(session, appointment, slot)
    appointment.ics_sequence += 1
    appointment.updated_at = now
    appointment.confirmed_at = None
    session.flush()
    notifications.appointment_changed(
        session, appointment, "rescheduled", now, settings, previous=previous
    )
    return appointment


def cancel(
    session: Session,
    appointment: Appointment,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    by_staff: bool = False,
    reason: str = "",
    invite: bool = True,
) -> Appointment:
    """Cancel the visit; `invite` False when the caller mails the CANCEL (a course's one mail)."""
    if appointment.status == AppointmentStatus.CANCELLED:
        return appointment
    if appointment.status != AppointmentStatus.BOOKED and not by_staff:
        raise Conflict("This appointment can no longer be cancelled online.")
    if not by_staff:
        _require_patient_window(appointment, now, "cancel")
    return _set_status(
        session, appointment, AppointmentStatus.CANCELLED, now, settings, reason, invite=invite
    )


def confirm(
    session: Session, appointment: Appointment, now: dt.datetime, *, ride: bool = False
) -> Appointment:
    """The patient confirmed (by SMS reply): recorded on the appointment, nothing else changes.
    `ride`: they also confirmed their ride home (YES to the day-before text)."""
    appointment.confirmed_at = now
    if ride:
        appointment.ride_confirmed_at = now
    appointment.updated_at = now
    session.flush()
    return appointment


TRANSITIONS: dict[str, frozenset[str]] = {
    AppointmentStatus.BOOKED: frozenset({"checked_in", "completed", "no_show", "cancelled"}),
    AppointmentStatus.CHECKED_IN: frozenset({"booked", "completed", "cancelled"}),
    AppointmentStatus.NO_SHOW: frozenset({"booked"}),
    AppointmentStatus.COMPLETED: frozenset({"checked_in"}),
    AppointmentStatus.CANCELLED: frozenset(),
}


# Not before the visit has started: it cannot have been completed or missed yet.
_AFTER_START = frozenset({AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW})


def allowed_statuses(appointment: Appointment, now: dt.datetime) -> frozenset[str]:
    """The statuses staff may give `appointment` now (see set_status)."""
    allowed = TRANSITIONS.get(appointment.status, frozenset())
    if now < appointment.start_at:
        allowed = allowed - _AFTER_START
    return allowed


def set_status(
    session: Session,
    appointment: Appointment,
    status: str,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    reason: str = "",
) -> Appointment:
    """A staff status change (check in, complete, no-show, cancel, undo). A visit is marked
    completed or a no-show only once its start time has come."""
    try:
        target = AppointmentStatus(status)
    except ValueError as exc:
        raise InvalidInput("Unknown status.", {"status": "unknown status"}) from exc
    if target == appointment.status:
        return appointment
    if target not in TRANSITIONS[appointment.status]:
        raise Conflict(
            f"An appointment that is {appointment.status} cannot become {target}.",
            {"status": "not allowed from the current status"},
        )
    if target not in allowed_statuses(appointment, now):
        tz = ZoneInfo(appointment.location.timezone)
        when = appointment.start_at.astimezone(tz).strftime("%a %d %b %H:%M %Z")
        raise Conflict(
            f"This visit starts {when}: it cannot be marked {target} before then.",
            {"status": f"{target} before the visit starts"},
        )
    return _set_status(session, appointment, target, now, settings, reason)


def _set_status(
    session: Session,
    appointment: Appointment,
    target: AppointmentStatus,
    now: dt.datetime,
    settings: ClinicSettings,
    reason: str,
    *,
    invite: bool = True,
) -> Appointment:
    if target in ACTIVE_STATUSES and not appointment.active:
        # Taking the interval back (undoing a no-show) may collide with a later booking: check
        # before touching the row, and let the constraint catch a race on PostgreSQL.
        _lock_resource(session, appointment.resource_id)
        busy = availability.busy_intervals(
            session,
            [appointment.resource_id],
            appointment.occupied_start,
            appointment.occupied_end,
            exclude_appointment_id=appointment.id,
        )
        if busy[appointment.resource_id]:
            raise SlotUnavailable("That chair has been booked or blocked in the meantime.")
        if staffing.breaks_rules(session, appointment):
            raise SlotUnavailable(
                "The staff on shift cannot take this visit back: the time is full."
            )
        if patient_overlaps(
            session,
            appointment.patient_id,
            appointment.start_at,
            appointment.end_at,
            appointment.id,
        ):
            raise _PATIENT_OVERLAP
        # Taking a visit back keeps the spacing rule (its clearance was checked when booked).
        _check_move(session, appointment, appointment.start_at, override_clearance=True)
    try:
        with session.begin_nested():
            appointment.status = target
            appointment.active = target in ACTIVE_STATUSES
            appointment.updated_at = now
            if target == AppointmentStatus.CANCELLED:
                appointment.cancelled_at = now
                appointment.cancel_reason = reason.strip()[:500]
                appointment.ics_sequence += 1
            session.flush()
    except IntegrityError as exc:
        raise SlotUnavailable("That chair has been booked again in the meantime.") from exc
    session.flush()
    change: notifications.Change = (
        "cancelled" if target == AppointmentStatus.CANCELLED else "status"
    )
    notifications.appointment_changed(session, appointment, change, now, settings, invite=invite)
    return appointment


# --- blocks ---------------------------------------------------------------------------------------


def get_resource(session: Session, location: Location, name: str) -> Resource:
    resource = session.scalars(
        select(Resource).where(Resource.location_id == location.id, Resource.name == name)
    ).first()
    if resource is None:
        raise NotFound("No such chair or room at this location.", {"resource": "unknown resource"})
    return resource


def clashing_appointments(
    session: Session, resource: Resource, start: dt.datetime, end: dt.datetime
) -> list[Appointment]:
    """Active appointments whose occupied time meets [start, end) on `resource`."""
    return list(
        session.scalars(
            select(Appointment)
            .where(
                Appointment.resource_id == resource.id,
                Appointment.active.is_(True),
                Appointment.occupied_start < end,
                Appointment.occupied_end > start,
            )
            .order_by(Appointment.start_at)
        )
    )


def create_block(
    session: Session,
    resource: Resource,
    start: dt.datetime,
    end: dt.datetime,
    *,
    reason: str = "",
    staff: StaffUser | None = None,
    now: dt.datetime,
) -> ResourceBlock:
    """Take a resource out of service for [start, end); refused over a booked appointment."""
    start, end = _as_utc(start), _as_utc(end)
    if end <= start:
        raise InvalidInput("The block must end after it starts.", {"end": "must be after start"})
    if len(reason) > 500:
        raise InvalidInput("The reason is too long.", {"reason": "at most 500 characters"})
    if _is_postgresql(session):
        # Exclusive row lock: bookings share-lock the resource before they check blocks.
        session.execute(select(Resource.id).where(Resource.id == resource.id).with_for_update())
    clashes = clashing_appointments(session, resource, start, end)
    if clashes:
        tz = ZoneInfo(resource.location.timezone)
        times = ", ".join(a.start_at.astimezone(tz).strftime("%a %d %b %H:%M") for a in clashes)
        raise Conflict(
            f"{resource.name} has booked appointments in that period: {times}.",
            {"start": "overlaps a booked appointment"},
            appointments=[a.id for a in clashes],
        )
    block = ResourceBlock(
        resource_id=resource.id,
        start_at=start,
        end_at=end,
        reason=reason.strip(),
        created_by_id=staff.id if staff else None,
        created_at=now,
    )
    session.add(block)
    session.flush()
    return block


def delete_block(session: Session, block: ResourceBlock, *, now: dt.datetime | None = None) -> None:
    """Put the resource back in service; the waitlist looks at the freed time (after `now`)."""
    # Read by its key: the block may be detached (and expired) here.
    identity = inspect(block).identity
    freed = (
        session.execute(
            select(Resource.location_id, ResourceBlock.start_at, ResourceBlock.end_at)
            .join(Resource, Resource.id == ResourceBlock.resource_id)
            .where(ResourceBlock.id == identity[0])
        ).first()
        if identity
        else None
    )
    session.delete(block)
    session.flush()
    when = now if now is not None else dt.datetime.now(UTC)
    if freed is not None:
        location_id, start, end = freed
        waitlist.queue_freed(
            session, location_id, max(start, when), end, reason=FreedReason.UNBLOCKED, now=when
        )


__all__ = [
    "BookingRequest",
    "book",
    "cancel",
    "create_block",
    "delete_block",
    "move_clinician",
    "overlaps",
    "reschedule",
    "set_status",
]
