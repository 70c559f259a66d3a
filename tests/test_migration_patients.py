"""Migration 0009 keeps every patient and appointment, and gives old rows match keys."""

from __future__ import annotations

from flask_migrate import upgrade
from sqlalchemy import text

from config import TestConfig
from scheduler import create_app
from scheduler.extensions import db

LEGACY = [
    # id, name, phone, email: "Walt" twice on one phone (two e-mails), his daughter, and
    # "WALT" with an accent-free twin spelling on another phone.
    (1, "Walt Whitman", "+14155550142", "walt@example.com"),
    (2, "Walt  Whitman", "+14155550142", "walt@work.example"),
    (3, "Ana Whitman", "+14155550142", "ana@example.com"),
    (4, "José Núñez", "+14155550199", "jose@example.com"),
]


def test_old_rows_are_kept_and_keyed(unmigrated_url):
    app = create_app(TestConfig(unmigrated_url))
    with app.app_context():
        upgrade(revision="0008")  # the head before patients
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO locations (id, slug, name, timezone, address, phone, active,"
                    " created_at) VALUES (1, 'sf', 'SF', 'America/Los_Angeles', '', '', true,"
                    " '2026-01-01 00:00:00+00')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO resources (id, location_id, kind, name, position, active)"
                    " VALUES (1, 1, 'chair', 'Chair 1', 1, true)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO services (id, slug, name, kind, resource_kind, description,"
                    " what_to_bring, duration_minutes, prep_minutes, recovery_minutes,"
                    " slot_step_minutes, min_notice_minutes, horizon_days, late_cancel_hours,"
                    " public_title, reminder_offsets, active) VALUES (1, 'inf', 'Infusion',"
                    " 'infusion', 'chair', '', '', 40, 0, 0, 15, 60, 60, 24, '', '', true)"
                )
            )
            for pid, name, phone, email in LEGACY:
                conn.execute(
                    text(
                        "INSERT INTO patients (id, name, phone, email, sms_consent, created_at)"
                        " VALUES (:id, :name, :phone, :email, true, '2026-01-01 00:00:00+00')"
                    ),
                    {"id": pid, "name": name, "phone": phone, "email": email},
                )
                conn.execute(
                    text(
                        "INSERT INTO appointments (location_id, resource_id, service_id,"
                        " patient_id, start_at, end_at, occupied_start, occupied_end,"
                        " duration_minutes, prep_minutes, recovery_minutes, status, active,"
                        " manage_token, ics_uid, ics_sequence, note, source, cancel_reason,"
                        " created_at, updated_at) VALUES (1, 1, 1, :id, :start, :end, :start,"
                        " :end, 40, 0, 0, 'booked', true, :token, :uid, 0, '', 'online', '',"
                        " :start, :start)"
                    ),
                    {
                        "id": pid,
                        "start": f"2026-12-0{pid} 17:00:00+00",
                        "end": f"2026-12-0{pid} 17:40:00+00",
                        "token": f"token-{pid}-" + "x" * 30,
                        "uid": f"uid-{pid}@chairside",
                    },
                )
        upgrade()
        with db.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, name_key, match_key, date_of_birth FROM patients ORDER BY id")
            ).all()
            visits = conn.execute(text("SELECT patient_id FROM appointments ORDER BY id")).all()
        db.engine.dispose()
    assert [tuple(r) for r in rows] == [
        (1, "walt whitman", "walt whitman|", None),
        (2, "walt whitman", "walt whitman|#2", None),  # kept apart: staff merge it
        (3, "ana whitman", "ana whitman|", None),
        (4, "jose nunez", "jose nunez|", None),
    ]
    assert [v[0] for v in visits] == [1, 2, 3, 4]
