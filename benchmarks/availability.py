"""Availability for 30 days at a location with 12 chairs and 3,000 appointments over 60 days.

Prints the p50 of the availability query and its ratio to a plain SELECT of the same rows,
both measured in this run. Targets: p50 under 50 ms, ratio within 3x.
Usage: python benchmarks/availability.py [--db sqlite|postgresql] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets

from _common import database, p50  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    from sqlalchemy import select

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
            loc = make_location(
                session,
                slug="bench",
                chairs=12,
                rooms=0,
                hours=((dt.time(8), dt.time(12, 30)), (dt.time(13), dt.time(18))),
                weekdays=range(7),
            )
            svc = make_service(session, [loc], slug="inf", duration=40, prep=10, recovery=10)
            chairs = [r.id for r in loc.resources]
            first_day = dt.date(2026, 12, 1)
            now = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
            tz_offset = dt.timedelta(hours=8)  # PST throughout December and January
            # 3,000 non-overlapping visits: one-hour cells, chosen at random.
            cells = [
                (day, hour, chair)
                for day in range(60)
                for hour in (8, 9, 10, 11, 13, 14, 15, 16)
                for chair in chairs
            ]
            random.seed(7)
            chosen = random.sample(cells, 3000)
            patients = [
                Patient(name=f"P {i}", phone=f"+1415555{i:04d}", email=f"p{i}@example.com")
                for i in range(3000)
            ]
            session.add_all(patients)
            session.flush()
            rows = []
            for i, (day, hour, chair) in enumerate(chosen):
                start = (
                    dt.datetime.combine(
                        first_day + dt.timedelta(days=day), dt.time(hour, 15), tzinfo=dt.UTC
                    )
                    + tz_offset
                )
                rows.append(
                    Appointment(
                        location_id=loc.id,
                        resource_id=chair,
                        service_id=svc.id,
                        patient_id=patients[i].id,
                        start_at=start,
                        end_at=start + dt.timedelta(minutes=40),
                        occupied_start=start - dt.timedelta(minutes=10),
                        occupied_end=start + dt.timedelta(minutes=50),
                        duration_minutes=40,
                        prep_minutes=10,
                        recovery_minutes=10,
                        manage_token=secrets.token_urlsafe(32),
                        ics_uid=secrets.token_hex(16),
                    )
                )
            session.add_all(rows)
            session.commit()
            loc_id, svc_id = loc.id, svc.id
            loc_cls, svc_cls = type(loc), type(svc)
            db.session.remove()  # an empty identity map: each run starts like a request
            session = db.session
            window_end = (
                dt.datetime.combine(first_day + dt.timedelta(days=30), dt.time(0), tzinfo=dt.UTC)
                + tz_offset
            )
            window_start = dt.datetime.combine(first_day, dt.time(0), tzinfo=dt.UTC) + tz_offset

            def query_availability() -> object:
                location = session.get(loc_cls, loc_id)
                service = session.get(svc_cls, svc_id)
                slots = availability.location_slots(session, location, service, first_day, 30, now)
                db.session.remove()
                return slots

            def plain_select() -> object:
                rows = session.execute(
                    select(
                        Appointment.resource_id,
                        Appointment.occupied_start,
                        Appointment.occupied_end,
                    ).where(
                        Appointment.location_id == loc_id,
                        Appointment.active.is_(True),
                        Appointment.occupied_start < window_end,
                        Appointment.occupied_end > window_start,
                    )
                ).all()
                db.session.remove()
                return rows

            in_window = len(plain_select())  # type: ignore[arg-type]
            slots = query_availability()
            t_avail = p50(query_availability, args.runs)
            t_select = p50(plain_select, args.runs)
            print(
                f"database: {args.db}; appointments: 3000 over 60 days; in the 30-day window: {in_window}"
            )
            print(f"slots returned: {len(slots)}")  # type: ignore[arg-type]
            print(f"availability 30 days p50: {t_avail * 1000:.1f} ms (target < 50 ms)")
            print(f"plain SELECT of the same rows p50: {t_select * 1000:.1f} ms")
            print(f"ratio availability / SELECT: {t_avail / t_select:.2f}x (target <= 3x)")
            db.engine.dispose()


if __name__ == "__main__":
    main()
