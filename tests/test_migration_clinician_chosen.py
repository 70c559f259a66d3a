"""Migration 0016: visits booked before it are "any prescriber" (a move takes whoever is free,
as before), whoever they are with."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from config import TestConfig
from scheduler import create_app
from scheduler.extensions import db
from scheduler.models import Appointment
from scheduler.services import booking

ROWS = [
    "INSERT INTO locations (id, slug, name, timezone, address, phone, active, created_at)"
    " VALUES (1, 'sf', 'SF', 'America/Los_Angeles', '', '', true, '2026-01-01 00:00:00+00')",
    "INSERT INTO resources (id, location_id, kind, name, position, active)"
    " VALUES (1, 1, 'room', 'Room 1', 1, true)",
    "INSERT INTO services (id, slug, name, kind, resource_kind, description, what_to_bring,"
    " duration_minutes, prep_minutes, recovery_minutes, slot_step_minutes, min_notice_minutes,"
    " horizon_days, late_cancel_hours, public_title, reminder_offsets, active) VALUES (1,"
    " 'consult', 'Consultation', 'consultation', 'room', '', '', 60, 0, 0, 30, 60, 60, 24, '',"
    " '', true)",
    "INSERT INTO patients (id, name, phone, email, sms_consent, created_at)"
    " VALUES (1, 'Pat', '+14155550142', 'pat@example.com', false, '2026-01-01 00:00:00+00')",
    "INSERT INTO clinicians (id, name, role, title, active, created_at)"
    " VALUES (7, 'Dr Seven', 'prescriber', '', true, '2026-01-01 00:00:00+00')",
    "INSERT INTO appointments (id, location_id, resource_id, service_id, patient_id, start_at,"
    " end_at, occupied_start, occupied_end, duration_minutes, prep_minutes, recovery_minutes,"
    " status, active, manage_token, ics_uid, ics_sequence, note, source, cancel_reason,"
    " created_at, updated_at, clinician_id) VALUES (1, 1, 1, 1, 1, '2026-12-02 17:00:00+00',"
    " '2026-12-02 18:00:00+00', '2026-12-02 17:00:00+00', '2026-12-02 18:00:00+00', 60, 0, 0,"
    " 'booked', true, 'token-0016-aaaaaaaaaaaaaaaaaaaa', 'uid-0016', 0, '', 'online', '',"
    " '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', 7)",
]


def test_visits_booked_before_0016_move_to_whoever_is_free(unmigrated_url):
    app = create_app(TestConfig(unmigrated_url))
    with app.app_context():
        upgrade(revision="0015")
        with db.engine.begin() as conn:
            # SQLite keeps instants as naive UTC text, PostgreSQL as timestamptz.
            utc = "" if conn.dialect.name == "sqlite" else "+00"
            for row in ROWS:
                conn.execute(text(row.replace(":00+00'", f":00{utc}'")))
        upgrade(revision="0016")
        appt = db.session.get_one(Appointment, 1)
        assert (appt.clinician_id, appt.clinician_chosen) == (7, False)
        assert booking.move_clinician(appt) is None
        db.session.rollback()
        downgrade(revision="0015")
        with db.engine.connect() as conn:
            kept = conn.execute(text("SELECT clinician_id FROM appointments")).scalar_one()
        assert kept == 7
        db.session.remove()
        db.engine.dispose()
