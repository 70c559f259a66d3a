"""Patient identity: validated, normalized contact details; find or create the patient row."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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


def validate_details(details: PatientDetails) -> PatientDetails:
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
    try:
        email = normalize_email(details.email)
    except InvalidInput as exc:
        fields.update(exc.fields)
    if fields:
        raise InvalidInput("Some details need correcting.", fields)
    return PatientDetails(name, phone, email, details.sms_consent)


def find_or_create(session: Session, details: PatientDetails) -> tuple[Patient, bool]:
    """The patient with these (validated) details, and whether this call created the row.

    A concurrent twin insert is tolerated: the loser reads the winner's row.
    """
    query = select(Patient).where(
        Patient.phone == details.phone, Patient.email == details.email, Patient.name == details.name
    )
    patient = session.scalars(query).first()
    created = False
    if patient is None:
        created = True
        try:
            with session.begin_nested():
                patient = Patient(
                    name=details.name,
                    phone=details.phone,
                    email=details.email,
                    sms_consent=details.sms_consent,
                )
                session.add(patient)
        except IntegrityError:
            patient = session.scalars(query).one()
            created = False
    # The latest booking's choice wins: unticking the box stops reminders for this patient.
    patient.sms_consent = details.sms_consent
    return patient, created
