"""Patient identity: validated, normalized contact details; find or create the patient row."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from scheduler.db import attach
from scheduler.models import Patient
from scheduler.services.errors import InvalidInput

DEFAULT_REGION = "US"


@dataclass(frozen=True)
class PatientDetails:
    name: str
    phone: str
    email: str
    sms_consent: bool = False


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


def validate_details(details: PatientDetails, *, require_email: bool = True) -> PatientDetails:
    """Normalized details, or InvalidInput naming every bad field. Staff booking for a patient
    on the phone may leave the e-mail empty (`require_email=False`): no invite is mailed then."""
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
    if fields:
        raise InvalidInput("Some details need correcting.", fields)
    return PatientDetails(name, phone, email, details.sms_consent)


@functools.cache
def _upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Patient.__table__).values(
        name=bindparam("name"),
        phone=bindparam("phone"),
        email=bindparam("email"),
        sms_consent=bindparam("sms_consent"),
        created_at=bindparam("now"),
    )
    return stmt.on_conflict_do_update(
        index_elements=["phone", "email", "name"],
        set_={"sms_consent": stmt.excluded.sms_consent},
    ).returning(*Patient.__table__.columns)


def upsert(session: Session, details: PatientDetails, now: dt.datetime) -> Patient:
    """The patient with these (validated) details, created when new, in one statement.

    INSERT ... ON CONFLICT DO UPDATE: a concurrent twin waits for the first insert and then
    updates the same row (on PostgreSQL it holds that row's lock until it commits, so two
    bookings for one patient are serialized). The latest booking's SMS choice wins: unticking
    the box stops reminders for this patient.
    """
    params = {
        "name": details.name,
        "phone": details.phone,
        "email": details.email,
        "sms_consent": details.sms_consent,
        "now": now,
    }
    row = session.execute(_upsert(session.get_bind().dialect.name), params).one()
    return attach(session, Patient(**row._mapping), written=True)
