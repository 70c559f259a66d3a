"""The one ICS builder: REQUEST while the visit stands, CANCEL once cancelled (RFC 5545/5546)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from scheduler.models import Appointment
from scheduler.services.settings import ClinicSettings


def summary(appointment: Appointment, settings: ClinicSettings) -> str:
    """Discreet by default: no treatment name unless the service sets a public title."""
    if appointment.service.public_title:
        return appointment.service.public_title
    return f"Appointment at {settings.clinic_name} {appointment.location.name}"


def current_invite(appointment: Appointment, settings: ClinicSettings, now: dt.datetime) -> bytes:
    method = "CANCEL" if appointment.status == "cancelled" else "REQUEST"
    tz = ZoneInfo(appointment.location.timezone)
    cal = Calendar()
    cal.add("prodid", "-//Chairside//Appointments//EN")
    cal.add("version", "2.0")
    cal.add("method", method)
    event = Event()
    event.add("uid", appointment.ics_uid)
    event.add("sequence", appointment.ics_sequence)
    event.add("dtstamp", now.astimezone(dt.UTC))
    event.add("dtstart", appointment.start_at.astimezone(tz))
    event.add("dtend", appointment.end_at.astimezone(tz))
    event.add("summary", summary(appointment, settings))
    event.add("location", appointment.location.address)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    cal.add_component(event)
    cal.add_missing_timezones(
        first_date=appointment.start_at.date() - dt.timedelta(days=1),
        last_date=appointment.end_at.date() + dt.timedelta(days=1),
    )
    return cal.to_ical()
