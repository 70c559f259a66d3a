"""A patient's SMS history for staff: the texts from their mobile number (STOP, START, HELP,
confirmations) and the reminders sent for their visits, as labelled events with local times.

Opt-outs belong to a phone number, which a family may share; replies tied to a visit are listed
only for the visits passed in (those at the reader's locations). No message text is kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from scheduler.models import Appointment, Reminder, ReminderKind, ReminderStatus, SmsInbound

INBOUND_LABELS = {
    "opt_out": "Replied STOP: texts stopped for this number",
    "opt_in": "Replied START: texts resumed for this number",
    "help": "Asked for help by text",
    "confirm": "Confirmed the visit by text",
    "offer_reply": "Replied to a waitlist offer by text (a reply books nothing)",
    "unknown": "Replied with a text that was not understood",
}
LOCAL_FORMAT = "%a %d %b %Y %H:%M %Z"


@dataclass(frozen=True)
class SmsEvent:
    at: dt.datetime  # UTC
    when: str  # local to the visit's location (else the record's zone)
    label: str


# What each kind of outgoing text is called on the record (the escort's goes to another number).
TEXT_KINDS: dict[str, str] = {
    ReminderKind.REMINDER: "Reminder",
    ReminderKind.DAY_BEFORE: "Day-before text",
    ReminderKind.ESCORT_READY: "Pick-up text to the escort",
}


def history(
    session: Session, phone: str, appointments: Sequence[Appointment], tz: ZoneInfo
) -> list[SmsEvent]:
    """Newest first: replies from `phone` (those about a visit only for `appointments`) and the
    reminders sent, delivered, failed or skipped for `appointments`."""
    by_id = {a.id: a for a in appointments}

    def event(at: dt.datetime, label: str, appt: Appointment | None) -> SmsEvent:
        zone = ZoneInfo(appt.location.timezone) if appt is not None else tz
        return SmsEvent(at, at.astimezone(zone).strftime(LOCAL_FORMAT), label)

    def visit(appt: Appointment) -> str:
        local = appt.start_at.astimezone(ZoneInfo(appt.location.timezone))
        return f"the visit on {local:%a %d %b %H:%M}"

    events: list[SmsEvent] = []
    inbound = select(SmsInbound).where(
        SmsInbound.phone == phone,
        or_(SmsInbound.appointment_id.is_(None), SmsInbound.appointment_id.in_(list(by_id))),
    )
    for row in session.scalars(inbound):
        appt = by_id.get(row.appointment_id) if row.appointment_id is not None else None
        label = INBOUND_LABELS.get(row.action, "Replied by text")
        if appt is not None:
            label = f"{label} ({visit(appt)})"
        events.append(event(row.received_at, label, appt))
    if by_id:
        for r in session.scalars(select(Reminder).where(Reminder.appointment_id.in_(list(by_id)))):
            appt = by_id[r.appointment_id]
            about = f"for {visit(appt)}"
            text = TEXT_KINDS.get(r.kind, "Reminder")
            if r.sent_at is not None:
                events.append(event(r.sent_at, f"{text} sent {about}", appt))
            if r.delivered_at is not None:
                events.append(event(r.delivered_at, f"{text} delivered {about}", appt))
            if r.status == ReminderStatus.FAILED:
                at = r.failed_at or r.closed_at or r.created_at
                events.append(event(at, f"{text} not delivered {about}", appt))
            elif r.status == ReminderStatus.SKIPPED:
                why = f": {r.reason}" if r.reason else ""
                at = r.closed_at or r.created_at
                events.append(event(at, f"{text} not sent {about}{why}", appt))
    return sorted(events, key=lambda e: e.at, reverse=True)
