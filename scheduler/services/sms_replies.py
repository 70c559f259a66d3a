"""Texts from patients and from the provider: replies to reminders (STOP and START, HELP, C to
confirm), delivery status callbacks, and the reminder history staff see on a visit.

A reply answers the latest text sent to its number within REPLY_WINDOW (72 h), a reminder or a
waitlist offer (a C or YES to an offer books nothing: the answer gives the link): with a Thursday
and a Friday visit, C after the Thursday reminder confirms Thursday and C after the Friday
reminder confirms Friday; on a number several patients share, C confirms the visit of the
patient the last text named. A status callback is matched by the reminder id in its URL and
the provider's message id.

Opt-outs mirror the provider's own handling of the standard keywords; a confirmation is written
through the booking service, the only writer of appointments.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import (
    Appointment,
    AppointmentStatus,
    Location,
    Patient,
    Reminder,
    ReminderKind,
    ReminderStatus,
    SmsInbound,
    SmsOptOut,
)
from scheduler.services.reminders import first_name, local_when, phone_is_shared, render_text
from scheduler.services.settings import ClinicSettings

# Twilio's standard keywords (it handles these itself too; we mirror its state).
OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})
CONFIRM_WORDS = frozenset({"C", "Y", "YES", "CONFIRM"})


# --- inbound texts and status callbacks -----------------------------------------------------------


@dataclass(frozen=True)
class InboundResult:
    action: str  # confirm | opt_out | opt_in | help | unknown | duplicate
    reply: str | None  # the text to answer with (None: no reply)
    appointment_id: int | None = None


def keyword(body: str) -> str:
    return re.sub(r"[^A-Z]", "", body.strip().upper())


# A reply refers to the latest text sent to its number no longer ago than this: a reminder goes
# out at most 48 h before its visit, so 72 h covers a reply to any reminder until the visit
# (and a day more), while a C days later is not taken for an answer to an old text.
REPLY_WINDOW = dt.timedelta(hours=72)
# Words that also confirm the ride when they answer the day-before text ("reply YES").
RIDE_WORDS = frozenset({"Y", "YES"})
_PATIENT_KINDS = (ReminderKind.REMINDER.value, ReminderKind.DAY_BEFORE.value)


def latest_text(session: Session, phone: str, now: dt.datetime) -> Reminder | None:
    """The text a reply from `phone` answers: the latest sent to that number within the window
    (whoever it was for: a patient's reminder, or an escort's "ready")."""
    return session.scalars(
        select(Reminder)
        .where(
            Reminder.to_phone == phone,
            Reminder.sent_at.is_not(None),
            Reminder.sent_at <= now,
            Reminder.sent_at > now - REPLY_WINDOW,
            Reminder.status.in_([ReminderStatus.SENT, ReminderStatus.DELIVERED]),
        )
        .order_by(Reminder.sent_at.desc(), Reminder.id.desc())
        .limit(1)
    ).first()


def _sole_patients_next_visit(session: Session, phone: str, now: dt.datetime) -> Appointment | None:
    """Without a recent text: the next visit, but only when one patient has the number (on a
    shared number a bare C cannot say whose visit it means)."""
    people = session.scalars(
        select(Patient.id).where(Patient.phone == phone, Patient.merged_into_id.is_(None)).limit(2)
    ).all()
    if len(people) != 1:
        return None
    return session.scalars(
        select(Appointment)
        .where(
            Appointment.patient_id == people[0],
            Appointment.active.is_(True),
            Appointment.status == AppointmentStatus.BOOKED,
            Appointment.start_at > now,
        )
        .order_by(Appointment.start_at)
        .limit(1)
    ).first()


def _confirmable(appointment: Appointment | None, now: dt.datetime) -> bool:
    return (
        appointment is not None
        and appointment.active
        and appointment.status == AppointmentStatus.BOOKED
        and appointment.start_at > now
    )


def _set_opt_out(
    session: Session, phone: str, opted_out: bool, word: str, now: dt.datetime
) -> None:
    row = session.scalars(select(SmsOptOut).where(SmsOptOut.phone == phone)).first()
    if row is None:
        if not opted_out:
            return
        row = SmsOptOut(phone=phone)
        session.add(row)
    row.opted_out = opted_out
    row.keyword = word[:16]
    row.changed_at = now


def _clinic_phone(session: Session, appointment: Appointment | None) -> str:
    if appointment is not None and appointment.location.phone:
        return appointment.location.phone
    return (
        session.scalar(
            select(Location.phone)
            .where(Location.active.is_(True), Location.phone != "")
            .order_by(Location.id)
            .limit(1)
        )
        or ""
    )


def handle_inbound(
    session: Session,
    *,
    phone: str,
    body: str,
    message_sid: str,
    now: dt.datetime,
    settings: ClinicSettings,
    opt_out_type: str = "",
) -> InboundResult:
    """Apply one inbound SMS. It answers the latest text sent to the number within
    REPLY_WINDOW: C/YES confirm that text's visit (YES to the day-before text also confirms the
    ride); when that text is a waitlist offer they confirm nothing and the answer gives the
    offer's link again (or says it is over); HELP names that visit's (or offer's) clinic
    phone. STOP & co. opt the number out (whoever it belongs to: patient or escort; the worker
    then texts it no offer either, and the offers already texted to it are withdrawn), START
    opts in. Recorded by MessageSid with the text it
    answered, so a redelivered webhook changes nothing twice."""
    if session.scalar(select(SmsInbound.id).where(SmsInbound.message_sid == message_sid)):
        return InboundResult("duplicate", None)
    word = keyword(body)
    kind = opt_out_type.strip().upper()
    if kind == "STOP" or (not kind and word in OPT_OUT_WORDS):
        action = "opt_out"
    elif word in CONFIRM_WORDS:
        action = "confirm"
    elif kind == "START" or word in OPT_IN_WORDS:
        action = "opt_in"
    elif kind == "HELP" or word in HELP_WORDS:
        action = "help"
    else:
        action = "unknown"
    from scheduler.services import waitlist  # (waitlist -> booking -> reminders)

    answered = latest_text(session, phone, now)
    offer = waitlist.latest_offer_text(session, phone, since=now - REPLY_WINDOW, now=now)
    if (
        offer is not None
        and answered is not None
        and answered.sent_at is not None
        and offer.sent_at is not None
        and answered.sent_at >= offer.sent_at
    ):
        offer = None  # a reminder went out after the offer: the reply is about that
    if offer is not None:
        answered = None  # the latest text is a waitlist offer: nothing of a visit to confirm
    context = answered.appointment if answered is not None else None
    reply: str | None = None
    confirmed_id: int | None = None
    clinic_phone = offer.entry.location.phone if offer is not None else ""
    values = {
        "clinic": settings.clinic_name,
        "phone": clinic_phone or _clinic_phone(session, context),
    }
    if action == "opt_out":
        # Twilio has already stopped delivery and sent its own answer: no reply from us.
        _set_opt_out(session, phone, True, word or kind, now)
        waitlist.withdraw_offers_to(session, phone, now=now)
    elif action == "opt_in":
        _set_opt_out(session, phone, False, word or kind, now)
    if action == "confirm" and offer is not None:
        # C or YES to an offer books nothing (the link does) and confirms no other visit.
        if word in OPT_IN_WORDS:  # "YES" also re-subscribes at Twilio
            _set_opt_out(session, phone, False, word, now)
        action = "offer_reply"
        reply = waitlist.render_offer_reply(session, offer, now=now, settings=settings)
    elif action == "confirm":
        if word in OPT_IN_WORDS:  # "YES" also re-subscribes at Twilio
            _set_opt_out(session, phone, False, word, now)
        if answered is None:
            appointment = _sole_patients_next_visit(session, phone, now)
        elif answered.kind in _PATIENT_KINDS:
            appointment = answered.appointment
        else:
            appointment = None  # an escort's "ready" text asks for no answer
        if appointment is None or not _confirmable(appointment, now):
            reply = render_text("nothing_to_confirm.txt", **values)
        else:
            from scheduler.services import booking, day_of  # they import reminders

            ride = (
                answered is not None
                and answered.kind == ReminderKind.DAY_BEFORE
                and word in RIDE_WORDS
                and day_of.needs_ride(appointment.service)
            )
            booking.confirm(session, appointment, now, ride=ride)
            confirmed_id = appointment.id
            tz = ZoneInfo(appointment.location.timezone)
            shared = phone_is_shared(session, appointment.patient_id)
            reply = render_text(
                "confirmed.txt",
                who=first_name(appointment.patient.name) if shared else "",
                when=local_when(appointment.start_at, tz),
                location=appointment.location.name,
                ride=ride,
                **values,
            )
    elif action == "help":
        reply = render_text("help.txt", **values)
    elif action == "unknown":
        reply = render_text("unknown.txt", **values)
    session.add(
        SmsInbound(
            message_sid=message_sid[:64],
            phone=phone[:20],
            action=action,
            reminder_id=answered.id if answered is not None else None,
            appointment_id=confirmed_id,
            received_at=now,
        )
    )
    session.flush()
    return InboundResult(action, reply, confirmed_id)


_PROVIDER_RANK = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
}


def record_status(
    session: Session,
    *,
    message_sid: str,
    status: str,
    error_code: str,
    now: dt.datetime,
    reminder_id: int | None = None,
) -> bool:
    """Apply a delivery status callback; duplicates and out-of-order ones change nothing."""
    status = status.strip().lower()
    rank = _PROVIDER_RANK.get(status)
    if rank is None or not message_sid:
        return False
    row: Reminder | None = None
    if reminder_id is not None:
        row = session.get(Reminder, reminder_id)
        if row is not None and row.provider_sid not in (None, message_sid):
            row = None  # a callback for another send of the same reminder
    if row is None:
        row = session.scalars(select(Reminder).where(Reminder.provider_sid == message_sid)).first()
    if row is None:
        return False
    if _PROVIDER_RANK.get(row.provider_status, 0) >= rank:
        return False
    row.provider_status = status
    if row.provider_sid is None:
        row.provider_sid = message_sid
    if status == "delivered":
        row.status = ReminderStatus.DELIVERED
        row.delivered_at = now
    elif status in ("undelivered", "failed", "canceled"):
        row.status = ReminderStatus.FAILED
        row.failed_at = now
        row.error_code = error_code[:16]
        row.reason = status
    session.flush()
    return True


# --- history for staff ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """One line of an appointment's SMS history, oldest first."""

    at: dt.datetime
    event: str  # planned | sent | delivered | failed | skipped | cancelled | confirmed
    reminder_id: int | None
    due_at: dt.datetime | None
    detail: str


def history(session: Session, appointment_id: int) -> list[HistoryRow]:
    rows: list[HistoryRow] = []
    for r in session.scalars(
        select(Reminder).where(Reminder.appointment_id == appointment_id).order_by(Reminder.id)
    ):
        label = _label(r)
        rows.append(HistoryRow(r.created_at, "planned", r.id, r.due_at, label))
        if r.sent_at is not None:
            rows.append(HistoryRow(r.sent_at, "sent", r.id, r.due_at, label))
        if r.delivered_at is not None:
            rows.append(HistoryRow(r.delivered_at, "delivered", r.id, r.due_at, label))
        if r.status == ReminderStatus.FAILED:
            detail = f"{label}: {r.reason or 'failed'}" + (
                f" (error {r.error_code})" if r.error_code else ""
            )
            rows.append(
                HistoryRow(
                    r.failed_at or r.closed_at or r.created_at, "failed", r.id, r.due_at, detail
                )
            )
        elif r.status in (ReminderStatus.SKIPPED, ReminderStatus.CANCELLED):
            rows.append(
                HistoryRow(
                    r.closed_at or r.created_at,
                    str(r.status),
                    r.id,
                    r.due_at,
                    f"{label}: {r.reason}",
                )
            )
        elif r.status == ReminderStatus.PENDING and r.error_code:
            # Listed at the next attempt (the failed attempt's time is not kept).
            rows.append(
                HistoryRow(
                    r.next_attempt_at,
                    "retrying",
                    r.id,
                    r.due_at,
                    f"{label}: {r.reason}, next attempt at this time",
                )
            )
    for inbound in session.scalars(
        select(SmsInbound)
        .where(SmsInbound.appointment_id == appointment_id, SmsInbound.action == "confirm")
        .order_by(SmsInbound.id)
    ):
        rows.append(
            HistoryRow(inbound.received_at, "confirmed", inbound.reminder_id, None, "SMS reply")
        )
    order = {"planned": 0, "sent": 1, "delivered": 2}
    return sorted(rows, key=lambda h: (h.at, order.get(h.event, 3)))


def _label(reminder: Reminder) -> str:
    if reminder.kind == ReminderKind.ESCORT_READY:
        return "pick-up text to the escort"
    label = _offset_label(reminder.offset_minutes)
    if reminder.kind == ReminderKind.DAY_BEFORE:
        return f"{label} (instructions, ride)"
    return label


def _offset_label(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} d before"
    if minutes % 60 == 0:
        return f"{minutes // 60} h before"
    return f"{minutes} min before"
