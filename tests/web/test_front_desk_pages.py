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
    # Before its start a visit cannot be a no-show: not offered, and refused if sent.
    assert 'aria-label="No-show Ada Lovelace"' not in html
    r = desk.post(
        f"/staff/appointments/{appt.id}/status",
        data={"status": "no_show", "next": "calendar", "view": "day", "date": str(DAY)},
    )
    page = desk.get(r.headers["Location"]).get_data(as_text=True)
    assert "cannot be marked no_show before then" in page
    clock.now = at(DAY, 9, 5)
    html = desk.get(f"/staff/sf/calendar?date={DAY}").get_data(as_text=True)
    assert 'aria-label="No-show Ada Lovelace"' in html
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


def _form(client, path):
    return client.get(path).get_data(as_text=True)


FREE = re.compile(
    r'class="btn free-time" href="[^"]*"\s+data-service="([^"]+)" data-date="([^"]+)" '
    r'data-time="([^"]+)" data-resource="(\d*)"'
)


def test_book_page_lists_the_free_times_of_the_chosen_service_day_and_chair(
    client, session, clinic, clock
):
    chairs = [r for r in clinic.sf.resources if r.kind == "chair"]
    # Chair 2 is taken 09:00-09:40 (occupied 08:50-09:50).
    book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now, resource_id=chairs[1].id)
    session.commit()
    desk = _desk(client, clinic)
    html = _form(desk, f"/staff/sf/book?service=infusion&date={DAY}&resource={chairs[1].id}")
    times = FREE.findall(html)
    starts = [t for _, _, t, _ in times]
    # 08:15 would need the chair from 08:05 to 09:05: the first free start is 10:00.
    assert starts[:3] == ["10:00", "10:15", "10:30"] and starts[-1] == "17:00"
    assert {(s, d, r) for s, d, _, r in times} == {("infusion", str(DAY), str(chairs[1].id))}
    # Any chair: 09:00 is free elsewhere; each time leaves the chair to the booking ("any
    # free") and says how many more bookings it can take.
    html = _form(desk, f"/staff/sf/book?service=infusion&date={DAY}")
    first = FREE.findall(html)[0][2]
    assert "08:00" < first <= "08:15"  # the first start whose prep fits after opening
    nine = [t for t in FREE.findall(html) if t[2] == "09:00"]
    assert nine and nine[0][3] == ""
    assert '09:00 <span class="muted">any chair · 3 free</span>' in html
    # A clicked time (without script) comes back with the form filled in.
    html = _form(
        desk, f"/staff/sf/book?service=infusion&date={DAY}&time=10:00&resource={chairs[1].id}"
    )
    assert 'name="time" step="300" value="10:00"' in html
    assert f'<option value="{chairs[1].id}" selected>' in html


def test_staff_book_by_phone_without_email_and_the_api_still_needs_one(
    client, session, clinic, clock
):
    from sqlalchemy import func, select

    from scheduler.models import Appointment, MailOutbox

    desk = _desk(client, clinic)
    r = desk.post(
        "/staff/sf/book",
        data={
            "service": "infusion",
            "date": str(DAY),
            "time": "10:00",
            "name": "Phone Caller",
            "phone": "(415) 555-0133",
            "email": "",
        },
    )
    assert r.status_code == 303, r.get_data(as_text=True)
    appt = session.scalars(select(Appointment)).one()
    assert appt.patient.email == "" and appt.patient.phone == "+14155550133"
    assert session.scalar(select(func.count()).select_from(MailOutbox)) == 0  # no invite to send
    # A bad address is still refused when one is given.
    r = desk.post(
        "/staff/sf/book",
        data={
            "service": "infusion",
            "date": str(DAY),
            "time": "11:00",
            "name": "Typo",
            "phone": "(415) 555-0134",
            "email": "not-an-email",
        },
    )
    assert r.status_code == 422
    body = {
        "location": "sf",
        "service": "infusion",
        "start": f"{DAY}T12:00:00-08:00",
        "patient": {"name": "Pat", "phone": "+14155550199", "email": ""},
    }
    r = client.post("/api/v1/appointments", json=body)
    assert r.status_code == 422 and "patient.email" in r.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    ("time", "chair", "field"),
    [("06:30", None, "start"), ("09:00", 0, "resource")],
    ids=["before-opening", "chair-taken"],
)
def test_a_refused_time_offers_the_nearest_free_ones(
    client, session, clinic, clock, time, chair, field
):
    chairs = [r for r in clinic.sf.resources if r.kind == "chair"]
    book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now, resource_id=chairs[0].id)
    session.commit()
    resource = "" if chair is None else str(chairs[chair].id)
    r = _desk(client, clinic).post(
        "/staff/sf/book",
        data={
            "service": "infusion",
            "date": str(DAY),
            "time": time,
            "resource": resource,
            "name": "Pat Caller",
            "phone": "(415) 555-0135",
        },
    )
    html = r.get_data(as_text=True)
    assert r.status_code in (409, 422)
    assert f"<strong>{field}</strong>" in html
    nearest = html.split('id="nearest-times"')[1].split("</ul>")[0]
    offered = [t for _, _, t, _ in FREE.findall(nearest)]
    assert len(offered) == 6
    if chair is None:
        # Staff may book any minute that fits; 06:30 is before opening: the first fitting ones.
        assert all("08:00" < t < "10:00" for t in offered) and offered == sorted(offered)
    else:
        assert "09:00" not in offered and "09:45" not in offered and "10:00" in offered
        assert set(re.findall(r'data-resource="(\d+)"', nearest)) == {resource}


def test_a_move_from_the_calendar_answers_its_script_in_json(client, session, clinic, clock):
    chairs = [r for r in clinic.sf.resources if r.kind == "chair"]
    ada = book(
        session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now, n=1, resource_id=chairs[0].id
    )
    book(session, clinic.sf, clinic.infusion, at(DAY, 11), clock.now, n=2, resource_id=chairs[2].id)
    session.commit()
    desk = _desk(client, clinic)
    form = {"next": "calendar", "view": "day", "date": str(DAY)}
    json_accept = {"Accept": "application/json"}
    # Refused (Chair 3 is taken at 11:00): a JSON error naming the field; nothing changes.
    r = desk.post(
        f"/staff/appointments/{ada.id}/move",
        headers=json_accept,
        data={**form, "resource": str(chairs[2].id), "time": "11:00"},
    )
    assert r.status_code == 409
    assert r.get_json()["error"]["fields"] == {"resource": "not free at that time"}
    session.expire_all()
    assert session.get(type(ada), ada.id).start_at == at(DAY, 9)
    # Accepted: where the calendar goes next (the same day and view).
    r = desk.post(
        f"/staff/appointments/{ada.id}/move",
        headers=json_accept,
        data={**form, "resource": str(chairs[1].id), "time": "10:30"},
    )
    assert r.status_code == 200
    assert r.get_json() == {"location": f"/staff/sf/calendar?date={DAY}"}
    session.expire_all()
    moved = session.get(type(ada), ada.id)
    assert (moved.resource_id, moved.start_at) == (chairs[1].id, at(DAY, 10, 30))
    # Without script (a plain form post), a refusal goes back to the calendar with the reason.
    r = desk.post(
        f"/staff/appointments/{ada.id}/move",
        data={**form, "resource": str(chairs[2].id), "time": "11:00"},
    )
    assert r.status_code == 303 and r.headers["Location"].endswith(f"#appt-{ada.id}")
    assert "was not moved: That chair is not free" in desk.get(r.headers["Location"]).get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/staff/sf/book?date=2026-02-30&resource=abc&service=nope", 200),
        ("/staff/sf/book?date=junk&service=infusion&resource=999999", 200),
        ("/staff/sf/book?date=2026-12-01&service=infusion&resource=5", 200),  # a room: ignored
        ("/staff/sf/day-sheet?date=junk", 400),
        ("/staff/sf/day-sheet?date=9999-12-31", 400),
        ("/staff/sf/calendar?date=9999-12-31", 400),
        ("/staff/sf/calendar?view=week&resource=999999", 422),
        ("/staff/sf/calendar?view=week&date=0001-01-01", 400),
    ],
    ids=[
        "bad-date-chair-service",
        "junk-date",
        "room-for-infusion",
        "sheet-junk-date",
        "sheet-far-future",
        "calendar-far-future",
        "week-unknown-chair",
        "week-year-one",
    ],
)
def test_odd_queries_answer_without_a_server_error(client, clinic, path, status):
    r = _desk(client, clinic).get(path)
    assert r.status_code == status, r.get_data(as_text=True)[-500:]


def test_a_patient_booked_without_email_still_gets_a_calendar_file(client, session, clinic):
    desk = _desk(client, clinic)
    r = desk.post(
        "/staff/sf/book",
        data={
            "service": "infusion",
            "date": str(DAY),
            "time": "10:00",
            "name": "No Mail",
            "phone": "(415) 555-0140",
        },
    )
    assert r.status_code == 303
    from sqlalchemy import select

    from scheduler.models import Appointment

    token = session.scalars(select(Appointment)).one().manage_token
    r = client.get(f"/a/{token}/invite.ics")
    assert r.status_code == 200
    ics = r.get_data(as_text=True)
    assert "BEGIN:VEVENT" in ics and "ATTENDEE" not in ics and "mailto:\r" not in ics
