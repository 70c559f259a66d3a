"""The one ICS builder: patient invites (iTIP REQUEST / CANCEL) and staff feeds (PUBLISH).

RFC 5545 / 5546: one stable UID per appointment; every change is a REQUEST with a higher
SEQUENCE and a new DTSTAMP; a cancellation is a CANCEL with the same UID, a higher SEQUENCE and
STATUS:CANCELLED. Local times always travel with a VTIMEZONE generated from zoneinfo for the
event's period; a start or end in the repeated hour of a fall-back is written in UTC instead,
because calendar clients disagree on which occurrence a bare local time means.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Component, Event, vCalAddress, vDuration, vText

from scheduler.models import Appointment
from scheduler.services.clock import is_ambiguous
from scheduler.services.day_of import Instructions
from scheduler.services.settings import ClinicSettings

REQUEST = "REQUEST"
CANCEL = "CANCEL"
PUBLISH = "PUBLISH"
PRODID = "-//Chairside//Appointments//EN"
ALARM_BEFORE = dt.timedelta(hours=1)
# VTIMEZONE observances are generated for the event's dates plus this margin on each side: a few
# transitions, enough for clients that reuse a VTIMEZONE for neighbouring events.
TZ_MARGIN = dt.timedelta(days=366)


@dataclass(frozen=True)
class Invite:
    method: str
    uid: str
    sequence: int
    ics: bytes  # CRLF line ends, folded at 75 octets, UTF-8


def method_for(appointment: Appointment) -> str:
    """CANCEL once the visit is cancelled; REQUEST while it stands."""
    return CANCEL if appointment.status == "cancelled" else REQUEST


def summary(appointment: Appointment, settings: ClinicSettings) -> str:
    """Discreet by default: no treatment name unless the service sets a public title."""
    if appointment.service.public_title:
        return appointment.service.public_title
    clinic = " ".join(settings.clinic_name.split())
    location = " ".join(appointment.location.name.split())
    return f"Appointment at {clinic}, {location}" if location else f"Appointment at {clinic}"


def location_text(appointment: Appointment) -> str:
    location = appointment.location
    return ", ".join(part for part in (location.name, location.address) if part)


def description(appointment: Appointment, settings: ClinicSettings, method: str) -> str:
    location = appointment.location
    lines = []
    if method == CANCEL:
        lines += ["This appointment has been cancelled.", ""]
    lines.append(summary(appointment, settings))
    lines.append(location_text(appointment))
    if location.phone:
        lines.append(f"Phone: {location.phone}")
    if method != CANCEL:
        steps = Instructions.of(appointment.service).lines()
        if steps:
            lines += ["", "Before you come:", *(f"- {step}" for step in steps)]
        lines += ["", f"View, change or cancel: {settings.manage_url(appointment.manage_token)}"]
    if appointment.note:
        lines += ["", "Your note:", appointment.note]
    return "\n".join(lines)


def initials(name: str) -> str:
    """'Pat Q. Patient' -> 'P.P.': first and last word that start with a letter."""
    words = [w for w in name.split() if w[:1].isalpha()]
    if not words:
        return "?"
    picked = [words[0]] if len(words) == 1 else [words[0], words[-1]]
    return "".join(f"{w[0].upper()}." for w in picked)


def _calendar(method: str) -> Calendar:
    # Calendar() rather than Calendar.new(): the latter adds a calendar-level UID we do not want.
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    return cal


def _times(start: dt.datetime, end: dt.datetime, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """Local times in `tz`, or UTC when either falls in a repeated (ambiguous) hour."""
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    for value in (local_start, local_end):
        if is_ambiguous(value.date(), value.time(), tz):
            return start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    return local_start, local_end


def _add_timezones(
    cal: Calendar, starts: Sequence[dt.datetime], ends: Sequence[dt.datetime]
) -> None:
    if not starts:
        return
    # The default window (1970-2038) writes ~140 transitions: give the events' own period.
    cal.add_missing_timezones(
        first_date=(min(starts) - TZ_MARGIN).date(),
        last_date=(max(ends) + TZ_MARGIN).date(),
    )
    for vtimezone in cal.walk("VTIMEZONE"):
        _one_onset_per_observance(vtimezone)


def _one_onset_per_observance(vtimezone: Component) -> None:
    """Rewrite STANDARD/DAYLIGHT observances with RDATEs as one observance per onset.

    icalendar writes an observance's later onsets as RDATEs. That is valid RFC 5545, but ical.js
    (Thunderbird) then drops the DTSTART onset, and Outlook has a history with RDATE in
    VTIMEZONE: one DTSTART per observance means the same thing and every client reads it.
    """
    observances: list[Component] = []
    for sub in vtimezone.subcomponents:
        rdates = sub.pop("RDATE", None)
        if rdates is None:
            observances.append(sub)
            continue
        onsets: list[dt.datetime] = [_onset(sub)]
        for item in rdates if isinstance(rdates, list) else [rdates]:
            onsets += [value.dt for value in item.dts]
        for onset in onsets:
            copy = type(sub)()
            copy.add("dtstart", onset)
            for key in ("TZNAME", "TZOFFSETFROM", "TZOFFSETTO"):
                if key in sub:
                    copy[key] = sub[key]
            observances.append(copy)
    observances.sort(key=_onset)
    vtimezone.subcomponents = observances


def _onset(observance: Component) -> dt.datetime:
    value: dt.datetime = observance.decoded("DTSTART")
    return value


def _address(email: str, name: str, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    clean = name.replace('"', "'").replace("\r", " ").replace("\n", " ").strip()
    if clean:
        address.params["CN"] = clean
    for key, value in params.items():
        address.params[key.replace("_", "-").upper()] = value
    return address


@dataclass(frozen=True)
class InviteData:
    """Everything an invite says, as plain values: taken inside the booking transaction (cheap),
    rendered to ICS later (outside it), so the outbox row holds what was true at the change."""

    method: str
    uid: str
    sequence: int
    dtstamp: dt.datetime
    created: dt.datetime
    last_modified: dt.datetime
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC
    timezone: str
    title: str
    location: str
    description: str
    url: str
    organizer_email: str
    organizer_name: str
    attendee_email: str
    attendee_name: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: instants as ISO strings (every field is a plain value; no deep copy)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, dt.datetime) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InviteData:
        values = dict(data)
        for f in fields(cls):
            if f.type in ("dt.datetime", dt.datetime):
                values[f.name] = dt.datetime.fromisoformat(values[f.name])
        return cls(**values)


def invite_data(
    appointment: Appointment,
    settings: ClinicSettings,
    now: dt.datetime,
    method: str | None = None,
) -> InviteData:
    method = method or method_for(appointment)
    return InviteData(
        method=method,
        uid=appointment.ics_uid,
        sequence=appointment.ics_sequence,
        dtstamp=now.astimezone(dt.UTC),
        created=appointment.created_at.astimezone(dt.UTC),
        last_modified=appointment.updated_at.astimezone(dt.UTC),
        start=appointment.start_at.astimezone(dt.UTC),
        end=appointment.end_at.astimezone(dt.UTC),
        timezone=appointment.location.timezone,
        title=summary(appointment, settings),
        location=location_text(appointment),
        description=description(appointment, settings, method),
        url=settings.manage_url(appointment.manage_token),
        organizer_email=settings.mail_from,
        organizer_name=settings.clinic_name,
        attendee_email=appointment.patient.email,
        attendee_name=appointment.patient.name,
    )


def render_ics(data: InviteData) -> bytes:
    """The iTIP message (METHOD:REQUEST or CANCEL) for `data`."""
    cancel = data.method == CANCEL
    start, end = _times(data.start, data.end, ZoneInfo(data.timezone))
    event = Event()
    event.add("uid", data.uid)
    event.add("sequence", data.sequence)
    event.add("dtstamp", data.dtstamp)
    event.add("created", data.created)
    event.add("last-modified", data.last_modified)
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", data.title)
    event.add("location", data.location)
    event.add("description", data.description)
    event.add("status", "CANCELLED" if cancel else "CONFIRMED")
    event.add("transp", "TRANSPARENT" if cancel else "OPAQUE")
    event.add("class", "PRIVATE")
    if not cancel:
        event.add("url", data.url)
    event.add("organizer", _address(data.organizer_email, data.organizer_name))
    if data.attendee_email:  # staff may book a patient who gave no e-mail
        event.add(
            "attendee",
            _address(
                data.attendee_email,
                data.attendee_name,
                cutype="INDIVIDUAL",
                role="REQ-PARTICIPANT",
                partstat="ACCEPTED",
                rsvp="FALSE",
            ),
        )
    if not cancel:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", vText(data.title))
        alarm.add("trigger", -ALARM_BEFORE)
        event.add_component(alarm)

    cal = _calendar(data.method)
    cal.add_component(event)
    _add_timezones(cal, [data.start], [data.end])
    ics: bytes = cal.to_ical()
    return ics


def build_invite(
    appointment: Appointment,
    settings: ClinicSettings,
    now: dt.datetime,
    method: str | None = None,
) -> Invite:
    """The iTIP message for the appointment as it is now (REQUEST, or CANCEL once cancelled)."""
    data = invite_data(appointment, settings, now, method)
    return Invite(method=data.method, uid=data.uid, sequence=data.sequence, ics=render_ics(data))


def current_invite(appointment: Appointment, settings: ClinicSettings, now: dt.datetime) -> bytes:
    """The .ics the patient downloads: the appointment's current state."""
    return build_invite(appointment, settings, now).ics


def feed_calendar(
    appointments: Sequence[Appointment],
    *,
    name: str,
    timezone: str,
    now: dt.datetime,
    refresh: dt.timedelta = dt.timedelta(minutes=15),
) -> bytes:
    """A subscription calendar for staff: patients appear by initials only."""
    cal = _calendar(PUBLISH)
    cal.add("name", name)
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", timezone)
    cal.add("refresh-interval", refresh, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(refresh))
    for appt in appointments:
        tz = ZoneInfo(appt.location.timezone)
        start, end = _times(appt.start_at, appt.end_at, tz)
        kind = appt.service.kind.replace("_", " ").capitalize()
        event = Event()
        # Not the patient's UID: a client holding both calendars must not merge the two events.
        event.add("uid", f"feed-{appt.ics_uid}")
        event.add("sequence", appt.ics_sequence)
        event.add("dtstamp", now.astimezone(dt.UTC))
        event.add("last-modified", appt.updated_at.astimezone(dt.UTC))
        event.add("dtstart", start)
        event.add("dtend", end)
        event.add("summary", f"{initials(appt.patient.name)} · {kind} · {appt.resource.name}")
        event.add("location", f"{appt.location.name}, {appt.resource.name}")
        event.add("description", f"Status: {appt.status.replace('_', ' ')}")
        event.add("status", "CONFIRMED")
        event.add("class", "PRIVATE")
        cal.add_component(event)
    _add_timezones(cal, [a.start_at for a in appointments], [a.end_at for a in appointments])
    ics: bytes = cal.to_ical()
    return ics
