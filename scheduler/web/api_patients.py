"""JSON API v1, staff: patients (search, record, edit, clearances, merge).

Registered on the API blueprint through `web/api.py::route`. A patient without a visit at the
staff member's locations is answered 404, as an unknown id is: no names leak across locations.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import g, jsonify
from flask.typing import ResponseReturnValue

from scheduler.extensions import db
from scheduler.models import Appointment, Clearance, Patient
from scheduler.services import patients, reminders
from scheduler.services.errors import NotFound
from scheduler.web import schemas as s
from scheduler.web.api import api_audit, parse_body, parse_query, route, staff_required
from scheduler.web.common import now, settings

MAX_ID = 2**31 - 1


def _patient(patient_id: int) -> Patient:
    if patient_id > MAX_ID:
        raise NotFound("No such patient.")
    return patients.visible_patient(db.session(), g.staff, patient_id)


def summary_out(patient: Patient) -> dict[str, Any]:
    return s.PatientSummaryOut(
        id=patient.id,
        name=patient.name,
        date_of_birth=patient.date_of_birth,
        phone=patient.phone,
        email=patient.email,
    ).model_dump(mode="json")


def clearance_out(clearance: Clearance) -> s.ClearanceOut:
    return s.ClearanceOut(
        id=clearance.id,
        service=clearance.service.slug,
        until=clearance.until,
        recorded_by=clearance.recorded_by_name,
        note=clearance.note,
        created_at=clearance.created_at.isoformat(),
    )


def _appointment_out(appt: Appointment) -> s.PatientAppointmentOut:
    tz = ZoneInfo(appt.location.timezone)
    return s.PatientAppointmentOut(
        id=appt.id,
        status=appt.status,
        start=appt.start_at.astimezone(tz).isoformat(),
        end=appt.end_at.astimezone(tz).isoformat(),
        location=appt.location.slug,
        service=appt.service.slug,
    )


def record_out(patient: Patient) -> dict[str, Any]:
    session = db.session()
    return s.PatientRecordOut(
        id=patient.id,
        name=patient.name,
        date_of_birth=patient.date_of_birth,
        phone=patient.phone,
        email=patient.email,
        notes=patient.notes,
        sms_consent=patient.sms_consent,
        sms_opted_out=reminders.is_opted_out(session, patient.phone),
        appointments=[
            _appointment_out(a) for a in patients.appointments_of(session, g.staff, patient.id)
        ],
        clearances=[clearance_out(c) for c in patients.clearances_of(session, patient.id)],
    ).model_dump(mode="json")


@route(
    "/patients",
    summary="Find patients seen at your locations (name, phone, e-mail or birth date)",
    query=s.PatientsQuery,
    response=list[s.PatientSummaryOut],
    auth=True,
    errors=(400, 401),
)
@staff_required
def search_patients() -> ResponseReturnValue:
    query = parse_query(s.PatientsQuery)
    found = patients.search(db.session(), g.staff, query.q)
    return jsonify([summary_out(p) for p in found])


@route(
    "/patients/<int:patient_id>",
    summary="A patient's record: visits at your locations, clearances, SMS opt-out",
    response=s.PatientRecordOut,
    auth=True,
    errors=(401, 404),
)
@staff_required
def get_patient(patient_id: int) -> ResponseReturnValue:
    return jsonify(record_out(_patient(patient_id)))


@route(
    "/patients/<int:patient_id>",
    "PATCH",
    summary="Edit a patient's details",
    body=s.PatientPatchIn,
    response=s.PatientRecordOut,
    auth=True,
    errors=(401, 404, 422),
)
@staff_required
def patch_patient(patient_id: int) -> ResponseReturnValue:
    patient = _patient(patient_id)
    body = parse_body(s.PatientPatchIn)
    patients.lock_patient(db.session(), patient.id)
    changes = patients.update_details(
        db.session(),
        patient,
        name=body.name,
        phone=body.phone,
        email=body.email,
        date_of_birth=body.date_of_birth,
        notes=body.notes,
        today=now().date(),
        min_age_years=settings().patient_min_age_years,
    )
    if changes:
        api_audit(
            "patient.edited",
            f"patient {patient.id}",
            patient_id=patient.id,
            # Which fields changed, not their values: no phone numbers or e-mails in the log.
            details={"fields": sorted(changes)},
        )
    db.session.commit()
    return jsonify(record_out(patient))


@route(
    "/patients/<int:patient_id>/clearances",
    "POST",
    summary="Record a prescriber's clearance for services until a date",
    body=s.ClearancesIn,
    response=s.ClearancesOut,
    status=201,
    auth=True,
    errors=(401, 403, 404, 422),
)
@staff_required
def create_clearances(patient_id: int) -> ResponseReturnValue:
    patient = _patient(patient_id)
    body = parse_body(s.ClearancesIn)
    made = patients.record_clearances(
        db.session(), patient, body.services, body.until, staff=g.staff, note=body.note, now=now()
    )
    api_audit(
        "patient.cleared",
        f"patient {patient.id}",
        patient_id=patient.id,
        details={"services": [c.service.slug for c in made], "until": body.until.isoformat()},
    )
    db.session.commit()
    out = s.ClearancesOut(clearances=[clearance_out(c) for c in made])
    return jsonify(out.model_dump(mode="json")), 201


@route(
    "/patients/<int:patient_id>/merge",
    "POST",
    summary="Merge a duplicate into this patient (visits, clearances, opt-out, audit move)",
    body=s.MergeIn,
    response=s.PatientRecordOut,
    auth=True,
    errors=(401, 404, 422),
)
@staff_required
def merge_patient(patient_id: int) -> ResponseReturnValue:
    kept = _patient(patient_id)
    body = parse_body(s.MergeIn)
    result = patients.merge(db.session(), kept.id, body.duplicate, staff=g.staff)
    api_audit(
        "patient.merged",
        f"patient {body.duplicate} into {kept.id}",
        patient_id=kept.id,
        details={
            "duplicate": body.duplicate,
            "appointments": result.appointments,
            "clearances": result.clearances,
            "audit_entries": result.audit_entries,
            "opted_out": result.opted_out,
        },
    )
    db.session.commit()
    return jsonify(record_out(result.kept))
