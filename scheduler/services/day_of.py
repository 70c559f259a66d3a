"""The day of the visit: the escort who takes the patient home, the "ready" text to them, and a
service's pre-visit instructions (fasting, arriving early, no driving).

The escort's text is a reminder row of kind `escort_ready` written in the caller's transaction
and sent by the reminder worker (same claim, recheck, send and status callback path): it goes
once per visit, never to a number that replied STOP, and names neither the treatment nor the
service.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from scheduler.models import (
    Appointment,
    AppointmentStatus,
    Reminder,
    ReminderKind,
    ReminderStatus,
    Service,
)
from scheduler.services.errors import Conflict, InvalidInput
from scheduler.services.patients import normalize_phone
from scheduler.services.reminders import is_opted_out


@dataclass(frozen=True)
class Escort:
    name: str
    phone: str


def validate_escort(escort: Escort | None, *, required: bool) -> Escort | None:
    """The escort normalized (None when not given and not required), or InvalidInput naming
    `escort`, `escort.name` or `escort.phone` (a mobile number, checked like a patient's)."""
    if escort is None or (not escort.name.strip() and not escort.phone.strip()):
        if required:
            raise InvalidInput(
                "Tell us who will take you home.", {"escort": "required for this service"}
            )
        return None
    fields: dict[str, str] = {}
    name = " ".join(escort.name.split())
    if not name:
        fields["escort.name"] = "required"
    elif len(name) > 200:
        fields["escort.name"] = "at most 200 characters"
    phone = ""
    try:
        phone = normalize_phone(escort.phone)
    except InvalidInput as exc:
        fields["escort.phone"] = exc.fields.get("phone", "not a phone number")
    if fields:
        raise InvalidInput("The escort's details need correcting.", fields)
    return Escort(name, phone)


def escort_missing(appointment: Appointment) -> bool:
    """The service needs an escort and the visit has none."""
    return bool(appointment.service.escort_required and not appointment.escort_phone)


def needs_ride(service: Service) -> bool:
    """The patient may not drive home: the day-before text asks them to confirm their ride."""
    return bool(service.escort_required or service.no_driving)


def escort_label(appointment: Appointment) -> str | None:
    """What staff lists show for the escort: who and whether the ride is confirmed, "Missing"
    when the service needs one and none was given, None when the service needs none."""
    if appointment.escort_phone:
        ride = "ride confirmed" if appointment.ride_confirmed_at else "ride not confirmed"
        return f"{appointment.escort_name} ({ride})"
    if appointment.service.escort_required:
        return "Missing"
    return None


class NoEscort(Conflict):
    code = "no_escort"


class EscortOptedOut(Conflict):
    code = "escort_opted_out"


# The patient is in the clinic (or has just been discharged): only then is there anyone to pick up.
READY_STATUSES = frozenset({AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED})


def ready_allowed(appointment: Appointment) -> bool:
    """Whether the "ready" text may be sent for this visit now (see mark_ready)."""
    return bool(appointment.escort_phone) and appointment.status in READY_STATUSES


def mark_ready(session: Session, appointment: Appointment, now: dt.datetime) -> bool:
    """Queue the "ready to be picked up" text to the escort: True when queued now, False when
    it was already queued (once per visit: a second press sends nothing). Only for a patient
    who is checked in (or completed): else 409 naming the status."""
    if appointment.escort_notified_at is not None:
        return False
    if appointment.status == AppointmentStatus.CANCELLED or not appointment.escort_phone:
        raise NoEscort("This visit has no escort to text.", {"escort": "missing"})
    if is_opted_out(session, appointment.escort_phone):
        raise EscortOptedOut(
            "The escort's number has opted out of texts (STOP): call them instead.",
            {"escort.phone": "opted out"},
        )
    if appointment.status not in READY_STATUSES:
        raise Conflict(
            f"The patient is not checked in (the visit is {appointment.status}):"
            " check them in before texting their escort.",
            {"status": f"is {appointment.status}, not checked_in"},
        )
    appointment.escort_notified_at = now
    session.add(
        Reminder(
            appointment_id=appointment.id,
            appointment_start_at=appointment.start_at,
            offset_minutes=0,
            kind=ReminderKind.ESCORT_READY.value,
            to_phone=appointment.escort_phone,
            due_at=now,
            next_attempt_at=now,
            status=ReminderStatus.PENDING,
            reason="",
            created_at=now,
            attempts=0,
            provider_status="",
            error_code="",
        )
    )
    session.flush()
    return True


# --- instructions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instructions:
    fasting_hours: int = 0
    arrive_early_minutes: int = 0
    no_driving: bool = False

    @classmethod
    def of(cls, service: Service) -> Instructions:
        return cls(service.fasting_hours, service.arrive_early_minutes, service.no_driving)

    def lines(self) -> list[str]:
        """The instructions as sentences (none: empty), for pages and the invite."""
        out = []
        if self.fasting_hours:
            out.append(f"Nothing to eat for {self.fasting_hours} hours before your visit.")
        if self.arrive_early_minutes:
            out.append(f"Please arrive {self.arrive_early_minutes} minutes early.")
        if self.no_driving:
            out.append(
                "Do not drive until the next day: an adult must take you home after your visit."
            )
        return out

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "fasting_hours": self.fasting_hours,
            "arrive_early_minutes": self.arrive_early_minutes,
            "no_driving": self.no_driving,
        }
