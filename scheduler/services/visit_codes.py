""" "My visits": a patient proves they hold a phone with a one-time code sent by SMS, then
picks who they are among the people on that phone (name + birth date).

No account enumeration: asking for a code answers alike whether or not the number is known
(a code is only sent to a number with patients). Codes expire after CODE_MINUTES; a phone gets
at most SENDS_PER_HOUR codes an hour, one a minute; MAX_FAILURES wrong codes lock that phone's
codes for LOCK_MINUTES. Only a hash of a code is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from scheduler.models import Appointment, AppointmentStatus, Patient, VisitCode
from scheduler.services.errors import DomainError, InvalidInput
from scheduler.services.patients import normalize_phone

CODE_MINUTES = 10
SENDS_PER_HOUR = 5
RESEND_SECONDS = 60
MAX_FAILURES = 5
LOCK_MINUTES = 15


class TooManyAttempts(DomainError):
    code = "rate_limited"
    http_status = 429


@dataclass(frozen=True)
class CodeRequest:
    phone: str  # E.164
    code: str | None  # to send; None when no patient has this phone (answer alike)


def _hash(phone: str, code: str) -> str:
    return hashlib.sha256(f"{phone}:{code}".encode()).hexdigest()


def _row(session: Session, phone: str, now: dt.datetime) -> VisitCode:
    """The phone's row, created when new, locked for this transaction (PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(VisitCode.__table__)
        .values(phone=phone, code_hash="", failures=0, sends=0)
        .on_conflict_do_nothing(index_elements=["phone"])
    )
    query = select(VisitCode).where(VisitCode.phone == phone)
    if dialect == "postgresql":
        query = query.with_for_update()
    row = session.scalars(query.execution_options(populate_existing=True)).one()
    return row


def _locked(row: VisitCode, now: dt.datetime) -> None:
    if row.locked_until is not None and row.locked_until > now:
        minutes = max(1, int((row.locked_until - now).total_seconds() // 60) + 1)
        raise TooManyAttempts(
            f"Too many wrong codes. Please try again in {minutes} minutes.",
            {"code": "locked"},
        )


def has_patients(session: Session, phone: str) -> bool:
    return (
        session.scalars(
            select(Patient.id).where(Patient.phone == phone, Patient.merged_into_id.is_(None))
        ).first()
        is not None
    )


def request_code(session: Session, raw_phone: str, *, now: dt.datetime) -> CodeRequest:
    """A new code for the phone (rate-limited), or none when the number is unknown."""
    phone = normalize_phone(raw_phone)
    row = _row(session, phone, now)
    _locked(row, now)
    if row.last_sent_at is not None and now - row.last_sent_at < dt.timedelta(
        seconds=RESEND_SECONDS
    ):
        raise TooManyAttempts("A code was just sent. Please wait a minute before asking again.")
    if row.window_start is None or now - row.window_start >= dt.timedelta(hours=1):
        row.window_start, row.sends = now, 0
    if row.sends >= SENDS_PER_HOUR:
        raise TooManyAttempts("Too many codes asked for. Please try again in an hour.")
    row.sends += 1
    row.last_sent_at = now
    code = None
    if has_patients(session, phone):
        code = f"{secrets.randbelow(10**6):06d}"
        row.code_hash = _hash(phone, code)
        row.expires_at = now + dt.timedelta(minutes=CODE_MINUTES)
    else:
        row.code_hash, row.expires_at = "", None
    session.flush()
    return CodeRequest(phone, code)


def verify_code(session: Session, phone: str, code: str, *, now: dt.datetime) -> list[Patient]:
    """The people on `phone` once `code` is right (the code is then used up); a wrong or
    expired code counts towards the lock. The caller commits either way."""
    row = _row(session, phone, now)
    _locked(row, now)
    given = "".join(ch for ch in code if ch.isdigit())[:6]
    right = (
        row.code_hash
        and row.expires_at is not None
        and row.expires_at > now
        and hmac.compare_digest(row.code_hash, _hash(phone, given))
    )
    if not right:
        row.failures += 1
        if row.failures >= MAX_FAILURES:
            row.failures, row.code_hash, row.expires_at = 0, "", None
            row.locked_until = now + dt.timedelta(minutes=LOCK_MINUTES)
        session.flush()
        raise InvalidInput("That code is not right, or it has expired.", {"code": "wrong code"})
    row.code_hash, row.expires_at, row.failures = "", None, 0
    session.flush()
    return people(session, phone)


def people(session: Session, phone: str) -> list[Patient]:
    return list(
        session.scalars(
            select(Patient)
            .where(Patient.phone == phone, Patient.merged_into_id.is_(None))
            .order_by(Patient.name_key, Patient.id)
        )
    )


def choose(session: Session, phone: str, patient_id: int, date_of_birth: dt.date) -> Patient:
    """The person on `phone` with this id and birth date; InvalidInput otherwise."""
    for patient in people(session, phone):
        # A record from before birth dates were asked has none: the code proved the phone.
        if patient.id == patient_id and patient.date_of_birth in (date_of_birth, None):
            return patient
    raise InvalidInput("That date of birth does not match.", {"date_of_birth": "does not match"})


def upcoming(session: Session, patient_id: int, now: dt.datetime) -> list[Appointment]:
    return list(
        session.scalars(
            select(Appointment)
            .where(
                Appointment.patient_id == patient_id,
                Appointment.status == AppointmentStatus.BOOKED,
                Appointment.start_at >= now,
            )
            .order_by(Appointment.start_at)
        )
    )
