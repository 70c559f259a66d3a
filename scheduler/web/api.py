"""JSON API v1: parse and validate, call one service function, serialize."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from scheduler.extensions import csrf, db
from scheduler.models import (
    Appointment,
    Clinician,
    Course,
    Location,
    Resource,
    ResourceBlock,
    Service,
    ServiceKind,
    StaffRole,
    StaffUser,
)
from scheduler.services import (
    availability,
    booking,
    calendar_view,
    course_view,
    courses,
    day_of,
    idempotency,
    invites,
    reports,
    staffing,
)
from scheduler.services import staff as staff_service
from scheduler.services.errors import DomainError, Forbidden, InvalidInput, NotFound
from scheduler.web import reports as web_reports
from scheduler.web import schemas as s
from scheduler.web import security
from scheduler.web.common import json_error, now, settings
from scheduler.web.openapi import Operation, Registry
from scheduler.web.staff_common import staff_audit

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
security.limit_api(bp)
registry = Registry()
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def route(rule: str, method: str = "GET", **spec: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register a view with Flask and its description with the OpenAPI registry."""
    path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)
    ids = tuple(re.findall(r"<int:([a-z_]+)>", rule))

    def decorator(view: Callable[..., Any]) -> Any:
        registry.add(Operation(method=method, path=f"/api/v1{path}", int_params=ids, **spec))
        return bp.route(rule, methods=[method])(view)

    return decorator


class BadRequest(DomainError):
    code = "invalid"
    http_status = 400


def field_name(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the API names fields: `patient.phone`, `starts[0]`."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _fields(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = field_name(err["loc"]) or "body"
        message = {"missing": "required", "extra_forbidden": "unknown field"}.get(err["type"])
        fields.setdefault(name, message or err["msg"])
    return fields


def parse_body(model: type[M]) -> M:
    # A body sent as JSON that does not parse was already refused (400 bad_request, web.inputs).
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise InvalidInput("The body must be a JSON object.", {"body": "must be a JSON object"})
    try:
        return model.model_validate(payload, context={"now": now()})
    except ValidationError as exc:
        raise InvalidInput("Some fields are invalid.", _fields(exc)) from exc


def parse_query(model: type[M]) -> M:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise BadRequest("Some query parameters are invalid.", _fields(exc)) from exc


def query_checked(read: Callable[[], T]) -> T:
    """Run a read whose refusals (InvalidInput) are about the query parameters (a range that
    ends before it starts, or is too long): those are `400 invalid` naming the parameter, as
    parse_query's are, not 422 (no body was sent)."""
    try:
        return read()
    except InvalidInput as exc:
        raise BadRequest(exc.message, exc.fields) from exc


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> ResponseReturnValue:
    db.session.rollback()
    extra = {"appointments": exc.appointments} if exc.appointments is not None else None
    return json_error(exc.http_status, exc.code, exc.message, exc.fields, extra)


# --- serialization --------------------------------------------------------------------------------


def _local(instant: dt.datetime, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).isoformat()


def appointment_out(appt: Appointment) -> dict[str, Any]:
    tz = ZoneInfo(appt.location.timezone)
    return s.AppointmentOut(
        id=appt.id,
        status=appt.status,
        start=_local(appt.start_at, tz),
        end=_local(appt.end_at, tz),
        timezone=appt.location.timezone,
        location=appt.location.slug,
        service=appt.service.slug,
        resource=s.ResourceOut(kind=appt.resource.kind, name=appt.resource.name),
        manage_token=appt.manage_token,
        manage_url=settings().manage_url(appt.manage_token),
        clinician=_ref(appt.clinician),
        clinician_chosen=appt.clinician_chosen if appt.clinician is not None else None,
        escort=_escort_out(appt),
        escort_missing=day_of.escort_missing(appt),
        ride_confirmed=appt.ride_confirmed_at is not None,
        course=_course_ref(appt),
        awaiting_review=appt.awaiting_review,
    ).model_dump(exclude_none=True)


def _course_ref(appt: Appointment) -> s.CourseRef | None:
    course = courses.course_of(appt)
    if course is None or appt.course_session is None:
        return None
    return s.CourseRef(id=course.id, session=appt.course_session, sessions=course.sessions)


def _badge_ref(badge: course_view.CourseBadge | None) -> s.CourseRef | None:
    if badge is None:
        return None
    return s.CourseRef(id=badge.course_id, session=badge.session, sessions=badge.sessions)


def course_out(course: Course) -> dict[str, Any]:
    """A course with every session (cancelled ones too), as the API and its manage token give it."""
    template = course.template
    return s.CourseOut(
        id=course.id,
        course=template.slug,
        name=template.name,
        status=courses.status_of(course),
        review_state=course.review_state,
        review_after=template.review_after,
        progress=courses.progress_label(course),
        location=course.location.slug,
        timezone=course.location.timezone,
        appointments=[
            s.AppointmentOut.model_validate(appointment_out(a)) for a in courses.sessions(course)
        ],
        manage_token=course.manage_token,
        manage_url=settings().manage_url(course.manage_token),
    ).model_dump(exclude_none=True)


def _escort_out(appt: Appointment) -> s.EscortOut | None:
    if not appt.escort_phone:
        return None
    return s.EscortOut(name=appt.escort_name or "", phone=appt.escort_phone)


def _ref(clinician: Clinician | None) -> s.ClinicianRef | None:
    return None if clinician is None else s.ClinicianRef(id=clinician.id, name=clinician.name)


# --- public ---------------------------------------------------------------------------------------


@route("/openapi.json", summary="This document")
def openapi() -> ResponseReturnValue:
    return jsonify(registry.document("Chairside API", "1.0.0", "/"))


@route("/locations", summary="Locations", response=list[s.LocationOut])
def locations() -> ResponseReturnValue:
    rows = db.session.scalars(
        select(Location).where(Location.active.is_(True)).order_by(Location.name)
    )
    return jsonify(
        [
            s.LocationOut(
                slug=x.slug, name=x.name, timezone=x.timezone, address=x.address, phone=x.phone
            ).model_dump()
            for x in rows
        ]
    )


@route(
    "/locations/<location>/services",
    summary="Services offered at a location",
    response=list[s.ServiceOut],
    errors=(404,),
)
def services(location: str) -> ResponseReturnValue:
    loc = booking.get_location(db.session(), location)
    offered = sorted((x for x in loc.services if x.active), key=lambda x: (x.kind, x.name))
    return jsonify([_service_out(x) for x in offered])


def _service_out(service: Service) -> dict[str, Any]:
    return s.ServiceOut(
        slug=service.slug,
        name=service.name,
        kind=service.kind,  # type: ignore[arg-type]
        duration_minutes=service.duration_minutes,
        description=service.description,
        what_to_bring=service.what_to_bring,
        requires_clearance=service.requires_clearance,
        min_gap_hours=service.min_gap_hours,
        escort_required=service.escort_required,
        instructions=s.InstructionsOut.model_validate(day_of.Instructions.of(service).as_dict()),
    ).model_dump()


@route(
    "/locations/<location>/availability",
    summary="Free start times",
    query=s.AvailabilityQuery,
    response=s.AvailabilityOut,
    errors=(400, 404),
)
def location_availability(location: str) -> ResponseReturnValue:
    query = parse_query(s.AvailabilityQuery)
    cap = current_app.config["AVAILABILITY_MAX_DAYS"]
    if query.days > cap:
        raise BadRequest(f"At most {cap} days at a time.", {"days": f"at most {cap}"})
    loc = booking.get_location(db.session(), location)
    service = booking.get_service(db.session(), loc, query.service)
    tz = ZoneInfo(loc.timezone)
    first = query.from_ or now().astimezone(tz).date()
    consultation = service.kind == ServiceKind.CONSULTATION
    problem = booking.clinician_choice_problem(db.session(), service, query.clinician)
    if problem is not None:
        raise BadRequest(*problem)
    slots = availability.location_slots(
        db.session(), loc, service, first, query.days, now(), clinician=query.clinician
    )
    return jsonify(
        s.AvailabilityOut(
            location=loc.slug,
            service=service.slug,
            timezone=loc.timezone,
            slots=[
                s.SlotOut(
                    start=_local(x.start, tz),
                    end=_local(x.end, tz),
                    resources_free=x.free,
                    clinicians=list(x.clinicians) if consultation else None,
                )
                for x in slots
            ],
        ).model_dump(exclude_none=True)
    )


@route(
    "/locations/<location>/clinicians",
    summary="The prescribers a patient may choose for a service (nurses are not listed)",
    query=s.ClinicianQuery,
    response=list[s.PublicClinicianOut],
    errors=(400, 404),
)
def location_clinicians(location: str) -> ResponseReturnValue:
    query = parse_query(s.ClinicianQuery)
    loc = booking.get_location(db.session(), location)
    service = booking.get_service(db.session(), loc, query.service)
    return jsonify(
        [
            s.PublicClinicianOut(id=c.id, name=c.name, role=c.role, title=c.title).model_dump()
            for c in staffing.prescribers_at(db.session(), loc, service, now=now())
        ]
    )


@route(
    "/appointments",
    "POST",
    summary="Book an appointment",
    body=s.AppointmentIn,
    response=s.AppointmentOut,
    status=201,
    errors=(404, 409, 422),
    headers=("Idempotency-Key",),
)
def create_appointment() -> ResponseReturnValue:
    retry, replay = Idempotent.begin("appointments")
    if replay is not None:
        return replay
    body = parse_body(s.AppointmentIn)
    book = booking.BookingRequest(
        location=body.location,
        service=body.service,
        start=body.start,
        patient=body.patient.details(body.sms_consent),
        note=body.note,
        clinician=body.clinician,
        escort=body.escort.escort() if body.escort else None,
    )
    staff = _override_staff(body.override_clearance, body.location)
    if staff is not None:
        book = dataclasses.replace(book, source="staff", override_clearance=True)
    try:
        appt = booking.book(db.session(), book, now=now(), settings=settings())
    except InvalidInput as exc:
        # One naming scheme for the body's fields: the patient's are `patient.phone`, etc.
        raise InvalidInput(exc.message, _body_fields(exc.fields)) from exc
    if staff is not None:
        api_audit(
            "appointment.booked",
            f"appointment {appt.id}",
            actor=staff,
            location_id=appt.location_id,
            appointment_id=appt.id,
            patient_id=appt.patient_id,
            details={"service": appt.service.slug, "override_clearance": True},
        )
    response = jsonify(appointment_out(appt))
    response.status_code = 201
    return retry.finish(response)


@dataclasses.dataclass(frozen=True)
class Idempotent:
    """A POST that may carry an `Idempotency-Key`: the first answer under a key (in `scope`) is
    remembered, and the same key with the same body gets that answer again (with another body:
    422 `idempotency_mismatch`)."""

    scope: str
    key: str  # "" when the request has none
    digest: str

    @classmethod
    def begin(cls, scope: str) -> tuple[Idempotent, ResponseReturnValue | None]:
        """The request's key, and the remembered answer if there is one. The replay comes
        before validating: a retry after the start has passed still gets the booking."""
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 200:
            raise InvalidInput("Idempotency-Key is too long.", {"Idempotency-Key": "at most 200"})
        digest = idempotency.request_hash(request.get_json(silent=True)) if key else ""
        retry = cls(scope, key, digest)
        if not key:
            return retry, None
        idempotency.lock(db.session(), scope, key)
        return retry, retry.replay()

    def replay(self) -> ResponseReturnValue | None:
        """The answer remembered under the key, or a 422 if it came with another body."""
        record = idempotency.find(db.session(), self.scope, self.key)
        if record is None:
            return None
        if record.request_hash != self.digest:
            return json_error(
                422,
                "idempotency_mismatch",
                "This Idempotency-Key was used with a different request.",
                {"Idempotency-Key": "used with a different body"},
            )
        return Response(
            record.response_body, status=record.status_code, mimetype="application/json"
        )

    def finish(self, response: Response) -> ResponseReturnValue:
        """Remember `response` under the key and commit the request's work."""
        if self.key:
            try:
                idempotency.remember(
                    db.session(),
                    self.scope,
                    self.key,
                    self.digest,
                    response.status_code,
                    response.get_data(as_text=True),
                    now(),
                )
            except IntegrityError:
                # A twin request with the same key won the race: its response is the answer.
                db.session.rollback()
                replay = self.replay()
                if replay is not None:
                    return replay
                raise
        db.session.commit()
        return response


def _override_staff(override: bool, location: str) -> StaffUser | None:
    """Booking past the clearance rule is for staff of that location, with their token."""
    if not override:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = None
    if scheme.lower() == "bearer":
        user = staff_service.staff_for_token(db.session(), token.strip(), now())
    if user is None:
        raise Unauthorized(
            "override_clearance needs a staff API token.", {"override_clearance": "staff only"}
        )
    _staff_location_of(user, location)
    return user


class Unauthorized(DomainError):
    code = "unauthorized"
    http_status = 401


PATIENT_FIELDS = frozenset(s.PatientIn.model_fields)


def _body_fields(fields: dict[str, str]) -> dict[str, str]:
    return {f"patient.{k}" if k in PATIENT_FIELDS else k: v for k, v in fields.items()}


@route(
    "/manage/<token>",
    summary="An appointment, or a treatment course (every session), by its private token",
    response=s.ManageOut,
    errors=(404,),
)
def manage(token: str) -> ResponseReturnValue:
    course = courses.find_by_token(db.session(), token)
    if course is not None:
        return jsonify(course_out(course))
    return jsonify(appointment_out(booking.get_by_token(db.session(), token)))


@route(
    "/manage/<token>/cancel",
    "POST",
    summary="Cancel by token; a course's token cancels every future session outside the "
    "late-cancel window and lists those kept inside it",
    response=s.ManageCancelOut,
    errors=(404, 409),
)
def manage_cancel(token: str) -> ResponseReturnValue:
    course = courses.find_by_token(db.session(), token)
    if course is not None:
        result = courses.cancel_rest(db.session(), course, now=now(), settings=settings())
        db.session.commit()
        return jsonify(
            s.ManageCancelOut(
                status=course.status,
                cancelled=[a.id for a in result.cancelled],
                kept_late=[
                    s.AppointmentOut.model_validate(appointment_out(a)) for a in result.kept_late
                ],
            ).model_dump(exclude_none=True)
        )
    appt = booking.get_by_token(db.session(), token)
    booking.cancel(db.session(), appt, now=now(), settings=settings())
    db.session.commit()
    return jsonify({"status": appt.status})


@route(
    "/manage/<token>/reschedule",
    "POST",
    summary="Move to another time",
    body=s.RescheduleIn,
    response=s.AppointmentOut,
    errors=(404, 409, 422),
)
def manage_reschedule(token: str) -> ResponseReturnValue:
    appt = booking.get_by_token(db.session(), token)
    body = parse_body(s.RescheduleIn)
    booking.reschedule(db.session(), appt, body.start, now=now(), settings=settings())
    db.session.commit()
    return jsonify(appointment_out(appt))


@route(
    "/manage/<token>/invite.ics",
    summary="The current calendar invite",
    content_type="text/calendar",
    errors=(404,),
)
def manage_invite(token: str) -> ResponseReturnValue:
    appt = booking.get_by_token(db.session(), token)
    body = invites.current_invite(appt, settings(), now())
    return Response(
        body,
        mimetype="text/calendar",
        headers={"Content-Disposition": 'attachment; filename="appointment.ics"'},
    )


# --- staff ----------------------------------------------------------------------------------------


def staff_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        user = None
        if scheme.lower() == "bearer":
            user = staff_service.staff_for_token(db.session(), token.strip(), now())
        if user is None:
            return json_error(401, "unauthorized", "A valid staff API token is required.")
        g.staff = user
        return view(*args, **kwargs)

    security.mark_staff_only(wrapped)
    return wrapped


def _staff_location(slug: str) -> Location:
    return _staff_location_of(g.staff, slug)


def _staff_location_of(user: StaffUser, slug: str) -> Location:
    location = db.session.scalars(select(Location).where(Location.slug == slug)).first()
    # Another location's existence is not revealed: unknown and forbidden answer alike.
    if location is None or not user.can_access(location.id):
        raise Forbidden("You do not have access to this location.")
    return location


def api_audit(
    action: str,
    target: str,
    *,
    actor: StaffUser | None = None,
    location_id: int | None = None,
    appointment_id: int | None = None,
    patient_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """The audit entry for a staff write through the API: the pages' entry (`staff_audit`) by
    the token's staff member (or `actor`), with `target` marked "(API)"; the caller commits."""
    staff_audit(
        action,
        f"{target} (API)",
        actor=actor if actor is not None else g.staff,
        location_id=location_id,
        appointment_id=appointment_id,
        patient_id=patient_id,
        details=details,
    )


@route(
    "/locations/<location>/calendar",
    summary="A location's day, per chair and room",
    query=s.CalendarQuery,
    response=s.CalendarOut,
    auth=True,
    errors=(400, 401, 403),
)
@staff_required
def calendar(location: str) -> ResponseReturnValue:
    loc = _staff_location(location)
    query = parse_query(s.CalendarQuery)
    tz = ZoneInfo(loc.timezone)
    day = query.date or now().astimezone(tz).date()
    start, end = calendar_view.local_day_bounds(day, tz)
    resources = db.session.scalars(
        select(Resource)
        .where(Resource.location_id == loc.id)
        .order_by(Resource.position, Resource.id)
    ).all()
    appts = db.session.scalars(
        select(Appointment)
        # Read with the visits, not one statement per patient, service or clinician.
        .options(
            selectinload(Appointment.patient),
            selectinload(Appointment.service),
            selectinload(Appointment.clinician),
            selectinload(Appointment.nurse),
        )
        .where(
            Appointment.location_id == loc.id,
            # What the staff calendar shows: no-shows too (they no longer hold the chair, so
            # `Appointment.active` would leave them out); only cancelled visits go.
            Appointment.status.in_([str(x) for x in calendar_view.SHOWN_STATUSES]),
            Appointment.start_at < end,
            Appointment.end_at > start,
        )
        .order_by(Appointment.start_at)
    ).all()
    blocks = db.session.scalars(
        select(ResourceBlock)
        .join(Resource)
        .where(
            Resource.location_id == loc.id,
            ResourceBlock.start_at < end,
            ResourceBlock.end_at > start,
        )
        .order_by(ResourceBlock.start_at)
    ).all()
    badges = course_view.badges(db.session(), appts)
    out = []
    for res in resources:
        if not res.active and not any(a.resource_id == res.id for a in appts):
            continue
        out.append(
            s.CalendarResourceOut(
                name=res.name,
                kind=res.kind,
                appointments=[
                    s.CalendarAppointmentOut(
                        id=a.id,
                        status=a.status,
                        start=_local(a.start_at, tz),
                        end=_local(a.end_at, tz),
                        occupied_start=_local(a.occupied_start, tz),
                        occupied_end=_local(a.occupied_end, tz),
                        service=a.service.slug,
                        patient=s.PatientOut(
                            name=a.patient.name, phone=a.patient.phone, email=a.patient.email
                        ),
                        note=a.note,
                        clinician=_ref(a.clinician),
                        nurse=_ref(a.nurse),
                        escort=_escort_out(a),
                        escort_missing=day_of.escort_missing(a),
                        confirmed=a.confirmed_at is not None,
                        ride_confirmed=a.ride_confirmed_at is not None,
                        course=_badge_ref(badges.get(a.id)),
                        course_progress=badges[a.id].progress if a.id in badges else None,
                        awaiting_review=a.awaiting_review,
                    )
                    for a in appts
                    if a.resource_id == res.id
                ],
                blocks=[_block_out(b, tz) for b in blocks if b.resource_id == res.id],
            )
        )
    shifts = staffing.shift_intervals(db.session(), loc, start, end)
    load = staffing.nurse_load(db.session(), loc, start, end)
    return jsonify(
        s.CalendarOut(
            date=day.isoformat(),
            timezone=loc.timezone,
            resources=out,
            shifts=[_shift_out(x, tz) for x in shifts],
            nurse_load=[
                s.NurseLoadOut(start=_local(t, tz), patients=p, capacity=c) for t, p, c in load
            ],
        ).model_dump()
    )


def _block_out(block: ResourceBlock, tz: ZoneInfo) -> s.BlockOut:
    return s.BlockOut(
        id=block.id,
        resource=block.resource.name,
        start=_local(block.start_at, tz),
        end=_local(block.end_at, tz),
        reason=block.reason,
    )


@route(
    "/locations/<location>/blocks",
    "POST",
    summary="Take a chair or room out of service",
    body=s.BlockIn,
    response=s.BlockOut,
    status=201,
    auth=True,
    errors=(401, 403, 404, 409, 422),
)
@staff_required
def create_block(location: str) -> ResponseReturnValue:
    loc = _staff_location(location)
    body = parse_body(s.BlockIn)
    resource = booking.get_resource(db.session(), loc, body.resource)
    block = booking.create_block(
        db.session(), resource, body.start, body.end, reason=body.reason, staff=g.staff, now=now()
    )
    api_audit(
        "block.created",
        f"{resource.name} block {block.id}",
        location_id=loc.id,
        details={
            "start": body.start.isoformat(),
            "end": body.end.isoformat(),
            "reason": body.reason,
        },
    )
    db.session.commit()
    return jsonify(_block_out(block, ZoneInfo(loc.timezone)).model_dump()), 201


@route(
    "/locations/<location>/blocks/<int:block_id>",
    "DELETE",
    summary="Put a chair or room back in service",
    status=204,
    auth=True,
    errors=(401, 403, 404),
)
@staff_required
def delete_block(location: str, block_id: int) -> ResponseReturnValue:
    loc = _staff_location(location)
    block = db.session.get(ResourceBlock, block_id)
    if block is None or block.resource.location_id != loc.id:
        raise NotFound("No such block.")
    name = block.resource.name
    booking.delete_block(db.session(), block, now=now())
    api_audit(
        "block.removed",
        f"{name} block {block_id}",
        location_id=loc.id,
    )
    db.session.commit()
    return "", 204


@route(
    "/appointments/<int:appointment_id>/status",
    "POST",
    summary="Check in, complete, no-show or cancel",
    body=s.StatusIn,
    response=s.StaffAppointmentOut,
    auth=True,
    errors=(401, 403, 404, 409, 422),
)
@staff_required
def set_status(appointment_id: int) -> ResponseReturnValue:
    appt = db.session.get(Appointment, appointment_id)
    if appt is None or not g.staff.can_access(appt.location_id):
        # Someone else's appointment is not revealed either.
        raise Forbidden("You do not have access to this appointment.")
    body = parse_body(s.StatusIn)
    before = appt.status
    booking.set_status(
        db.session(), appt, body.status, now=now(), settings=settings(), reason=body.reason
    )
    if appt.status != before:
        api_audit(
            f"appointment.{appt.status}",
            f"appointment {appt.id}",
            location_id=appt.location_id,
            appointment_id=appt.id,
            details={"from": before, "to": appt.status, "reason": body.reason},
        )
    db.session.commit()
    out = appointment_out(appt)
    return jsonify({k: out[k] for k in s.StaffAppointmentOut.model_fields})


# --- clinicians, shifts and staffing rules --------------------------------------------------------


def _require_manager() -> None:
    """Managers and admins change the rota and the rules; front desk and nurses read."""
    if g.staff.role not in (StaffRole.ADMIN, StaffRole.MANAGER):
        raise Forbidden("Only managers and admins can change this.")


def _clinician_out(clinician: Clinician) -> dict[str, Any]:
    return s.ClinicianOut(
        id=clinician.id,
        name=clinician.name,
        role=clinician.role,
        title=clinician.title,
        active=clinician.active,
        staff_user=clinician.staff_user_id,
    ).model_dump()


def _shift_out(shift: staffing.ShiftInterval, tz: ZoneInfo) -> s.ShiftOut:
    return s.ShiftOut(
        id=shift.id,
        clinician=s.ShiftClinicianOut(id=shift.clinician_id, name=shift.name, role=shift.role),
        start=_local(shift.start, tz),
        end=_local(shift.end, tz),
    )


@route(
    "/clinicians",
    summary="Every clinician (prescribers and nurses)",
    response=list[s.ClinicianOut],
    auth=True,
    errors=(401,),
)
@staff_required
def clinicians() -> ResponseReturnValue:
    return jsonify([_clinician_out(c) for c in staffing.list_clinicians(db.session())])


@route(
    "/clinicians",
    "POST",
    summary="Add a clinician (managers and admins)",
    body=s.ClinicianIn,
    response=s.ClinicianOut,
    status=201,
    auth=True,
    errors=(401, 403, 422),
)
@staff_required
def create_clinician() -> ResponseReturnValue:
    _require_manager()
    body = parse_body(s.ClinicianIn)
    clinician = staffing.create_clinician(
        db.session(),
        name=body.name,
        role=body.role,
        title=body.title,
        staff_user_id=body.staff_user,
    )
    api_audit(
        "clinician.created",
        f"clinician {clinician.id}",
        details={
            "name": clinician.name,
            "role": clinician.role,
            "staff_user": clinician.staff_user_id,
        },
    )
    db.session.commit()
    return jsonify(_clinician_out(clinician)), 201


@route(
    "/clinicians/<int:clinician_id>",
    "PATCH",
    summary="Edit, deactivate or link a clinician to a staff user (managers and admins; "
    "409 clinician_in_use listing the booked visits that need them)",
    body=s.ClinicianPatchIn,
    response=s.ClinicianOut,
    auth=True,
    errors=(401, 403, 404, 409, 422),
)
@staff_required
def patch_clinician(clinician_id: int) -> ResponseReturnValue:
    _require_manager()
    clinician = db.session.get(Clinician, clinician_id)
    if clinician is None:
        raise NotFound("No such clinician.", {"clinician": "unknown clinician"})
    body = parse_body(s.ClinicianPatchIn)
    change = staffing.ClinicianChange(
        name=body.name,
        title=body.title,
        active=body.active,
        link="staff_user" in body.model_fields_set,
        staff_user_id=body.staff_user,
    )
    edit = staffing.update_clinician(db.session(), clinician, change, now=now())
    if edit.changed:
        api_audit("clinician.updated", f"clinician {clinician.id}", details=edit.changed)
        staffing.record_handed_on(db.session(), edit, actor=g.staff, at=now())
    db.session.commit()
    return jsonify(_clinician_out(clinician))


@route(
    "/locations/<location>/shifts",
    summary="Shifts at a location on local dates from..to (inclusive)",
    query=s.ShiftsQuery,
    response=list[s.ShiftOut],
    auth=True,
    errors=(400, 401, 403),
)
@staff_required
def shifts(location: str) -> ResponseReturnValue:
    loc = _staff_location(location)
    query = parse_query(s.ShiftsQuery)
    found = query_checked(
        lambda: staffing.location_shifts(db.session(), loc, query.from_, query.to)
    )
    tz = ZoneInfo(loc.timezone)
    return jsonify([_shift_out(x, tz).model_dump() for x in found])


@route(
    "/locations/<location>/shifts",
    "POST",
    summary="Add a one-off shift (409 clinician_busy if the clinician is on shift anywhere then)",
    body=s.ShiftIn,
    response=s.ShiftOut,
    status=201,
    auth=True,
    errors=(401, 403, 404, 409, 422),
)
@staff_required
def create_shift(location: str) -> ResponseReturnValue:
    loc = _staff_location(location)
    _require_manager()
    body = parse_body(s.ShiftIn)
    shift = staffing.add_shift(
        db.session(), loc, body.clinician, body.start, body.end, now=now(), viewer=g.staff
    )
    api_audit(
        "shift.created",
        f"shift {shift.id}",
        location_id=loc.id,
        details={
            "clinician": shift.name,
            "start": body.start.isoformat(),
            "end": body.end.isoformat(),
        },
    )
    db.session.commit()
    return jsonify(_shift_out(shift, ZoneInfo(loc.timezone)).model_dump()), 201


@route(
    "/locations/<location>/shifts/<shift_id>",
    "DELETE",
    summary="Remove a shift (409 shift_in_use listing the booked visits that need it)",
    status=204,
    auth=True,
    errors=(401, 403, 404, 409),
)
@staff_required
def delete_shift(location: str, shift_id: str) -> ResponseReturnValue:
    loc = _staff_location(location)
    _require_manager()
    removed = staffing.delete_shift(db.session(), loc, shift_id, now=now())
    shift = removed.shift
    staffing.record_nurse_changes(db.session(), loc, [removed], actor=g.staff, at=now())
    api_audit(
        "shift.removed",
        f"shift {shift.id}",
        location_id=loc.id,
        details={"clinician": shift.name},
    )
    db.session.commit()
    return "", 204


@route(
    "/locations/<location>/staffing",
    summary="The location's staffing rules",
    response=s.StaffingOut,
    auth=True,
    errors=(401, 403),
)
@staff_required
def get_staffing(location: str) -> ResponseReturnValue:
    loc = _staff_location(location)
    return jsonify(s.StaffingOut(**staffing.staffing_of(loc)).model_dump())


@route(
    "/locations/<location>/staffing",
    "PATCH",
    summary="Change staffing rules (409 staffing_in_use listing the booked visits it would break)",
    body=s.StaffingIn,
    response=s.StaffingOut,
    auth=True,
    errors=(401, 403, 409, 422),
)
@staff_required
def patch_staffing(location: str) -> ResponseReturnValue:
    loc = _staff_location(location)
    _require_manager()
    body = parse_body(s.StaffingIn)
    changes = body.model_dump(exclude_none=True)
    before = staffing.staffing_of(loc)
    after = staffing.patch_staffing(db.session(), loc, changes, now=now())
    if after != before:
        api_audit(
            "staffing.changed",
            f"{loc.name} staffing",
            location_id=loc.id,
            details={k: v for k, v in after.items() if before[k] != v},
        )
    db.session.commit()
    return jsonify(s.StaffingOut(**after).model_dump())


@route(
    "/appointments/<int:appointment_id>/ready",
    "POST",
    summary="Text the escort that the patient is ready to be picked up (once per visit)",
    response=s.ReadyOut,
    auth=True,
    errors=(401, 403, 404, 409),
)
@staff_required
def escort_ready(appointment_id: int) -> ResponseReturnValue:
    """200 when queued; 200 with `already_sent` and no second text when called again; 409
    `no_escort` or `escort_opted_out`."""
    appt = db.session.get(Appointment, appointment_id)
    if appt is None:
        raise NotFound("No such appointment.", {"id": "unknown appointment"})
    if not g.staff.can_access(appt.location_id):
        raise Forbidden("You do not have access to this appointment.")
    queued = day_of.mark_ready(db.session(), appt, now())
    if queued:
        api_audit(
            "appointment.escort_ready",
            f"appointment {appt.id}",
            location_id=appt.location_id,
            appointment_id=appt.id,
        )
    db.session.commit()
    notified = appt.escort_notified_at or now()
    return jsonify(
        s.ReadyOut(
            id=appt.id,
            escort_notified_at=_local(notified, ZoneInfo(appt.location.timezone)),
            already_sent=not queued,
        ).model_dump()
    )


# The patient and course endpoints live in their own modules on this blueprint.
from scheduler.web import api_courses as api_courses  # noqa: E402
from scheduler.web import api_patients as api_patients  # noqa: E402
from scheduler.web import api_waitlist as api_waitlist  # noqa: E402


@route(
    "/locations/<location>/utilisation",
    summary="Chairs (open vs booked) and nurses (capacity vs load) per weekday x local hour, "
    "no-show and late-cancel rates, for local dates from..to; Accept: text/csv gives the cells",
    query=s.UtilisationQuery,
    response=s.UtilisationOut,
    also=("text/csv",),
    auth=True,
    errors=(400, 401, 403),
)
@staff_required
def utilisation(location: str) -> ResponseReturnValue:
    loc = _staff_location(location)
    query = parse_query(s.UtilisationQuery)
    report = query_checked(
        lambda: reports.utilisation(db.session(), loc, query.from_, query.to, now=now())
    )
    if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
        return web_reports.csv_response(report, loc.slug)
    return jsonify(
        s.UtilisationOut(
            timezone=report.timezone,
            cells=[s.UtilisationCellOut(**dataclasses.asdict(c)) for c in report.cells],
            no_show_rate=report.no_show_rate,
            late_cancel_rate=report.late_cancel_rate,
        ).model_dump()
    )
