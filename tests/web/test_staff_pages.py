"""Staff portal pages through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import ApiToken, Appointment, AuditEntry, ResourceBlock, StaffUser
from scheduler.services import audit, booking
from tests.web.staff_support import DAY, at, book, make_clinic, sign_in


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


@pytest.fixture
def clinic(session):
    c = make_clinic(session)
    session.commit()
    return c


def _signed_in(client, clinic, role="front_desk"):
    r = sign_in(client, clinic.users[role].email)
    assert r.status_code == 302, r.get_data(as_text=True)
    return client


def test_staff_pages_need_sign_in(client, clinic):
    r = client.get("/staff/sf/calendar")
    assert r.status_code == 302
    assert "/staff/sign-in" in r.headers["Location"]


def test_sign_in_then_calendar_shows_the_booking_in_its_chair_at_local_time(
    client, session, clinic, clock
):
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 9, 15), clock.now, name="Ada Lovelace")
    session.commit()
    _signed_in(client, clinic)
    r = client.get(f"/staff/sf/calendar?date={DAY}")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "Ada Lovelace" in html
    assert "09:15–09:55" in html
    # Chair 1 is grid column 2 (column 1 is the time gutter); 08:00 is row 1, 09:15 row 16.
    assert 'class="appt st-booked cs2 ce3 rs16 re24"' in html
    assert f'data-appointment="{appt.id}"' in html
    assert r.headers["Cache-Control"] == "no-store"


def test_calendar_week_view_and_summary(client, session, clinic, clock):
    book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, name="Week Patient")
    session.commit()
    _signed_in(client, clinic)
    chair1 = clinic.sf.resources[0]
    r = client.get(f"/staff/sf/calendar?date={DAY}&view=week&resource={chair1.id}")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "Week Patient" in html
    assert "Tue 01 Dec" in html
    # Tuesday is the second day column (grid column 3).
    assert 'class="appt st-booked cs3 ce4' in html
    s = client.get(f"/staff/sf/summary?date={DAY}")
    assert s.status_code == 200
    assert "Chairs in use by hour" in s.get_data(as_text=True)


def test_now_line_is_drawn_today_only(client, session, clinic, clock):
    _signed_in(client, clinic)
    today = client.get("/staff/sf/calendar?date=2026-11-30").get_data(as_text=True)
    assert 'class="nowline' in today
    # 08:00 local is the first row of the day.
    assert "nowline cs2 ce7 rs1 re2 off0" in today
    assert 'class="nowline' not in client.get(f"/staff/sf/calendar?date={DAY}").get_data(
        as_text=True
    )


def test_bad_date_is_a_400_naming_the_field(client, clinic):
    _signed_in(client, clinic)
    r = client.get("/staff/sf/calendar?date=yesterday")
    assert r.status_code == 400
    assert "YYYY-MM-DD" in r.get_data(as_text=True)


def test_walk_in_inside_minimum_notice_is_booked_by_staff(client, session, clinic, clock):
    _signed_in(client, clinic)
    chair2 = clinic.sf.resources[1]
    # Now is 08:00 local; the service asks for 2 hours' notice online, staff may book 08:30.
    r = client.post(
        "/staff/sf/book",
        data={
            "service": "infusion",
            "date": "2026-11-30",
            "time": "08:30",
            "resource": str(chair2.id),
            "name": "Walk In",
            "phone": "+14155550199",
            "email": "walk@example.com",
        },
    )
    assert r.status_code == 303, r.get_data(as_text=True)
    appt = session.scalars(select(Appointment)).one()
    assert appt.source == "staff"
    assert appt.resource_id == chair2.id
    assert appt.start_at == at(dt.date(2026, 11, 30), 8, 30)
    entry = session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.staff_id, entry.appointment_id) == (
        "appointment.booked",
        clinic.users["front_desk"].id,
        appt.id,
    )


def test_staff_can_never_double_book_a_chair(client, session, clinic, clock):
    first = book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now)
    session.commit()
    _signed_in(client, clinic)
    r = client.post(
        "/staff/sf/book",
        data={
            "service": "infusion",
            "date": DAY.isoformat(),
            "time": "09:15",
            "resource": str(first.resource_id),
            "name": "Second",
            "phone": "+14155550198",
            "email": "second@example.com",
        },
    )
    assert r.status_code == 409
    assert "not free" in r.get_data(as_text=True)
    assert session.scalars(select(Appointment)).all() == [first]


def test_book_form_names_bad_fields(client, clinic):
    _signed_in(client, clinic)
    r = client.post(
        "/staff/sf/book",
        data={"service": "infusion", "date": DAY.isoformat(), "time": "9am", "name": "X"},
    )
    assert r.status_code == 422
    assert "HH:MM" in r.get_data(as_text=True)


def test_move_to_another_chair_and_time_is_audited(client, session, clinic, clock):
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now)
    session.commit()
    chair3 = clinic.sf.resources[2]
    _signed_in(client, clinic)
    r = client.post(
        f"/staff/appointments/{appt.id}/move",
        data={"resource": str(chair3.id), "date": DAY.isoformat(), "time": "11:00"},
    )
    assert r.status_code == 303, r.get_data(as_text=True)
    session.expire_all()
    moved = session.get(Appointment, appt.id)
    assert moved.resource_id == chair3.id
    assert moved.start_at == at(DAY, 11)
    page = client.get(f"/staff/appointments/{appt.id}").get_data(as_text=True)
    assert "Front Desk User" in page and "moved" in page
    assert "Chair 1 2026-12-01 09:00" in page and "Chair 3 2026-12-01 11:00" in page


def test_move_onto_a_taken_chair_is_refused(client, session, clinic, clock):
    a = book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now, n=1)
    b = book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now, n=2)
    session.commit()
    _signed_in(client, clinic)
    r = client.post(
        f"/staff/appointments/{a.id}/move",
        data={"resource": str(b.resource_id), "date": DAY.isoformat(), "time": "09:00"},
    )
    assert r.status_code == 409
    session.expire_all()
    assert session.get(Appointment, a.id).resource_id != b.resource_id


@pytest.mark.parametrize(
    ("status", "label"),
    [("checked_in", "Checked in"), ("completed", "Completed"), ("no_show", "No-show")],
)
def test_status_actions(client, session, clinic, clock, status, label):
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now)
    session.commit()
    _signed_in(client, clinic, "nurse")
    clock.now = at(DAY, 9, 5)  # completed and no-show only once the visit has started
    r = client.post(f"/staff/appointments/{appt.id}/status", data={"status": status})
    assert r.status_code == 303
    session.expire_all()
    assert session.get(Appointment, appt.id).status == status
    page = client.get(f"/staff/appointments/{appt.id}").get_data(as_text=True)
    assert f'data-status="{status}"' in page
    assert label in page


def test_cancel_needs_a_reason_and_records_it(client, session, clinic, clock):
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now)
    session.commit()
    _signed_in(client, clinic)
    r = client.post(f"/staff/appointments/{appt.id}/cancel", data={"reason": ""})
    assert r.status_code == 422
    r = client.post(f"/staff/appointments/{appt.id}/cancel", data={"reason": "Patient is unwell"})
    assert r.status_code == 303
    session.expire_all()
    cancelled = session.get(Appointment, appt.id)
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "Patient is unwell")
    page = client.get(f"/staff/appointments/{appt.id}").get_data(as_text=True)
    assert "Patient is unwell" in page


def test_block_is_refused_over_a_booking_showing_which(client, session, clinic, clock):
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, name="In The Way")
    session.commit()
    _signed_in(client, clinic)
    r = client.post(
        "/staff/sf/blocks",
        data={
            "resource": str(appt.resource_id),
            "date": DAY.isoformat(),
            "start": "09:00",
            "end": "12:00",
            "reason": "Pump service",
        },
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 409
    assert "In The Way" in html and "10:00" in html
    assert f"/staff/appointments/{appt.id}" in html
    assert session.scalars(select(ResourceBlock)).all() == []


def test_block_and_unblock(client, session, clinic):
    chair4 = clinic.sf.resources[3]
    _signed_in(client, clinic)
    r = client.post(
        "/staff/sf/blocks",
        data={
            "resource": str(chair4.id),
            "date": DAY.isoformat(),
            "start": "13:00",
            "end": "15:00",
            "reason": "Pump service",
        },
    )
    assert r.status_code == 303, r.get_data(as_text=True)
    block = session.scalars(select(ResourceBlock)).one()
    assert (block.start_at, block.end_at) == (at(DAY, 13), at(DAY, 15))
    html = client.get(f"/staff/sf/calendar?date={DAY}").get_data(as_text=True)
    assert "Blocked 13:00–15:00" in html and "Pump service" in html
    r = client.post(f"/staff/sf/blocks/{block.id}/delete", data={})
    assert r.status_code == 303
    session.expire_all()
    assert session.scalars(select(ResourceBlock)).all() == []
    actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["block.created", "block.removed"]


def test_lockout_after_repeated_failures(client, session, clinic, clock):
    email = clinic.users["nurse"].email
    for _ in range(5):
        assert sign_in(client, email, "wrong password").status_code == 401
    r = sign_in(client, email)  # right password, but locked
    assert r.status_code == 429
    clock.advance(minutes=16)
    assert sign_in(client, email).status_code == 302


def test_passwords_are_never_logged_nor_echoed(client, session, clinic, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "hunter2-is-not-my-password"
    r = sign_in(client, clinic.users["nurse"].email, secret)
    assert secret not in r.get_data(as_text=True)
    _signed_in(client, clinic, "admin")
    new_pw = "a-brand-new-secret-pw"
    r = client.post(
        "/staff/settings/staff/new",
        data={"name": "N", "email": "bad", "role": "nurse", "password": new_pw, "active": "on"},
    )
    assert r.status_code == 422
    assert new_pw not in r.get_data(as_text=True)
    r = client.post(
        "/staff/settings/staff/new",
        data={
            "name": "New Nurse",
            "email": "new.nurse@clinic.example",
            "role": "nurse",
            "password": new_pw,
            "active": "on",
            "locations": str(clinic.sf.id),
        },
    )
    assert r.status_code == 303
    assert secret not in caplog.text and new_pw not in caplog.text
    assert clinic.users["nurse"].email not in caplog.text
    details = " ".join(e.details for e in session.scalars(select(AuditEntry)))
    assert new_pw not in details and "password_changed" in details
    created = session.scalars(select(StaffUser).where(StaffUser.name == "New Nurse")).one()
    assert new_pw not in created.password_hash


def test_session_cookie_is_httponly_and_lax(client, clinic):
    r = sign_in(client, clinic.users["nurse"].email)
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_sign_out_ends_the_session(client, clinic):
    _signed_in(client, clinic)
    assert client.post("/staff/sign-out").status_code == 302
    assert client.get("/staff/").status_code == 302


def test_api_token_is_shown_once_and_stored_hashed(client, session, clinic):
    _signed_in(client, clinic, "nurse")
    r = client.post("/staff/account/tokens", data={"label": "tablet"})
    assert r.status_code == 201
    html = r.get_data(as_text=True)
    token = html.split('<code class="token">')[1].split("</code>")[0]
    assert token.startswith("cs_")
    row = session.scalars(select(ApiToken).where(ApiToken.label == "tablet")).one()
    assert token not in row.token_hash
    assert token not in client.get("/staff/account").get_data(as_text=True)
    api = client.get(
        f"/api/v1/locations/sf/calendar?date={DAY}", headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status_code == 200
    client.post(f"/staff/account/tokens/{row.id}/revoke")
    api = client.get(
        f"/api/v1/locations/sf/calendar?date={DAY}", headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status_code == 401


def test_deactivating_a_user_ends_their_session_and_tokens(client, app, session, clinic):
    nurse_client = app.test_client()
    _signed_in(nurse_client, clinic, "nurse")
    assert nurse_client.get("/staff/sf/calendar").status_code == 200
    _signed_in(client, clinic, "admin")
    nurse = clinic.users["nurse"]
    r = client.post(
        f"/staff/settings/staff/{nurse.id}",
        data={
            "name": nurse.name,
            "email": nurse.email,
            "role": "nurse",
            "locations": str(clinic.sf.id),
        },  # "active" unticked
    )
    assert r.status_code == 303, r.get_data(as_text=True)
    assert nurse_client.get("/staff/sf/calendar").status_code == 302
    api = client.get(
        "/api/v1/locations/sf/calendar",
        headers={"Authorization": f"Bearer {clinic.tokens['nurse']}"},
    )
    assert api.status_code == 401


def test_settings_edit_hours_closure_resource_service(client, session, clinic):
    _signed_in(client, clinic, "manager")
    base = "/staff/settings/locations/sf"
    assert client.get(base).status_code == 200
    r = client.post(f"{base}/hours", data={"day0": "07:00-12:00, 13:00-19:00", "day1": "9-17"})
    assert r.status_code == 422
    assert "Tuesday" in r.get_data(as_text=True)
    r = client.post(f"{base}/hours", data={"day0": "07:00-12:00, 13:00-19:00"})
    assert r.status_code == 303
    session.expire_all()
    assert [(h.weekday, h.opens.hour, h.closes.hour) for h in clinic.sf.hours] == [
        (0, 7, 12),
        (0, 13, 19),
    ]
    assert (
        client.post(
            f"{base}/closures",
            data={"first_day": "2026-12-24", "last_day": "2026-12-26", "reason": "Holidays"},
        ).status_code
        == 303
    )
    assert (
        client.post(f"{base}/resources", data={"kind": "chair", "name": "Chair 5"}).status_code
        == 303
    )
    assert (
        client.post(f"{base}/resources", data={"kind": "chair", "name": "Chair 5"}).status_code
        == 422
    )
    r = client.post(
        f"{base}",
        data={"name": "SF Mission", "timezone": "Mars/Olympus", "address": "", "phone": ""},
    )
    assert r.status_code == 422 and "timezone" in r.get_data(as_text=True)
    svc = {
        "name": "Infusion",
        "kind": "infusion",
        "resource_kind": "chair",
        "duration_minutes": "50",
        "prep_minutes": "10",
        "recovery_minutes": "15",
        "slot_step_minutes": "15",
        "min_notice_minutes": "60",
        "horizon_days": "30",
        "late_cancel_hours": "24",
        "active": "on",
        "locations": [str(clinic.sf.id), str(clinic.ny.id)],
    }
    # The infusion is offered at NY too, which the SF manager does not run.
    assert client.post("/staff/settings/services/infusion", data=svc).status_code == 403
    _signed_in(client, clinic, "admin")
    assert client.post("/staff/settings/services/infusion", data=svc).status_code == 303
    session.expire_all()
    assert clinic.infusion.duration_minutes == 50
    actions = {e.action for e in session.scalars(select(AuditEntry))}
    assert {
        "location.hours",
        "location.closure_added",
        "resource.created",
        "service.updated",
    } <= actions
    log = client.get("/staff/audit").get_data(as_text=True)
    assert "service.updated" in log and "Manager User" in log


def test_api_changes_are_in_the_audit_log_too(client, session, clinic, clock):
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now)
    session.commit()
    headers = {"Authorization": f"Bearer {clinic.tokens['nurse']}"}
    r = client.post(
        f"/api/v1/appointments/{appt.id}/status", json={"status": "checked_in"}, headers=headers
    )
    assert r.status_code == 200
    r = client.post(
        "/api/v1/locations/sf/blocks",
        json={
            "resource": "Chair 4",
            "start": "2026-12-01T13:00:00-08:00",
            "end": "2026-12-01T14:00:00-08:00",
            "reason": "API block",
        },
        headers=headers,
    )
    assert r.status_code == 201
    entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.staff_name) for e in entries] == [
        ("appointment.checked_in", "Nurse User"),
        ("block.created", "Nurse User"),
    ]
    _signed_in(client, clinic)
    page = client.get(f"/staff/appointments/{appt.id}").get_data(as_text=True)
    assert "Nurse User" in page and "checked in" in page


def test_block_page_unblocks_with_a_reason(client, session, clinic, clock):
    block = booking.create_block(
        session, clinic.sf.resources[0], at(DAY, 9), at(DAY, 10), reason="Leak", now=clock.now
    )
    session.commit()
    block_id = block.id
    _signed_in(client, clinic, "nurse")
    page = client.get(f"/staff/sf/blocks/{block_id}")
    assert page.status_code == 200 and "Leak" in page.get_data(as_text=True)
    assert client.get(f"/staff/ny/blocks/{block_id}").status_code == 403
    r = client.post(f"/staff/sf/blocks/{block_id}/delete", data={"reason": "Fixed early"})
    assert r.status_code == 303
    entry = session.scalars(select(AuditEntry)).one()
    assert audit.details_of(entry)["unblock_reason"] == "Fixed early"
    assert audit.details_of(entry)["reason"] == "Leak"


def test_empty_hours_link_to_booking_there(client, session, clinic):
    _signed_in(client, clinic)
    chair2 = clinic.sf.resources[1]
    html = client.get(f"/staff/sf/calendar?date={DAY}").get_data(as_text=True)
    link = f"/staff/sf/book?date={DAY}&amp;resource={chair2.id}&amp;time=14:00"
    assert link in html
    form = client.get(link.replace("&amp;", "&")).get_data(as_text=True)
    assert 'name="time" step="300" value="14:00"' in form
    assert f'<option value="{chair2.id}" selected>' in form


def test_a_chair_with_visits_ahead_cannot_be_retired_until_they_are_moved_or_cancelled(
    client, session, clinic, clock
):
    from scheduler.models import Resource
    from scheduler.services.settings import ClinicSettings

    _signed_in(client, clinic, "manager")
    chair1 = clinic.sf.resources[0]
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, resource_id=chair1.id)
    session.commit()
    url = f"/staff/settings/locations/sf/resources/{chair1.id}"
    form = {"name": chair1.name, "position": str(chair1.position)}  # "active" left unticked
    r = client.post(url, data=form)
    assert r.status_code == 409
    page = r.get_data(as_text=True)
    assert "has booked visits ahead" in page and "10:00" in page
    session.expire_all()
    assert session.get(Resource, chair1.id).active is True
    booking.cancel(
        session,
        session.get(Appointment, appt.id),
        now=clock.now,
        settings=ClinicSettings(),
        by_staff=True,
    )
    session.commit()
    assert client.post(url, data=form).status_code == 303
    session.expire_all()
    assert session.get(Resource, chair1.id).active is False
