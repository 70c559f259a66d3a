"""The ICS builder on its own (no database): folding, escaping, methods, time zones, discretion."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from scheduler.models import Appointment, Location, Patient, Resource, Service
from scheduler.services import invites
from scheduler.services.settings import ClinicSettings
from tests import icaljs
from tests.icaljs import every_ics_checked  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("every_ics_checked")

SETTINGS = ClinicSettings(
    clinic_name="Harbor, Clinic; Inc",
    public_base_url="https://book.clinic.example",
    mail_from="appointments@clinic.example",
)
NOW = dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)
LONG_NAME = "Clínica Ñandú 東京駅前 🦄🚀 Ünïcødé Straße — 北京 café 😀"
LONG_NOTE = (
    "Drücken Sie bitte zweimal, 二階です; the lift is 🛗 on the left\\right.\n"
    "Second line: émojis 👩🏽‍⚕️💉🚗, CJK 日本語のテキスト, and a comma, a semicolon; done."
)


def appointment(
    *,
    zone: str = "America/Los_Angeles",
    start: dt.datetime = dt.datetime(2026, 12, 2, 18, 0, tzinfo=dt.UTC),
    minutes: int = 40,
    name: str = "Mission Bay",
    address: str = "1 Main St, San Francisco",
    note: str = "",
    status: str = "booked",
    sequence: int = 0,
    public_title: str = "",
    patient_name: str = "Zoë Ångström",
) -> Appointment:
    """An appointment in memory, as the builder sees one (it reads attributes only)."""
    location = Location(slug="loc", name=name, timezone=zone, address=address, phone="+14155550100")
    service = Service(
        slug="ketamine",
        name="Ketamine infusion (depression)",
        kind="infusion",
        public_title=public_title,
    )
    return Appointment(
        location=location,
        service=service,
        resource=Resource(kind="chair", name="Chair 2"),
        patient=Patient(name=patient_name, phone="+14155550123", email="zoe@example.com"),
        start_at=start,
        end_at=start + dt.timedelta(minutes=minutes),
        status=status,
        ics_uid="0123abcd@chairside",
        ics_sequence=sequence,
        manage_token="t" * 43,
        note=note,
        created_at=NOW,
        updated_at=NOW,
    )


def lines(ics: bytes) -> list[bytes]:
    assert ics.endswith(b"\r\n")
    return ics[:-2].split(b"\r\n")


def unfolded(ics: bytes) -> list[str]:
    return ics.replace(b"\r\n ", b"").decode("utf-8").split("\r\n")


def prop(ics: bytes, name: str) -> str:
    """The raw (escaped, unfolded) value of the first property called `name` in the VEVENT."""
    in_event = False
    for line in unfolded(ics):
        if line == "BEGIN:VEVENT":
            in_event = True
        elif in_event and re.match(rf"{name}[;:]", line):
            return line.split(":", 1)[1] if ";" not in line.split(":", 1)[0] else line
    raise AssertionError(f"no {name} in {ics!r}")


def test_long_multibyte_text_is_folded_at_75_octets_and_round_trips_exactly() -> None:
    appt = appointment(name=LONG_NAME, address="Rue de l’Église 5, 東京都", note=LONG_NOTE)
    ics = invites.build_invite(appt, SETTINGS, NOW).ics
    physical = lines(ics)
    folded = [line for line in physical if line.startswith(b" ")]
    assert len(folded) >= 4  # the test exercises folding at all
    for line in physical:
        assert len(line) <= 75, line
        line.decode("utf-8")  # no multi-byte character is split across a fold
    # Folding inserted nothing but CRLF + one space: unfolding gives the exact text back.
    event = Calendar.from_ical(ics).walk("VEVENT")[0]
    assert str(event["LOCATION"]) == f"{LONG_NAME}, Rue de l’Église 5, 東京都"
    assert str(event["DESCRIPTION"]).endswith("Your note:\n" + LONG_NOTE)
    assert str(event["SUMMARY"]) == f"Appointment at Harbor, Clinic; Inc, {LONG_NAME}"

    (doc,) = icaljs.parse([ics])
    (parsed,) = doc["events"]
    assert parsed["location"] == f"{LONG_NAME}, Rue de l’Église 5, 東京都"
    assert parsed["description"].endswith("Your note:\n" + LONG_NOTE)
    assert parsed["summary"] == f"Appointment at Harbor, Clinic; Inc, {LONG_NAME}"


def test_text_is_escaped_per_rfc5545() -> None:
    note = "a, b; c\\ d\nline two"
    appt = appointment(name="North; West, Annex", note=note, patient_name="Doe, Jane")
    ics = invites.build_invite(appt, SETTINGS, NOW).ics
    assert prop(ics, "LOCATION") == r"North\; West\, Annex\, 1 Main St\, San Francisco"
    assert prop(ics, "SUMMARY") == r"Appointment at Harbor\, Clinic\; Inc\, North\; West\, Annex"
    assert prop(ics, "DESCRIPTION").endswith(r"Your note:\na\, b\; c\\ d\nline two")
    # Parameter values with a comma are quoted (RFC 5545 3.2), not escaped.
    assert 'CN="Doe, Jane"' in prop(ics, "ATTENDEE")
    assert 'CN="Harbor, Clinic; Inc"' in prop(ics, "ORGANIZER")
    (doc,) = icaljs.parse([ics])
    assert doc["events"][0]["description"].endswith("Your note:\n" + note)
    assert doc["events"][0]["location"] == "North; West, Annex, 1 Main St, San Francisco"


def test_carriage_returns_in_a_note_become_escaped_newlines() -> None:
    ics = invites.build_invite(appointment(note="one\r\ntwo\rthree"), SETTINGS, NOW).ics
    assert prop(ics, "DESCRIPTION").endswith(r"Your note:\none\ntwo\nthree")
    assert b"\r" not in ics.replace(b"\r\n", b"")


def test_request_has_the_itip_essentials() -> None:
    appt = appointment(sequence=2)
    invite = invites.build_invite(appt, SETTINGS, NOW)
    assert invite.method == "REQUEST" and invite.sequence == 2
    cal = Calendar.from_ical(invite.ics)
    assert str(cal["METHOD"]) == "REQUEST"
    assert "UID" not in cal  # icalendar's Calendar.new() would add one at calendar level
    (event,) = cal.walk("VEVENT")
    assert str(event["UID"]) == "0123abcd@chairside"
    assert int(event["SEQUENCE"]) == 2
    assert event["DTSTAMP"].dt == NOW
    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(event["ORGANIZER"]) == "mailto:appointments@clinic.example"
    attendees = event.get("ATTENDEE")
    assert not isinstance(attendees, list)  # the patient is the only attendee
    assert str(attendees) == "mailto:zoe@example.com"
    assert attendees.params["RSVP"] == "FALSE"
    (alarm,) = event.walk("VALARM")
    assert alarm["TRIGGER"].dt == -dt.timedelta(hours=1)
    assert str(event["URL"]) == f"https://book.clinic.example/a/{'t' * 43}"


def test_cancel_keeps_the_uid_and_says_cancelled() -> None:
    appt = appointment(status="cancelled", sequence=3)
    invite = invites.build_invite(appt, SETTINGS, NOW)
    assert invite.method == "CANCEL"
    assert invites.current_invite(appt, SETTINGS, NOW) == invite.ics
    cal = Calendar.from_ical(invite.ics)
    assert str(cal["METHOD"]) == "CANCEL"
    (event,) = cal.walk("VEVENT")
    assert str(event["UID"]) == "0123abcd@chairside"
    assert int(event["SEQUENCE"]) == 3
    assert str(event["STATUS"]) == "CANCELLED"
    assert event.walk("VALARM") == []
    (doc,) = icaljs.parse([invite.ics])
    assert doc["method"] == "CANCEL" and doc["events"][0]["status"] == "CANCELLED"


def test_summary_is_discreet_unless_the_service_sets_a_public_title() -> None:
    ics = invites.build_invite(appointment(), SETTINGS, NOW).ics
    assert b"Ketamine" not in ics and b"depression" not in ics
    titled = invites.build_invite(appointment(public_title="Wellness visit"), SETTINGS, NOW).ics
    assert str(Calendar.from_ical(titled).walk("VEVENT")[0]["SUMMARY"]) == "Wellness visit"


@pytest.mark.parametrize(
    "zone",
    ["America/Los_Angeles", "Australia/Adelaide", "Asia/Kolkata", "Europe/London", "UTC"],
)
def test_every_tzid_comes_with_its_vtimezone(zone: str) -> None:
    ics = invites.build_invite(appointment(zone=zone), SETTINGS, NOW).ics
    used = set(re.findall(rb";TZID=([^:;]+)", ics))
    defined = set(re.findall(rb"\r\nTZID:([^\r]+)", ics))
    assert used <= defined
    if zone != "UTC":
        assert used == {zone.encode()}
    assert ics.count(b"BEGIN:VTIMEZONE") == len(defined)
    # The generated VTIMEZONE stays small (not 1970-2038).
    assert ics.count(b"TZOFFSETTO") <= 8
    (doc,) = icaljs.parse([ics])
    assert doc["events"][0]["start"] == "2026-12-02T18:00:00.000Z"


@pytest.mark.parametrize(
    "start_utc",
    [
        dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.UTC),  # 01:30 PDT, first time round
        dt.datetime(2026, 11, 1, 9, 30, tzinfo=dt.UTC),  # 01:30 PST, second time round
        dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC),  # starts 01:00 PDT, ends in the repeat
    ],
)
def test_times_in_the_repeated_fall_back_hour_are_written_in_utc(start_utc: dt.datetime) -> None:
    ics = invites.build_invite(appointment(start=start_utc, minutes=20), SETTINGS, NOW).ics
    assert prop(ics, "DTSTART") == start_utc.strftime("%Y%m%dT%H%M%SZ")
    (doc,) = icaljs.parse([ics])
    assert dt.datetime.fromisoformat(doc["events"][0]["start"]) == start_utc
    assert doc["events"][0]["tzid"] is None


def test_times_outside_the_repeated_hour_stay_local() -> None:
    start = dt.datetime(2026, 11, 1, 17, 0, tzinfo=dt.UTC)  # 09:00 PST, same day
    ics = invites.build_invite(appointment(start=start), SETTINGS, NOW).ics
    assert "TZID=America/Los_Angeles:20261101T090000" in prop(ics, "DTSTART")


def test_feed_shows_initials_only() -> None:
    appt = appointment(patient_name="Zoë van der Ångström")
    ics = invites.feed_calendar([appt], name="Harbor", timezone="America/Los_Angeles", now=NOW)
    event = Calendar.from_ical(ics).walk("VEVENT")[0]
    assert str(event["SUMMARY"]) == "Z.Å. · Infusion · Chair 2"
    assert str(event["UID"]) != appt.ics_uid
    for secret in (b"Zo", b"ngstr", b"zoe@", b"+1415555", b"Ketamine", b"ATTENDEE"):
        assert secret not in ics.replace("Z.Å.".encode(), b"")
    assert str(Calendar.from_ical(ics)["METHOD"]) == "PUBLISH"
    assert b"\r\nREFRESH-INTERVAL;VALUE=DURATION:PT15M\r\n" in ics
    assert b"\r\nX-PUBLISHED-TTL:PT15M\r\n" in ics


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Pat Patient 1", "P.P."),
        ("madonna", "M."),
        ("Mary-Jane  O'Brien", "M.O."),
        ("Zoë Q. van Ångström", "Z.Å."),
        ("   ", "?"),
        ("李 小龍", "李.小."),
    ],
)
def test_initials(name: str, expected: str) -> None:
    assert invites.initials(name) == expected


def test_local_wall_time_of_the_invite_matches_the_location() -> None:
    start = dt.datetime(2026, 12, 2, 4, 30, tzinfo=dt.UTC)
    ics = invites.build_invite(appointment(zone="Asia/Kolkata", start=start), SETTINGS, NOW).ics
    local = start.astimezone(ZoneInfo("Asia/Kolkata"))
    assert local.strftime("%H%M") == "1000"
    assert "TZID=Asia/Kolkata:20261202T100000" in prop(ics, "DTSTART")


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Australia/Adelaide", "Asia/Kolkata"])
def test_icaljs_reads_every_date_of_a_two_year_feed_like_zoneinfo(zone: str) -> None:
    # One VTIMEZONE covering many transitions. (icalendar's RDATE-style observances made
    # ical.js drop onsets and read 10:00 PST on 12 March 2027 as PDT; hence one onset each.)
    tz = ZoneInfo(zone)
    starts = [
        dt.datetime.combine(dt.date(2026, 1, 5) + dt.timedelta(days=9 * i), dt.time(10), tz)
        for i in range(80)
    ]
    appts = [appointment(zone=zone, start=s.astimezone(dt.UTC)) for s in starts]
    for i, appt in enumerate(appts):
        appt.ics_uid = f"{i}@chairside"
    ics = invites.feed_calendar(appts, name="Sweep", timezone=zone, now=NOW)
    assert b"RDATE" not in ics
    (doc,) = icaljs.parse([ics])
    got = [dt.datetime.fromisoformat(e["start"]) for e in doc["events"]]
    assert got == [s.astimezone(dt.UTC) for s in starts]
