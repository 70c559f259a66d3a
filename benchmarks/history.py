"""Does a clinic's past slow its bookings? The booking check for one slot and a 30-day
availability query, before and after 60,000 completed visits (5,000 per chair, 12 chairs) are
added in the past, measured in the same run.

Prints each p50 and the ratio with history / without. Target: within 1.5x (the work follows the
visits still to come, not the clinic's age; migration 0006 is what makes it so).
With `--staffing` the location has the staffing rules on (its visits are then also read for the
floor: nurse load, starts, prescribers' consultations).
Usage: python benchmarks/history.py [--db sqlite|postgresql] [--runs N] [--per-chair N] [--staffing]
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets

from _common import database, p50  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--per-chair", type=int, default=5000)
    parser.add_argument(
        "--staffing", action="store_true", help="staffing rules on (a prescriber, two nurses)"
    )
    args = parser.parse_args()

    from sqlalchemy import insert, text

    from config import TestConfig
    from scheduler import create_app
    from scheduler.extensions import db
    from scheduler.models import Appointment, Patient
    from scheduler.services import availability
    from tests.factories import make_location, make_service

    with database(args.db) as url:
        app = create_app(TestConfig(url))
        with app.app_context():
            session = db.session
            loc = make_location(session, slug="bench", chairs=12, rooms=0)
            svc = make_service(session, [loc], slug="inf", duration=40, prep=10, recovery=10)
            chairs = [r.id for r in loc.resources]
            if args.staffing:
                from tests.test_staffing_support import rota

                rota(session, loc, nurses=2, hours=(dt.time(7), dt.time(0)))
            patients = [
                Patient(
                    name=f"Past {i}",
                    phone="+14155550000",
                    email="past@example.com",
                    name_key=f"past {i}",
                    match_key=f"past {i}|",  # one phone, several people: a key each
                )
                for i in range(len(chairs))
            ]
            session.add_all(patients)
            session.commit()
            now = dt.datetime(2026, 11, 30, 16, tzinfo=dt.UTC)
            first_day = dt.date(2026, 12, 1)
            start = dt.datetime(2026, 12, 2, 18, tzinfo=dt.UTC)  # 10:00 in Los Angeles

            def booking_check() -> object:
                return availability.slot_at(session, loc, svc, start, now)

            def month() -> object:
                return availability.location_slots(session, loc, svc, first_day, 30, now)

            def measure() -> tuple[float, float]:
                session.execute(text("ANALYZE"))  # fresh planner statistics on both databases
                session.commit()
                return p50(booking_check, args.runs), p50(month, args.runs)

            assert booking_check() is not None
            before = measure()
            # One visit an hour per chair, back to back into the past; one patient per chair.
            rows = []
            for chair, patient in zip(chairs, patients, strict=True):
                for i in range(args.per_chair):
                    at = now - dt.timedelta(hours=i + 1)
                    rows.append(
                        {
                            "location_id": loc.id,
                            "service_id": svc.id,
                            "resource_id": chair,
                            "patient_id": patient.id,
                            "start_at": at,
                            "end_at": at + dt.timedelta(minutes=40),
                            "occupied_start": at - dt.timedelta(minutes=10),
                            "occupied_end": at + dt.timedelta(minutes=50),
                            "duration_minutes": 40,
                            "prep_minutes": 10,
                            "recovery_minutes": 10,
                            "status": "completed",
                            "active": True,
                            "manage_token": secrets.token_urlsafe(32),
                            "ics_uid": secrets.token_hex(16),
                            "ics_sequence": 0,
                            "note": "",
                            "source": "online",
                            "cancel_reason": "",
                            "created_at": at,
                            "updated_at": at,
                        }
                    )
            session.execute(insert(Appointment.__table__), rows)
            session.commit()
            after = measure()
            rules = "on" if args.staffing else "off"
            print(
                f"database: {args.db}; 12 chairs; staffing rules {rules};"
                f" history added: {len(rows)} past visits"
            )
            for name, b, a in zip(
                ("booking check, one slot", "availability, 30 days"), before, after, strict=True
            ):
                print(
                    f"{name}: {b * 1000:.2f} ms without history, {a * 1000:.2f} ms with; "
                    f"ratio {a / b:.2f}x (target <= 1.5x)"
                )
            db.engine.dispose()


if __name__ == "__main__":
    main()
