"""Staff patient pages: search from every page, the record, edit, clearance, merge, and
booking from a found patient (override of clearance audited), on both databases."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import Appointment, AuditEntry, Clearance, Patient, Service
from tests.web.staff_support import DAY, NY, at, book, make_clinic, sign_in


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


@pytest.fixture
def clinic(session, clock):
    clinic = make_clinic(session)
    book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, 1, "Sf Patient")
    book(session, clinic.ny, clinic.infusion, at(DAY, 10, tz=NY), clock.now, 2, "Ny Patient")
    session.commit()
    return clinic


def text(r) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", r.get_data(as_text=True)).split())


def pid(session, name: str) -> int:
    found = session.scalars(select(Patient.id).where(Patient.name == name)).one()
    session.rollback()
    return found


def test_every_staff_page_has_the_patient_search_box(client, clinic):
    sign_in(client, clinic.users["front_desk"].email)
    for path in ("/staff/", f"/staff/sf/calendar?date={DAY}", "/staff/patients"):
        assert 'id="patient-search"' in client.get(path).get_data(as_text=True), path


@pytest.mark.parametrize("q", ["sf patient", "555-0001", "pat1@example", "Sf"])
def test_search_finds_own_patients_only(client, clinic, q):
    sign_in(client, clinic.users["front_desk"].email)
    page = text(client.get("/staff/patients", query_string={"q": q}))
    assert "Sf Patient" in page and "Ny Patient" not in page


def test_the_record_shows_visits_clearances_and_opt_out_and_hides_other_locations(
    client, session, clinic
):
    sf_id, ny_id = pid(session, "Sf Patient"), pid(session, "Ny Patient")
    sign_in(client, clinic.users["front_desk"].email)
    page = text(client.get(f"/staff/patients/{sf_id}"))
    assert "Sf Patient" in page and "Tue 01 Dec 2026 10:00 PST" in page
    assert "No clearance recorded." in page and "Reminders on" in page
    r = client.get(f"/staff/patients/{ny_id}")
    assert r.status_code == 404 and "Ny Patient" not in r.get_data(as_text=True)


def test_a_manager_records_a_clearance_and_the_record_shows_its_expiry(client, session, clinic):
    session.get(Service, clinic.infusion.id).requires_clearance = True
    session.commit()
    sf_id = pid(session, "Sf Patient")
    sign_in(client, clinic.users["manager"].email)
    r = client.post(
        f"/staff/patients/{sf_id}/clearances",
        data={"services": ["infusion"], "until": "2027-03-31", "note": "seen"},
    )
    assert r.status_code == 303
    page = text(client.get(f"/staff/patients/{sf_id}"))
    assert "2027-03-31" in page and "Clearance recorded" in page
    assert session.scalars(select(Clearance.until)).one().isoformat() == "2027-03-31"


def test_front_desk_cannot_record_a_clearance(client, session, clinic):
    session.get(Service, clinic.infusion.id).requires_clearance = True
    session.commit()
    sf_id = pid(session, "Sf Patient")
    sign_in(client, clinic.users["front_desk"].email)
    assert 'id="clearance-form"' not in client.get(f"/staff/patients/{sf_id}").get_data(
        as_text=True
    )
    r = client.post(
        f"/staff/patients/{sf_id}/clearances",
        data={"services": ["infusion"], "until": "2027-03-31"},
    )
    assert r.status_code == 403
    assert session.scalars(select(Clearance)).all() == []


def test_edit_and_merge_from_the_record(client, session, clinic, clock):
    twin = book(session, clinic.sf, clinic.consult, at(DAY, 14), clock.now, 1, "Sf Patiant")
    session.commit()
    kept, dup = pid(session, "Sf Patient"), twin.patient_id
    session.rollback()
    sign_in(client, clinic.users["front_desk"].email)
    r = client.post(
        f"/staff/patients/{kept}",
        data={
            "name": "Sf Patient",
            "phone": "+14155550001",
            "email": "pat1@example.com",
            "date_of_birth": "1970-01-01",
            "notes": "prefers chair 2",
        },
    )
    assert r.status_code == 303
    r = client.post(f"/staff/patients/{kept}/merge", data={"duplicate": str(dup)})
    assert r.status_code == 303
    session.expire_all()
    assert set(session.scalars(select(Appointment.patient_id))) >= {kept}
    assert dup not in set(session.scalars(select(Appointment.patient_id)))
    actions = session.scalars(select(AuditEntry.action).where(AuditEntry.patient_id == kept)).all()
    assert {"patient.edited", "patient.merged"} <= set(actions)
    session.rollback()
    page = text(client.get(f"/staff/patients/{kept}"))
    assert "1970-01-01" in page and "prefers chair 2" in page and "14:00" in page
    r = client.post(f"/staff/patients/{kept}/merge", data={"duplicate": "abc"})
    assert r.status_code == 422


def test_booking_starts_from_a_found_patient_and_an_override_is_audited(client, session, clinic):
    session.get(Service, clinic.infusion.id).requires_clearance = True
    session.commit()
    sf_id = pid(session, "Sf Patient")
    sign_in(client, clinic.users["front_desk"].email)
    form = client.get(f"/staff/sf/book?patient={sf_id}").get_data(as_text=True)
    assert 'value="Sf Patient"' in form and 'value="+14155550001"' in form
    data = {
        "service": "infusion",
        "date": "2026-12-03",
        "time": "11:00",
        "name": "Sf Patient",
        "phone": "+14155550001",
        "email": "pat1@example.com",
        "date_of_birth": "1970-01-01",
    }
    r = client.post("/staff/sf/book", data=data)
    assert r.status_code == 409 and "Initial consultation" in text(r)
    r = client.post("/staff/sf/book", data={**data, "override_clearance": "on"})
    assert r.status_code == 303
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action.like("%booked%")).order_by(AuditEntry.id.desc())
    ).first()
    assert "override_clearance" in entry.details


def test_the_calendar_shows_clearance_expiry_on_visits_that_need_it(client, session, clinic):
    sf_id = pid(session, "Sf Patient")
    session.get(Service, clinic.infusion.id).requires_clearance = True
    session.add(
        Clearance(
            patient_id=sf_id,
            service_id=clinic.infusion.id,
            until=dt.date(2027, 3, 31),
        )
    )
    session.commit()
    sign_in(client, clinic.users["front_desk"].email)
    page = text(client.get(f"/staff/sf/calendar?date={DAY}"))
    assert "Cleared to 31 Mar 2027" in page
    sign_in(client, clinic.users["admin"].email)
    assert "Not cleared" in text(client.get(f"/staff/ny/calendar?date={DAY}"))


def test_the_record_shows_the_sms_opt_out_and_the_texts_with_local_times(
    client, session, clinic, clock
):
    from scheduler.models import Reminder, ReminderStatus, SmsInbound, SmsOptOut

    sf_appt = session.scalars(
        select(Appointment).join(Patient).where(Patient.name == "Sf Patient")
    ).one()
    # A family member on the same phone with a visit in New York only: not the reader's.
    ny_appt = book(session, clinic.ny, clinic.infusion, at(DAY, 12, tz=NY), clock.now, 1, "Kin")
    reminder = session.scalars(
        select(Reminder).where(Reminder.appointment_id == sf_appt.id).order_by(Reminder.id)
    ).first()
    assert reminder is not None
    reminder.status = ReminderStatus.DELIVERED
    reminder.sent_at = at(DAY - dt.timedelta(days=2), 10)
    reminder.delivered_at = at(DAY - dt.timedelta(days=2), 10, 1)
    phone = sf_appt.patient.phone
    texts = [
        ("SM1", "confirm", sf_appt.id, at(DAY - dt.timedelta(days=2), 11)),
        ("SM2", "confirm", ny_appt.id, at(DAY - dt.timedelta(days=2), 11, 30)),
        ("SM3", "opt_out", None, at(DAY - dt.timedelta(days=1), 9)),
    ]
    for sid, action, appt_id, when in texts:
        session.add(
            SmsInbound(
                message_sid=sid,
                phone=phone,
                action=action,
                appointment_id=appt_id,
                received_at=when,
            )
        )
    session.add(SmsOptOut(phone=phone, opted_out=True, keyword="STOP", changed_at=texts[2][3]))
    session.commit()
    sign_in(client, clinic.users["front_desk"].email)
    html = client.get(f"/staff/patients/{pid(session, 'Sf Patient')}").get_data(as_text=True)
    assert "Opted out (replied STOP)" in html
    rows = re.findall(
        r"<tr><td>([^<]+)</td><td>([^<]+)</td></tr>", html.split('id="sms-history"')[1]
    )
    assert rows[:4] == [
        ("Mon 30 Nov 2026 09:00 PST", "Replied STOP: texts stopped for this number"),
        (
            "Sun 29 Nov 2026 11:00 PST",
            "Confirmed the visit by text (the visit on Tue 01 Dec 10:00)",
        ),
        ("Sun 29 Nov 2026 10:01 PST", "Reminder delivered for the visit on Tue 01 Dec 10:00"),
        ("Sun 29 Nov 2026 10:00 PST", "Reminder sent for the visit on Tue 01 Dec 10:00"),
    ]
    assert len(rows) == 4  # the New York visit's confirmation is not the reader's to see
    assert "+1415" not in html.split('id="sms-history"')[1].split("</table>")[0]


def test_a_reminder_not_sent_says_why(client, session, clinic):
    # Booked on 30 Nov for 1 Dec: the 48-hour reminder's time had already passed.
    sign_in(client, clinic.users["front_desk"].email)
    page = text(client.get(f"/staff/patients/{pid(session, 'Sf Patient')}"))
    assert (
        "Mon 30 Nov 2026 08:00 PST Reminder not sent for the visit on Tue 01 Dec 10:00: "
        "its time had passed when booked"
    ) in page
    assert "No texts yet." not in page


def test_staff_booking_keeps_the_spacing_between_a_patients_visits(client, session, clinic):
    session.get(Service, clinic.infusion.id).min_gap_hours = 48
    session.commit()
    sign_in(client, clinic.users["front_desk"].email)
    data = {
        "service": "infusion",
        "date": "2026-12-02",
        "time": "11:00",
        "name": "Sf Patient",
        "phone": "+14155550001",
        "email": "pat1@example.com",
        "date_of_birth": "1970-01-01",
    }
    r = client.post("/staff/sf/book", data=data)
    assert r.status_code == 409 and "at least 48 hours between them" in text(r)
    assert client.post("/staff/sf/book", data={**data, "date": "2026-12-04"}).status_code == 303


def test_a_merge_moves_the_duplicates_opt_out_and_history(client, session, clinic, clock):
    from scheduler.models import SmsOptOut
    from scheduler.services import audit

    # The same person booked once under another mobile, which then replied STOP.
    twin = book(session, clinic.sf, clinic.consult, at(DAY, 14), clock.now, 7, "Sf Patiant")
    dup = twin.patient_id
    audit.record(
        session,
        actor=clinic.users["front_desk"],
        action="patient.edited",
        at=clock.now,
        patient_id=dup,
        target=f"patient {dup}",
        details={"fields": ["notes"]},
    )
    session.add(SmsOptOut(phone="+14155550007", opted_out=True, keyword="STOP"))
    session.commit()
    kept = pid(session, "Sf Patient")
    sign_in(client, clinic.users["front_desk"].email)
    assert "Reminders on" in text(client.get(f"/staff/patients/{kept}"))
    r = client.post(f"/staff/patients/{kept}/merge", data={"duplicate": str(dup)})
    assert r.status_code == 303
    session.expire_all()
    assert session.get(Patient, kept).sms_consent is False
    moved = session.scalars(select(AuditEntry.action).where(AuditEntry.patient_id == kept)).all()
    assert sorted(moved) == ["patient.edited", "patient.merged"]
    merged = session.scalars(select(AuditEntry).where(AuditEntry.action == "patient.merged")).one()
    assert '"opted_out": true' in merged.details and '"audit_entries": 1' in merged.details
    session.rollback()
    page = text(client.get(f"/staff/patients/{kept}"))
    assert "No reminders (not agreed)" in page and "Sf Patiant" not in page


def test_the_record_names_each_text_by_kind_and_shows_history_in_local_time(
    client, session, clinic, clock
):
    from scheduler.models import Reminder, ReminderKind, ReminderStatus
    from scheduler.services import audit

    sf_appt = session.scalars(
        select(Appointment).join(Patient).where(Patient.name == "Sf Patient")
    ).one()
    reminder = session.scalars(
        select(Reminder).where(Reminder.appointment_id == sf_appt.id).order_by(Reminder.id)
    ).first()
    assert reminder is not None
    reminder.kind = ReminderKind.ESCORT_READY
    reminder.status = ReminderStatus.SENT
    reminder.sent_at = at(DAY - dt.timedelta(days=2), 10)
    audit.record(
        session,
        actor=clinic.users["admin"],
        action="appointment.checked_in",
        at=at(DAY, 9, 55),
        location_id=sf_appt.location_id,
        appointment_id=sf_appt.id,
        patient_id=sf_appt.patient_id,
        target=f"appointment {sf_appt.id}",
    )
    session.commit()
    sign_in(client, clinic.users["front_desk"].email)
    html = client.get(f"/staff/patients/{pid(session, 'Sf Patient')}").get_data(as_text=True)
    texts = html.split('id="sms-history"')[1].split("</table>")[0]
    assert "Pick-up text to the escort sent for the visit on Tue 01 Dec 10:00" in texts
    assert "Reminder sent" not in texts
    assert "Tue 01 Dec 2026 09:55 PST" in html and "UTC" not in html
    assert "Checked in" in html and ">appointment.checked_in<" not in html
