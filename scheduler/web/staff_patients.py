"""Staff portal: find a patient, their record (visits at the reader's locations, clearances,
SMS opt-out, notes, audit), edit details, record a clearance, merge a duplicate.

A patient with no visit at the reader's locations is "not found" (404), as an unknown id is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from scheduler.extensions import db
from scheduler.models import Appointment, Patient, Service
from scheduler.services import audit, course_view, patient_sms, patients, reminders
from scheduler.services.errors import DomainError, InvalidInput, NotFound
from scheduler.web.auth import current_staff
from scheduler.web.common import now, settings
from scheduler.web.inputs import MAX_ID, marks_form_problems, query_id
from scheduler.web.staff_common import (
    PageError,
    form_value,
    install_pages,
    login,
    parse_date,
    refuse_characters,
    staff_audit,
    visible_locations,
)

bp = Blueprint("staff_patients", __name__, url_prefix="/staff/patients")
install_pages(bp)


def _patient(patient_id: int) -> Patient:
    try:
        if patient_id > MAX_ID:
            raise NotFound("No such patient.")
        return patients.visible_patient(db.session(), current_staff(), patient_id)
    except NotFound as exc:
        raise PageError("There is no such patient.", status=404) from exc


@bp.route("")
@login
def search() -> ResponseReturnValue:
    q = request.args.get("q", "").strip()[:100]
    found = patients.search(db.session(), current_staff(), q) if q else []
    return render_template("staff/patients.html", q=q, found=found)


def _visit_rows(appts: list[Appointment]) -> list[dict[str, Any]]:
    rows = []
    for appt in appts:
        tz = ZoneInfo(appt.location.timezone)
        rows.append(
            {
                "id": appt.id,
                "when": appt.start_at.astimezone(tz).strftime("%a %d %b %Y %H:%M %Z"),
                "location": appt.location.name,
                "service": appt.service.name,
                "status": appt.status,
            }
        )
    return rows


def _render_record(
    patient: Patient,
    error: DomainError | PageError | None = None,
    status: int = 200,
    posted: Mapping[str, str] | None = None,
) -> ResponseReturnValue:
    """The record; after a refused change, `posted` (the form's fields as typed) fills the form
    it came from."""
    session = db.session()
    staff = current_staff()
    appts = patients.appointments_of(session, staff, patient.id)
    upcoming = sorted((a for a in appts if a.start_at >= now()), key=lambda a: a.start_at)
    past = [a for a in appts if a.start_at < now()]
    clearances = patients.clearances_of(session, patient.id)
    today = now().date()
    entries = audit.for_patient(session, patient.id, [a.id for a in appts])
    locations = visible_locations(staff)
    # Replies not about a visit are shown in the zone of the patient's latest visit here.
    zone = appts[0].location.timezone if appts else locations[0].timezone if locations else "UTC"
    services = list(
        session.scalars(
            select(Service).where(Service.active.is_(True)).order_by(Service.kind, Service.name)
        )
    )
    return (
        render_template(
            "staff/patient.html",
            patient=patient,
            upcoming=_visit_rows(upcoming),
            past=_visit_rows(past),
            clearances=[
                {
                    "service": c.service.name,
                    "until": c.until.isoformat(),
                    "current": c.until >= today,
                    "by": c.recorded_by_name,
                    "note": c.note,
                }
                for c in clearances
            ],
            opted_out=reminders.is_opted_out(session, patient.phone),
            sms_history=patient_sms.history(session, patient.phone, appts, ZoneInfo(zone)),
            entries=entries,
            details_of=audit.details_of,
            locations=locations,
            zones={x.id: x.timezone for x in locations},
            zone=zone,
            clearance_services=[s for s in services if s.requires_clearance],
            may_clear=patients.may_record_clearance(staff),
            courses=course_view.patient_lines(session, patient.id, [x.id for x in locations]),
            error=error,
            posted=posted or {},
        ),
        status,
    )


@bp.route("/<int:patient_id>")
@login
def record(patient_id: int) -> ResponseReturnValue:
    return _render_record(_patient(patient_id))


def _patient_post(
    patient: Patient, action: str, change: Callable[[], dict[str, Any]]
) -> ResponseReturnValue:
    """Run a change; on a DomainError roll back and show the record with it; else audit,
    commit, say so, and go back to the record (303)."""
    try:
        refuse_characters()
        details = change()
    except (DomainError, PageError) as exc:
        db.session.rollback()
        db.session.refresh(patient)
        status = exc.status if isinstance(exc, PageError) else exc.http_status
        posted = {k: form_value(k, 5000) for k in request.form if k != "csrf_token"}
        return _render_record(patient, exc, status, posted)
    kept = details.pop("kept", patient.id)
    staff_audit(action, f"patient {kept}", patient_id=kept, details=details)
    db.session.commit()
    flash("Saved.")
    return redirect(url_for("staff_patients.record", patient_id=kept), 303)


@bp.route("/<int:patient_id>", methods=["POST"])
@marks_form_problems
@login
def edit(patient_id: int) -> ResponseReturnValue:
    patient = _patient(patient_id)

    def change() -> dict[str, Any]:
        dob = parse_date(form_value("date_of_birth"), "date_of_birth")
        patients.lock_patient(db.session(), patient.id)
        changed = patients.update_details(
            db.session(),
            patient,
            name=form_value("name", 200),
            phone=form_value("phone", 40),
            email=form_value("email", 320),
            date_of_birth=dob,
            notes=request.form.get("notes", "")[:5000],
            today=now().date(),
            min_age_years=settings().patient_min_age_years,
        )
        return {"fields": sorted(changed)}  # which fields, never their values

    return _patient_post(patient, "patient.edited", change)


@bp.route("/<int:patient_id>/clearances", methods=["POST"])
@marks_form_problems
@login
def clear(patient_id: int) -> ResponseReturnValue:
    patient = _patient(patient_id)

    def change() -> dict[str, Any]:
        until = parse_date(form_value("until"), "until")
        if until is None:
            raise InvalidInput("Choose until when.", {"until": "required"})
        made = patients.record_clearances(
            db.session(),
            patient,
            request.form.getlist("services"),
            until,
            staff=current_staff(),
            note=form_value("note", 2000),
            now=now(),
        )
        return {"services": [c.service.slug for c in made], "until": until.isoformat()}

    return _patient_post(patient, "patient.cleared", change)


@bp.route("/<int:patient_id>/merge", methods=["POST"])
@marks_form_problems
@login
def merge(patient_id: int) -> ResponseReturnValue:
    patient = _patient(patient_id)

    def change() -> dict[str, Any]:
        duplicate = query_id(form_value("duplicate", 12))
        if duplicate is None:
            raise InvalidInput("Enter the duplicate's record number.", {"duplicate": "a number"})
        result = patients.merge(db.session(), patient.id, duplicate, staff=current_staff())
        return {
            "kept": patient.id,
            "duplicate": duplicate,
            "appointments": result.appointments,
            "clearances": result.clearances,
            "audit_entries": result.audit_entries,
            "opted_out": result.opted_out,
        }

    return _patient_post(patient, "patient.merged", change)


def prefill(patient_id: str) -> dict[str, str]:
    """A found patient's details for the staff booking form (empty when not visible)."""
    number = query_id(patient_id)
    if number is None:
        return {}
    try:
        patient = patients.visible_patient(db.session(), current_staff(), number)
    except NotFound:
        return {}
    return {
        "name": patient.name,
        "phone": patient.phone,
        "email": patient.email,
        "date_of_birth": patient.date_of_birth.isoformat() if patient.date_of_birth else "",
        # Booking again keeps their reminder choice unless staff untick it.
        "sms_consent": "on" if patient.sms_consent else "",
    }


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


__all__ = ["bp", "init_app", "prefill"]
