"""Availability for 30 days at a location with 12 chairs and 3,000 appointments over 60 days,
with the staffing rules on (a prescriber and three nurses on a weekly rota, 1:4, 3 starts per
30 minutes).

Prints the p50 of the availability query, of a plain ORM SELECT of the appointment rows, and of
the RAW driver fetch (sqlite3 / psycopg cursor, no SQLAlchemy) of every row the engine reads
(the window's appointments, the chairs' blocks, the rota's patterns, skips and one-off shifts),
all measured in this run, and the CPU time of this process for availability and the raw fetch
(on a shared machine wall time also counts waits for a core). Targets: availability p50 within
2x of the raw fetch, under 10 ms on SQLite.

Last measured (2026-11-29, 2 cores shared with other work; p50 of 30 runs, several runs):
- SQLite: 3.6-4.2 ms wall, 3.6-3.8 ms CPU against a raw fetch of 2.3-2.35 ms (1.56-1.65x CPU,
  1.57-1.79x wall); with three other test suites running on the same cores, 1.8-2.1x CPU.
  Last round 7.5-8.4 ms wall (3.2-3.5x), a round before 12.0-14.0 ms (4.9-5.3x).
- PostgreSQL: 9.3-9.8 ms wall, 5.5-6.1 ms CPU against 5.8 ms wall (1.6-1.7x wall); last round
  11.6-12.9 ms (2.1-2.2x).
Both targets met. What made the difference: every start's limits computed at once with numpy
(range-minimum / range-maximum tables for the nurse room and the start window, the chairs'
busy time merged in one pass), SQLite's visits read as one row of comma-joined lists parsed by
numpy (0.9 ms against 1.9 ms as a tuple per visit), a steady day's grid as integer arithmetic.
Where the 3.6 ms go on SQLite: the visits' statement 0.55 and parsing 0.35, the request's
session (location, service, connection) 0.35, the rota 0.2, other small statements 0.25,
building 243 slots 0.25, candidate starts 0.15, chairs / floor index / limits 0.1 each.
`--profile` prints cProfile's view.
Usage: python benchmarks/availability.py [--db sqlite|postgresql] [--runs N] [--profile]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets
import statistics
import time

from _common import database, p50  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--profile", action="store_true", help="print cProfile's top functions of availability"
    )
    args = parser.parse_args()

    from sqlalchemy import select

    from config import TestConfig
    from scheduler import create_app
    from scheduler.extensions import db
    from scheduler.models import Appointment, Clinician, Patient, ShiftPattern
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
            for name, role in (
                ("Dr P", "prescriber"),
                ("N1", "nurse"),
                ("N2", "nurse"),
                ("N3", "nurse"),
            ):
                person = Clinician(name=name, role=role)
                session.add(person)
                session.flush()
                for weekday in range(7):
                    session.add(
                        ShiftPattern(
                            clinician_id=person.id,
                            location_id=loc.id,
                            weekday=weekday,
                            starts=dt.time(7, 30),
                            ends=dt.time(18, 30),
                        )
                    )
            loc.staffing_rules = True
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

            raw_fetch = _raw_fetcher(url, loc_id, chairs, window_start, window_end)
            in_window = len(plain_select())  # type: ignore[arg-type]
            raw_rows = raw_fetch()
            slots = query_availability()
            if args.profile:
                _profile(query_availability, args.runs)
            for _ in range(2):  # alternate, so drift on a shared machine falls on both alike
                t_avail = p50(query_availability, args.runs)
                t_raw = p50(raw_fetch, args.runs)
                t_select = p50(plain_select, args.runs)
            # This process's CPU time: on a loaded machine wall time also counts the waits for
            # a core, which fall hardest on the longer call. On PostgreSQL the server's work is
            # not in it (the raw fetch is mostly that), so there read the wall-time ratio.
            cpu_avail = _cpu_p50(query_availability, args.runs)
            cpu_raw = _cpu_p50(raw_fetch, args.runs)
            print(
                f"database: {args.db}; appointments: 3000 over 60 days; in the 30-day window: {in_window}"
            )
            print(f"slots returned: {len(slots)} (staffing rules on)")  # type: ignore[arg-type]
            print(f"availability 30 days p50: {t_avail * 1000:.2f} ms (target < 10 ms on SQLite)")
            print(
                f"raw driver fetch of the rows it reads ({raw_rows} rows) p50: {t_raw * 1000:.2f} ms"
            )
            print(f"ORM SELECT of the appointment rows p50: {t_select * 1000:.2f} ms")
            print(f"ratio availability / raw fetch: {t_avail / t_raw:.2f}x (target <= 2x)")
            print(
                f"CPU time of this process p50: availability {cpu_avail * 1000:.2f} ms, raw fetch"
                f" {cpu_raw * 1000:.2f} ms, ratio {cpu_avail / cpu_raw:.2f}x"
            )
            db.engine.dispose()


def _profile(fn, runs):  # type: ignore[no-untyped-def]
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        fn()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


def _cpu_p50(fn, runs):  # type: ignore[no-untyped-def]
    for _ in range(3):
        fn()
    samples = []
    for _ in range(runs):
        started = time.process_time()
        fn()
        samples.append(time.process_time() - started)
    return statistics.median(samples)


def _raw_fetcher(url, location_id, chairs, start, end):  # type: ignore[no-untyped-def]
    """Every row availability reads with the rules on, fetched with the bare driver (no
    SQLAlchemy): the chairs' blocks, the location's visits in the window (they give both the
    chairs' busy time and the nurse load), the rota's patterns, skips and one-off shifts."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)
        mark = "?"

        def bind(value):  # type: ignore[no-untyped-def]
            return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
    else:
        import psycopg

        conn = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True)
        mark = "%s"

        def bind(value):  # type: ignore[no-untyped-def]
            return value

    ids = ",".join(str(c) for c in chairs)
    queries = [
        (
            f"SELECT resource_id, start_at, end_at FROM resource_blocks WHERE resource_id IN ({ids})"
            f" AND start_at < {mark} AND end_at > {mark}",
            (bind(end), bind(start)),
        ),
        (
            "SELECT a.start_at, a.end_at, a.occupied_start, a.occupied_end, a.clinician_id,"
            " s.kind, a.id, a.resource_id FROM appointments a"
            " JOIN services s ON s.id = a.service_id"
            f" WHERE a.location_id = {mark} AND a.active AND a.occupied_start < {mark}"
            f" AND a.occupied_end > {mark}",
            (location_id, bind(end), bind(start)),
        ),
        (
            "SELECT p.*, c.* FROM shift_patterns p JOIN clinicians c ON c.id = p.clinician_id"
            f" WHERE p.location_id = {mark} AND c.active",
            (location_id,),
        ),
        (
            "SELECT k.pattern_id, k.day FROM shift_skips k JOIN shift_patterns p"
            f" ON p.id = k.pattern_id WHERE p.location_id = {mark}",
            (location_id,),
        ),
        (
            "SELECT s.*, c.* FROM shifts s JOIN clinicians c ON c.id = s.clinician_id"
            f" WHERE s.location_id = {mark} AND c.active AND s.start_at < {mark}"
            f" AND s.end_at > {mark}",
            (location_id, bind(end), bind(start)),
        ),
    ]

    def fetch() -> int:
        cur = conn.cursor()
        total = 0
        for sql, params in queries:
            cur.execute(sql, params)
            total += len(cur.fetchall())
        return total

    return fetch


if __name__ == "__main__":
    main()
