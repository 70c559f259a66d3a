"""The front desk's pages through the test client (both databases): the week across every chair,
the day sheet, status changes from the calendar, and the words staff read."""

from __future__ import annotations

import re
from typing import Any

import pytest

from scheduler.services import booking
from scheduler.services.settings import ClinicSettings
from tests.web.staff_support import DAY, at, book, make_clinic, sign_in


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


@pytest.fixture
def clinic(session):
    c = make_clinic(session)
    session.commit()
    return c


def _desk(client, clinic, role="front_desk"):
    assert sign_in(client, clinic.users[role].email).status_code == 302
    return client


def test_week_view_without_a_chair_shows_every_chair(client, session, clinic, clock):
    chairs = [r for r in clinic.sf.resources if r.kind == "chair"]
    book(
        session,
        clinic.sf,
        clinic.infusion,
        at(DAY, 9),
        clock.now,
        n=1,
        name="Ada Lovelace",
        resource_id=chairs[0].id,
    )
    book(
        session,
        clinic.sf,
        clinic.infusion,
        at(DAY, 10),
        clock.now,
        n=2,
        name="Alan Turing",
        resource_id=chairs[2].id,
    )
    friday = DAY.replace(day=4)
    book(
        session,
        clinic.sf,
        clinic.infusion,
        at(friday, 14),
        clock.now,
        n=3,
        name="Grace Hopper",
        resource_id=chairs[2].id,
    )
    session.commit()
    r = _desk(client, clinic).get(f"/staff/sf/calendar?date={DAY}&view=week")
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html
    assert "resource: required" not in html
    rows = re.findall(r'<tr data-resource="(\d+)">(.*?)</tr>', html, re.S)
    assert [int(rid) for rid, _ in rows] == [res.id for res in clinic.sf.resources]
    by_id = dict(rows)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", by_id[str(chairs[2].id)], re.S)
    assert len(cells) == 7  # Monday 30 Nov .. Sunday 6 Dec
    assert "Alan Turing" in cells[1] and "10:00" in cells[1]  # Tuesday
    assert "Grace Hopper" in cells[4] and "14:00" in cells[4]  # Friday
    assert "Ada Lovelace" in by_id[str(chairs[0].id)]
    assert "Ada Lovelace" not in by_id[str(chairs[2].id)]


def test_day_sheet_lists_the_visits_by_time_with_phone_links(client, session, clinic, clock):
    chairs = [r for r in clinic.sf.resources if r.kind == "chair"]
    late = book(
        session,
        clinic.sf,
        clinic.infusion,
        at(DAY, 15),
        clock.now,
        n=7,
        name="Barbara Liskov",
        resource_id=chairs[1].id,
    )
    early = book(
        session,
        clinic.sf,
        clinic.infusion,
        at(DAY, 8, 30),
        clock.now,
        n=8,
        name="Edsger Dijkstra",
        resource_id=chairs[3].id,
    )
    gone = book(
        session, clinic.sf, clinic.infusion, at(DAY, 11), clock.now, n=9, name="Cancelled Person"
    )
    booking.cancel(
        session, gone, now=clock.now, settings=ClinicSettings(), by_staff=True, reason="ill"
    )
    early.note = "Needs a blanket"
    session.commit()
    html = _desk(client, clinic).get(f"/staff/sf/day-sheet?date={DAY}").get_data(as_text=True)
    rows = re.findall(r'<tr data-appointment="(\d+)">(.*?)</tr>', html, re.S)
    assert [int(a) for a, _ in rows] == [early.id, late.id]  # by time; cancelled left out
    first = rows[0][1]
    assert "08:30–09:10" in first and "Edsger Dijkstra" in first and "Chair 4" in first
    assert 'href="tel:+14155550008"' in first and "(415) 555-0008" in first
    assert "Needs a blanket" in first and "Infusion (40 minutes)" in first
    # No nurse or escort columns until visits carry those fields.
    assert ">Nurse<" not in html and ">Escort<" not in html


def test_status_change_from_the_calendar_comes_back_to_the_same_view(
    client, session, clinic, clock
):
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now, name="Ada Lovelace")
    chair = appt.resource_id
    session.commit()
    desk = _desk(client, clinic)
    html = desk.get(f"/staff/sf/calendar?date={DAY}").get_data(as_text=True)
    assert f'data-quick="{appt.id}"' in html and 'aria-label="Check in Ada Lovelace"' in html
    r = desk.post(
        f"/staff/appointments/{appt.id}/status",
        data={"status": "checked_in", "next": "calendar", "view": "day", "date": str(DAY)},
    )
    assert r.status_code == 303
    assert r.headers["Location"].endswith(f"/staff/sf/calendar?date={DAY}#appt-{appt.id}")
    # From the chair's week view: back to that week view.
    r = desk.post(
        f"/staff/appointments/{appt.id}/status",
        data={
            "status": "completed",
            "next": "calendar",
            "view": "week",
            "date": str(DAY),
            "resource": str(chair),
        },
    )
    assert r.headers["Location"].endswith(
        f"/staff/sf/calendar?date={DAY}&view=week&resource={chair}#appt-{appt.id}"
    )
    # A refused change comes back too, saying why, and changes nothing.
    r = desk.post(
        f"/staff/appointments/{appt.id}/status",
        data={"status": "no_show", "next": "calendar", "view": "day", "date": str(DAY)},
    )
    assert r.status_code == 303
    page = desk.get(r.headers["Location"]).get_data(as_text=True)
    assert "cannot become no_show" in page
    session.expire_all()
    assert session.get(type(appt), appt.id).status == "completed"


def test_staff_read_local_times_labels_and_formatted_phones(client, session, clinic, clock):
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now, n=1200)
    session.commit()
    desk = _desk(client, clinic, "admin")
    assert (
        desk.post(
            f"/staff/appointments/{appt.id}/status", data={"status": "checked_in"}
        ).status_code
        == 303
    )
    log = desk.get("/staff/audit").get_data(as_text=True)
    # Checked in at the fixed clock: 16:00 UTC is 08:00 in San Francisco.
    assert ">Mon 30 Nov 2026 08:00 PST<" in log and "16:00 UTC" not in log
    assert ">Checked in<" in log and ">appointment.checked_in<" not in log
    page = desk.get(f"/staff/appointments/{appt.id}").get_data(as_text=True)
    assert '<a href="tel:+14155551200" data-testid="phone">(415) 555-1200</a>' in page
    assert "reminder id" not in page and "reminder_id" not in page
    assert ">Planned<" in page  # the reminders' events in words
