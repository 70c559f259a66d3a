"""A 6-session course plan ("IV ketamine induction") on the demo clinic, with the demo's
staffing rules on and about 300 visits booked over the next three weeks.

Prints the p50 of `courses.plan` (one availability read over the course's 21 days, then the
pure planner), of one plain availability query as the API answers it (7 days), and of the
availability read alone over the same 21 days, all measured in this run, with the ratios.
Target: the plan's p50 under 50 ms.

Last measured (2026-11-29, 2 cores shared with other work; 300 visits, 4 of 6 sessions moved):
- SQLite: plan 6.6 ms p50 (CPU 6.6 ms); availability 7 days 2.8 ms (2.3x), 21 days 5.5 ms (1.2x).
- PostgreSQL: plan 12.4 ms p50 (CPU 8.8 ms); availability 7 days 8.5 ms (1.5x), 21 days
  10.7 ms (1.2x). The planner itself adds about 1 ms to the availability read of its window.
Usage: python benchmarks/courses.py [--db sqlite|postgresql] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

from _common import database, p50  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    from config import TestConfig
    from scheduler import create_app
    from scheduler.extensions import db
    from scheduler.services import availability, booking, courses, demo
    from scheduler.services.clock import local_to_utc
    from scheduler.services.errors import DomainError
    from scheduler.services.patients import PatientDetails
    from scheduler.services.settings import ClinicSettings
    from tests.factories import HASHER

    now = dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)  # Mon 30 Nov, 08:00 in LA
    settings = ClinicSettings()
    with database(args.db) as url:
        app = create_app(TestConfig(url))
        with app.app_context():
            session = db.session
            demo.seed_demo(session, HASHER, now)
            session.commit()
            location = booking.get_location(session, "sf-mission")
            service = booking.get_service(session, location, "infusion")
            tz = availability.ZoneInfo(location.timezone)
            rng = random.Random(7)
            slots = availability.location_slots(
                session, location, service, dt.date(2026, 12, 1), 21, now
            )
            booked = 0
            for n, slot in enumerate(rng.sample(slots, min(600, len(slots)))):
                if booked >= 300:
                    break
                try:
                    booking.book(
                        session,
                        booking.BookingRequest(
                            location="sf-mission",
                            service="infusion",
                            start=slot.start,
                            patient=PatientDetails(
                                f"Bench Patient {n}",
                                f"+1415556{n:04d}",
                                f"b{n}@example.com",
                                False,
                                dt.date(1980, 1, 1),
                            ),
                            source="staff",
                            override_clearance=True,
                        ),
                        now=now,
                        settings=settings,
                    )
                    session.commit()
                    booked += 1
                except DomainError:
                    session.rollback()
            first = local_to_utc(dt.date(2026, 12, 1), dt.time(10), tz)
            plan = courses.plan(
                session, "sf-mission", "iv-ketamine-induction", first, now=now, settings=settings
            )
            moved = sum(1 for s in plan.sessions if s.moved)
            session.rollback()

            def run_plan() -> None:
                courses.plan(
                    session,
                    "sf-mission",
                    "iv-ketamine-induction",
                    first,
                    now=now,
                    settings=settings,
                )
                session.rollback()

            def run_availability(days: int) -> None:
                availability.location_slots(
                    session, location, service, dt.date(2026, 12, 1), days, now
                )
                session.rollback()

            cpu = time.process_time()
            plan_p50 = p50(run_plan, args.runs)
            plan_cpu = (time.process_time() - cpu) / (args.runs + 3)
            week_p50 = p50(lambda: run_availability(7), args.runs)
            window_p50 = p50(lambda: run_availability(21), args.runs)
            print(f"database: {args.db}; visits booked: {booked}; sessions moved: {moved} of 6")
            print(
                f"course plan (6 sessions, 21 days)  p50 {plan_p50 * 1000:7.2f} ms "
                f"(CPU {plan_cpu * 1000:.2f} ms); target < 50 ms: "
                f"{'met' if plan_p50 < 0.050 else 'MISSED'}"
            )
            print(
                f"availability, 7 days (the API)     p50 {week_p50 * 1000:7.2f} ms; "
                f"plan / availability = {plan_p50 / week_p50:.2f}x"
            )
            print(
                f"availability, 21 days (the window) p50 {window_p50 * 1000:7.2f} ms; "
                f"plan / same window = {plan_p50 / window_p50:.2f}x"
            )
            db.engine.dispose()


if __name__ == "__main__":
    main()
