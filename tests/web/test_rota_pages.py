"""The rota page, the calendar's floor (on shift, nurse load), the visit's nurse and the staffing
rules on the settings page, through the Flask test client on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import AuditEntry
from scheduler.services import rota_view, staffing
from tests.test_staffing_support import rota
from tests.web.staff_support import DAY, LA, NY, at, book, make_clinic, sign_in

MONDAY = DAY - dt.timedelta(days=DAY.weekday())


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


@pytest.fixture
def clinic(session):
    clinic = make_clinic(session)
    (doc,), nurses = rota(
        session, clinic.sf, nurses=2, hours=(dt.time(8), dt.time(18)), patients_per_nurse=1
    )
    session.commit()
    return clinic, doc, nurses


def _as(client, clinic, role: str):
    r = sign_in(client, clinic.users[role].email)
    assert r.status_code == 302
    return client


def _audit(session, action: str) -> list[AuditEntry]:
    session.expire_all()
    return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


@pytest.mark.parametrize("role", ["front_desk", "nurse"])
def test_front_desk_and_nurses_read_the_week_without_edit_forms(client, clinic, role):
    c, doc, nurses = clinic
    _as(client, c, role)
    r = client.get(f"/staff/sf/rota?date={DAY}")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert f"Week of {MONDAY:%a %d %b %Y}" in html
    assert "times in America/Los_Angeles" in html
    assert doc.name in html and nurses[0].name in html
    # Seven days x three clinicians, 08:00-18:00 local each day.
    assert html.count("08:00–18:00") == 21
    assert 'id="add-shift"' not in html and ">Remove<" not in html
    assert "Managers and admins change the rota." in html
    r = client.post("/staff/sf/rota/copy", data={"week": str(DAY), "target": "2026-12-08"})
    assert r.status_code == 403
    # The staff nav links each location's rota.
    assert 'href="/staff/sf/rota"' in html


def test_manager_adds_a_one_off_and_a_weekly_shift(client, session, clinic):
    c, doc, nurses = clinic
    extra = staffing.create_clinician(session, name="Nora Night", role="nurse")
    session.commit()
    _as(client, c, "manager")
    data = {"week": str(DAY), "clinician": str(extra.id), "date": str(DAY)}
    r = client.post("/staff/sf/rota/shifts", data={**data, "starts": "18:00", "ends": "00:00"})
    assert r.status_code == 303
    assert r.headers["Location"].endswith(f"/staff/sf/rota?date={DAY}")
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Shift added: Nora Night, Tue 01 Dec 18:00–24:00." in html
    shifts = staffing.location_shifts(session, c.sf, DAY, DAY)
    mine = [s for s in shifts if s.clinician_id == extra.id]
    assert [(s.start, s.end) for s in mine] == [(at(DAY, 18), at(DAY + dt.timedelta(days=1), 0))]
    (entry,) = _audit(session, "shift.created")
    assert entry.location_id == c.sf.id and "Nora Night" in entry.details
    # Weekly from Wednesday: the following Wednesday has it too.
    r = client.post(
        "/staff/sf/rota/shifts",
        data={**data, "date": "2026-12-02", "starts": "07:00", "ends": "11:00", "weekly": "on"},
    )
    assert r.status_code == 303
    later = staffing.location_shifts(session, c.sf, dt.date(2026, 12, 9), dt.date(2026, 12, 9))
    assert any(s.clinician_id == extra.id and s.start == at(dt.date(2026, 12, 9), 7) for s in later)
    # Overlapping its own shift: clinician_busy, shown beside the form with the values kept.
    r = client.post("/staff/sf/rota/shifts", data={**data, "starts": "20:00", "ends": "22:00"})
    html = r.get_data(as_text=True)
    assert r.status_code == 409
    assert 'id="refused-add"' in html and "Nora Night already has a shift then" in html
    assert 'value="20:00"' in html


def test_removing_a_shift_booked_visits_need_is_refused_in_place(client, session, clinic, clock):
    c, doc, nurses = clinic
    appt = book(session, c.sf, c.infusion, at(DAY, 10), clock.now, name="Ada Lovelace")
    session.commit()
    shift_id = f"p{_first_pattern(session, doc, DAY)}:{DAY}"
    _as(client, c, "manager")
    r = client.post(f"/staff/sf/rota/shifts/{shift_id}/delete", data={"week": str(DAY)})
    html = r.get_data(as_text=True)
    assert r.status_code == 409
    # The reason sits in the shift's cell, naming the visit as the calendar does.
    cell = html[html.index(f'data-shift="{shift_id}"') :]
    cell = cell[: cell.index("</td>")]
    assert "Booked visits need this shift" in cell
    assert "Tue 01 Dec 10:00–10:40 Ada Lovelace" in cell
    assert f"/staff/appointments/{appt.id}" in cell
    assert any(s.id == shift_id for s in staffing.location_shifts(session, c.sf, DAY, DAY))
    assert _audit(session, "shift.removed") == []
    # A nurse's shift that day is not needed at 1 patient per nurse with one infusion: removed.
    nurse_shift = f"p{_first_pattern(session, nurses[1], DAY)}:{DAY}"
    r = client.post(f"/staff/sf/rota/shifts/{nurse_shift}/delete", data={"week": str(DAY)})
    assert r.status_code == 303
    assert nurse_shift not in {s.id for s in staffing.location_shifts(session, c.sf, DAY, DAY)}
    (entry,) = _audit(session, "shift.removed")
    assert nurses[1].name in entry.details
    # Unknown shift ids are a 404 page, never a 500.
    r = client.post("/staff/sf/rota/shifts/p999999:2026-12-01/delete", data={"week": str(DAY)})
    assert r.status_code == 404


def _first_pattern(session, clinician, day):
    from scheduler.models import ShiftPattern

    return session.scalars(
        select(ShiftPattern.id).where(
            ShiftPattern.clinician_id == clinician.id, ShiftPattern.weekday == day.weekday()
        )
    ).first()


def test_cover_leave_and_copy_a_week(client, session, clinic, clock):
    c, doc, nurses = clinic
    floater = staffing.create_clinician(session, name="Flo Float", role="nurse")
    staffing.add_shift(session, c.ny, floater.id, at(DAY, 8, tz=NY), at(DAY, 12, tz=NY))
    session.commit()
    _as(client, c, "manager")
    cover = {"week": str(DAY), "kind": "cover", "clinician": str(floater.id), "date": str(DAY)}
    # 08:00-12:00 in New York is 05:00-09:00 in San Francisco: a cover 08:00-12:00 here clashes.
    r = client.post("/staff/sf/rota/shifts", data={**cover, "starts": "08:00", "ends": "12:00"})
    html = r.get_data(as_text=True)
    assert r.status_code == 409 and 'id="refused-cover"' in html
    # The clash is at New York, which this manager cannot see: its times are not shown.
    assert "Flo Float already has a shift then (at another location)." in html
    assert "05:00-09:00" not in html
    r = client.post("/staff/sf/rota/shifts", data={**cover, "starts": "12:00", "ends": "16:00"})
    assert r.status_code == 303
    (entry,) = _audit(session, "shift.cover")
    assert "Cover" in entry.details
    # Leave for a nurse on Wednesday: that day's pattern occurrence is gone, Thursday's stays.
    wed = DAY + dt.timedelta(days=1)
    leave = {"week": str(DAY), "clinician": str(nurses[0].id), "date": str(wed), "reason": "flu"}
    assert client.post("/staff/sf/rota/leave", data=leave).status_code == 303
    days = {
        s.start.astimezone(LA).date()
        for s in staffing.location_shifts(session, c.sf, wed, wed + dt.timedelta(days=1))
        if s.clinician_id == nurses[0].id
    }
    assert days == {wed + dt.timedelta(days=1)}
    # Leave on a day with no weekly shift is explained beside the leave form.
    r = client.post("/staff/sf/rota/leave", data={**leave, "clinician": str(floater.id)})
    assert r.status_code == 422 and 'id="refused-leave"' in r.get_data(as_text=True)
    # Copy the week (with the cover, without Wednesday's nurse) to the week after next.
    target = MONDAY + dt.timedelta(days=14)
    r = client.post("/staff/sf/rota/copy", data={"week": str(DAY), "target": str(target)})
    assert r.status_code == 303
    copied = staffing.location_shifts(session, c.sf, target, target + dt.timedelta(days=6))
    tue = target + dt.timedelta(days=1)
    assert any(s.clinician_id == floater.id and s.start == at(tue, 12) for s in copied)
    assert len(copied) == 21 + 1  # patterns 3 x 7, plus the cover; Wednesday's copy kept leave
    (entry,) = _audit(session, "shift.week_copied")
    assert '"shifts": ' in entry.details


def test_calendar_shows_who_is_on_shift_and_nurse_load_against_capacity(
    client, session, clinic, clock
):
    c, doc, nurses = clinic
    book(session, c.sf, c.infusion, at(DAY, 10), clock.now, 1, "Ada Lovelace")
    book(session, c.sf, c.infusion, at(DAY, 10, 15), clock.now, 2, "Grace Hopper")
    session.commit()
    _as(client, c, "front_desk")
    html = client.get(f"/staff/sf/calendar?date={DAY}").get_data(as_text=True)
    on_shift = html[html.index('id="on-shift"') :]
    on_shift = on_shift[: on_shift.index("</ul>")]
    assert f"{doc.name} <span" in on_shift and "Prescriber, 08:00–18:00" in on_shift
    assert nurses[0].name in on_shift and nurses[1].name in on_shift
    cells = dict(
        (h, (int(p), int(cap), state))
        for h, p, cap, state in re.findall(
            r'data-hour="(\d\d:00)" data-patients="(\d+)" data-capacity="(\d+)" data-state="(\w+)"',
            html,
        )
    )
    # Two infusions 09:50-10:50 and 10:05-11:05, two nurses at one patient each: full.
    assert cells["08:00"] == (0, 2, "ok")
    assert cells["09:00"] == (1, 2, "ok")
    assert cells["10:00"] == (2, 2, "full")
    assert cells["11:00"] == (1, 2, "ok")
    assert "10:00: 2 patients in infusion, nurse capacity 2, at capacity." in html
    # Each infusion shows its nurse, balanced across the two.
    assert html.count("Nurse: ") == 2
    assert f"Nurse: {nurses[0].name}" in html and f"Nurse: {nurses[1].name}" in html


def test_hourly_load_marks_over_capacity_and_the_tightest_instant():
    t = dt.datetime(2026, 12, 1, 16, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)
    points = [
        (t, 0, 4),
        (t + dt.timedelta(minutes=30), 3, 4),
        (t + hour, 3, 2),
        (t + 2 * hour, 0, 0),
    ]
    hours = [(t + i * hour, f"{8 + i:02d}:00") for i in range(3)]
    load = rota_view.hourly_load(points, hours)
    assert [(h.patients, h.capacity, h.state, h.percent) for h in load] == [
        (3, 4, "ok", 75),
        (3, 2, "over", 100),
        (0, 0, "ok", 0),
    ]


def test_staff_change_an_infusions_nurse_within_the_rules(client, session, clinic, clock):
    c, doc, nurses = clinic
    first = book(session, c.sf, c.infusion, at(DAY, 10), clock.now, 1, "Ada Lovelace")
    second = book(session, c.sf, c.infusion, at(DAY, 13), clock.now, 2, "Grace Hopper")
    outsider = staffing.create_clinician(session, name="Off Rota", role="nurse")
    session.commit()
    assert first.nurse_id is not None
    other = next(n for n in nurses if n.id != first.nurse_id)
    _as(client, c, "front_desk")
    page = client.get(f"/staff/appointments/{first.id}").get_data(as_text=True)
    assert 'id="nurse"' in page and other.name in page and "Off Rota" not in page
    r = client.post(f"/staff/appointments/{first.id}/nurse", data={"nurse": str(other.id)})
    assert r.status_code == 303
    session.expire_all()
    assert session.get(type(first), first.id).nurse_id == other.id
    (entry,) = _audit(session, "appointment.nurse_changed")
    assert entry.appointment_id == first.id and other.name in entry.details
    # A nurse not on shift then is refused on the visit page.
    r = client.post(f"/staff/appointments/{first.id}/nurse", data={"nurse": str(outsider.id)})
    assert r.status_code == 422
    assert "That nurse is not on shift here when this visit starts." in r.get_data(as_text=True)
    # One patient per nurse: the 13:00 visit's nurse cannot also take a 13:00 infusion.
    third = book(session, c.sf, c.infusion, at(DAY, 13), clock.now, 3, "Alan Turing")
    session.commit()
    busy_nurse = session.get(type(second), second.id).nurse_id
    r = client.post(f"/staff/appointments/{third.id}/nurse", data={"nurse": str(busy_nurse)})
    assert r.status_code == 409
    assert "already watches 1 patients during this visit" in r.get_data(as_text=True)
    # Junk is a 422 naming the field, not a 500.
    r = client.post(f"/staff/appointments/{first.id}/nurse", data={"nurse": "x"})
    assert r.status_code == 422


def test_settings_page_staffing_rules_and_the_refusal_in_place(client, session, clinic, clock):
    c, doc, nurses = clinic
    book(session, c.sf, c.infusion, at(DAY, 10), clock.now, 1, "Ada Lovelace")
    book(session, c.sf, c.infusion, at(DAY, 10, 15), clock.now, 2, "Grace Hopper")
    session.commit()
    _as(client, c, "manager")
    html = client.get("/staff/settings/locations/sf").get_data(as_text=True)
    assert 'id="staffing-form"' in html and 'name="rules" checked' in html
    assert 'id="staffing-off"' not in html
    form = {"rules": "on", "patients_per_nurse": "1", "starts_per_window": "2"}
    form["start_window_minutes"] = "30"
    # Two starts within 15 minutes: one start per 30 minutes would strand one of them.
    r = client.post(
        "/staff/settings/locations/sf/staffing", data={**form, "starts_per_window": "1"}
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 409
    section = html[html.index('id="staffing"') :]
    assert "Booked visits would break these rules" in section
    assert "Tue 01 Dec 10:15–10:55 Grace Hopper" in section
    r = client.post(
        "/staff/settings/locations/sf/staffing", data={**form, "starts_per_window": "x"}
    )
    assert r.status_code == 422
    # Rules off: saved, audited, and the page says plainly what turning them on does.
    r = client.post("/staff/settings/locations/sf/staffing", data={**form, "rules": ""})
    assert r.status_code == 303
    html = client.get("/staff/settings/locations/sf").get_data(as_text=True)
    assert "The staffing rules are off at this location." in html
    assert "a prescriber is on shift for all of it" in html
    (entry,) = _audit(session, "staffing.changed")
    assert '"rules": false' in entry.details
    _as(client, c, "front_desk")
    r = client.post("/staff/settings/locations/sf/staffing", data=form)
    assert r.status_code == 403


def test_staff_free_times_for_a_consultation_name_the_free_prescriber(client, session, clinic):
    clinic, doc, _ = clinic
    page = _as(client, clinic, "front_desk").get(
        f"/staff/sf/book?service={clinic.consult.slug}&date={DAY}"
    )
    html = page.get_data(as_text=True)
    free = html.split('id="free-times"')[1].split("</ul>")[0]
    assert f"· with {doc.name}</span>" in free
    assert f", with {doc.name}" in free  # in the link's spoken name too
