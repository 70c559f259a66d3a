"""How staff pages write things people read: local times with their zone, phone numbers, and
plain-language labels for audit actions and reminder events. One place, used as template filters."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import phonenumbers
from flask import Flask

from scheduler.services.patients import DEFAULT_REGION

WHEN = "%a %d %b %Y %H:%M"
SHORT = "%d %b %H:%M"

AUDIT_ACTIONS = {
    "appointment.booked": "Booked",
    "appointment.moved": "Moved",
    "appointment.cancelled": "Cancelled",
    "appointment.checked_in": "Checked in",
    "appointment.completed": "Completed",
    "appointment.no_show": "Marked no-show",
    "block.created": "Chair blocked",
    "block.removed": "Block removed",
    "calendar_feed.created": "Calendar feed created",
    "calendar_feed.revoked": "Calendar feed revoked",
    "token.issued": "API token issued",
    "token.revoked": "API token revoked",
    "location.created": "Location added",
    "location.updated": "Location changed",
    "location.hours": "Opening hours changed",
    "location.closure_added": "Closure added",
    "location.closure_removed": "Closure removed",
    "resource.created": "Chair or room added",
    "resource.updated": "Chair or room changed",
    "service.created": "Service added",
    "service.updated": "Service changed",
    "staff.created": "Staff user added",
    "staff.updated": "Staff user changed",
    "appointment.escort_ready": "Escort texted: ready for pick-up",
    "appointment.nurse_changed": "Nurse changed",
    "clinician.created": "Clinician added",
    "shift.created": "Shift added",
    "shift.removed": "Shift removed",
    "staffing.changed": "Staffing rules changed",
    "patient.cleared": "Clearance recorded",
    "patient.edited": "Patient details changed",
    "patient.merged": "Duplicate merged into this record",
    "course.review_continue": "Course review: continue",
    "course.review_stop": "Course review: stop (held sessions cancelled)",
    "course.template_saved": "Course template saved",
    "waitlist.offered": "Waitlist time offered by hand",
}

REMINDER_EVENTS = {
    "planned": "Planned",
    "sent": "Sent",
    "delivered": "Delivered",
    "failed": "Failed",
    "skipped": "Not sent",
    "cancelled": "Withdrawn",
    "retrying": "Retrying",
    "confirmed": "Patient confirmed",
}


def local(instant: dt.datetime | None, tz: ZoneInfo | str, fmt: str = WHEN) -> str:
    """`instant` on the location's wall clock, without the zone (for columns headed by it)."""
    if instant is None:
        return ""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return instant.astimezone(zone).strftime(fmt)


def local_zoned(instant: dt.datetime | None, tz: ZoneInfo | str, fmt: str = WHEN) -> str:
    """`instant` on the location's wall clock followed by the zone's abbreviation (PST, EDT)."""
    if instant is None:
        return ""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return instant.astimezone(zone).strftime(f"{fmt} %Z")


def audit_action(action: str) -> str:
    """'appointment.checked_in' -> 'Checked in'; unknown codes are made readable, not hidden."""
    if action in AUDIT_ACTIONS:
        return AUDIT_ACTIONS[action]
    words = action.split(".")[-1].replace("_", " ")
    return words[:1].upper() + words[1:]


def reminder_event(event: str) -> str:
    return REMINDER_EVENTS.get(event, event.replace("_", " ").capitalize())


def _parsed(raw: str | None) -> phonenumbers.PhoneNumber | None:
    if not raw:
        return None
    try:
        return phonenumbers.parse(raw, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None


def phone(raw: str | None) -> str:
    """National format for the clinic's own country ((415) 555-1200), international otherwise."""
    number = _parsed(raw)
    if number is None:
        return raw or ""
    region = phonenumbers.region_code_for_number(number)
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if region == DEFAULT_REGION
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(number, fmt)


def tel_href(raw: str | None) -> str:
    """A tel: link target (E.164), empty when the number cannot be read."""
    number = _parsed(raw)
    if number is None:
        return ""
    return "tel:" + phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def install(app: Flask) -> None:
    """The template filters: `local`, `local_zoned`, `phone`, `tel`, `audit_action`,
    `reminder_event`."""
    app.add_template_filter(local, "local")
    app.add_template_filter(local_zoned, "local_zoned")
    app.add_template_filter(phone, "phone")
    app.add_template_filter(tel_href, "tel")
    app.add_template_filter(audit_action, "audit_action")
    app.add_template_filter(reminder_event, "reminder_event")
