"""The utilisation report for 90 days, with 1,000,000 appointments in the table.

Five locations (America/New_York) of 40 chairs each; every chair has 10 back-to-back infusions a
day (75 minutes occupied) for 500 days: 1,000,000 rows, inserted by the database itself from
generate_series (PostgreSQL) or a recursive CTE (SQLite), 5% cancelled and 3% no-shows. Each
location has three nurses on a weekly rota. The report covers 90 days (36,000 visits at the
location measured, a range that crosses a DST change).

Prints the p50 of:
- report: `reports.utilisation` for the 90 days, as the API calls it (a fresh session each run);
- raw fetch: the raw driver cursor (psycopg / sqlite3, no SQLAlchemy) fetching every row the
  report reads: the 90 days' visits of the location (occupied start and end, chair or not,
  infusion or not; the same WHERE as the report's query) and the rate counts' rows;
- raw aggregate: the raw driver running the report's own booked/load SQL once.
The ratio report / raw fetch says what the report costs over merely reading its rows.
Target: report p50 under 300 ms on PostgreSQL.
Usage: python benchmarks/utilisation.py [--db postgresql|sqlite] [--runs N] [--days N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from _common import database, p50  # type: ignore[import-not-found]

LOCATIONS, CHAIRS, PER_DAY, SLOT = 5, 40, 10, 75

PG_INSERT = """
INSERT INTO appointments (location_id, resource_id, service_id, patient_id, start_at, end_at,
    occupied_start, occupied_end, duration_minutes, prep_minutes, recovery_minutes, status,
    active, manage_token, ics_uid, ics_sequence, note, source, cancel_reason, created_at,
    updated_at, cancelled_at)
SELECT r.location_id, r.id, :svc, p.id,
    o.t + interval '10 minutes', o.t + interval '60 minutes', o.t, o.t + interval '75 minutes',
    50, 10, 15, st.status, st.status IN ('booked', 'completed'),
    md5(r.id || '-' || d || '-' || k), 'bench-' || r.id || '-' || d || '-' || k, 0, '', 'online',
    '', o.t - interval '30 days', o.t - interval '30 days',
    CASE WHEN st.status = 'cancelled' THEN o.t - (((r.id + d) % 48) || ' hours')::interval END
FROM resources r
JOIN patients p ON p.name = 'Chair patient ' || r.id
CROSS JOIN generate_series(0, :days - 1) AS d
CROSS JOIN generate_series(0, :per_day - 1) AS k
CROSS JOIN LATERAL (SELECT :base + d * interval '1 day' + k * interval '75 minutes' AS t) o
CROSS JOIN LATERAL (SELECT CASE
    WHEN (r.id * 7 + d * 13 + k * 31) % 100 < 5 THEN 'cancelled'
    WHEN (r.id * 7 + d * 13 + k * 31) % 100 < 8 THEN 'no_show'
    WHEN o.t < :now THEN 'completed' ELSE 'booked' END AS status) st
WHERE r.kind = 'chair'
"""

SQLITE_INSERT = """
WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n + 1 < :days),
k(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM k WHERE n + 1 < :per_day),
o AS (
    SELECT r.location_id AS loc, r.id AS rid, p.id AS pid, d.n AS d, k.n AS k,
        unixepoch(:base) + d.n * 86400 + k.n * 4500 AS t,
        CASE WHEN (r.id * 7 + d.n * 13 + k.n * 31) % 100 < 5 THEN 'cancelled'
             WHEN (r.id * 7 + d.n * 13 + k.n * 31) % 100 < 8 THEN 'no_show'
             WHEN unixepoch(:base) + d.n * 86400 + k.n * 4500 < unixepoch(:now) THEN 'completed'
             ELSE 'booked' END AS status
    FROM resources r JOIN patients p ON p.name = 'Chair patient ' || r.id, d, k
    WHERE r.kind = 'chair'
)
INSERT INTO appointments (location_id, resource_id, service_id, patient_id, start_at, end_at,
    occupied_start, occupied_end, duration_minutes, prep_minutes, recovery_minutes, status,
    active, manage_token, ics_uid, ics_sequence, note, source, cancel_reason, created_at,
    updated_at, cancelled_at)
SELECT loc, rid, :svc, pid,
    strftime('%Y-%m-%d %H:%M:%f000', t + 600, 'unixepoch'),
    strftime('%Y-%m-%d %H:%M:%f000', t + 3600, 'unixepoch'),
    strftime('%Y-%m-%d %H:%M:%f000', t, 'unixepoch'),
    strftime('%Y-%m-%d %H:%M:%f000', t + 4500, 'unixepoch'),
    50, 10, 15, status, status IN ('booked', 'completed'),
    rid || '-' || d || '-' || k, 'bench-' || rid || '-' || d || '-' || k, 0, '', 'online', '',
    strftime('%Y-%m-%d %H:%M:%f000', t - 2592000, 'unixepoch'),
    strftime('%Y-%m-%d %H:%M:%f000', t - 2592000, 'unixepoch'),
    CASE WHEN status = 'cancelled'
        THEN strftime('%Y-%m-%d %H:%M:%f000', t - ((rid + d) % 48) * 3600, 'unixepoch') END
FROM o
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--days", type=int, default=500, help="days of visits (x 2,000 rows)")
    parser.add_argument("--explain", action="store_true", help="print the PostgreSQL plan")
    parser.add_argument("--profile", action="store_true", help="print the report's profile")
    args = parser.parse_args()

    from sqlalchemy import text

    from config import TestConfig
    from scheduler import create_app
    from scheduler.extensions import db
    from scheduler.models import Clinician, Location, Patient, ShiftPattern
    from scheduler.services import reports
    from tests.factories import make_location, make_service

    with database(args.db) as url:
        app = create_app(TestConfig(url))
        with app.app_context():
            session = db.session
            locs = [
                make_location(
                    session,
                    slug=f"bench-{i}",
                    timezone="America/New_York",
                    chairs=CHAIRS,
                    rooms=2,
                    hours=((dt.time(8), dt.time(21)),),
                )
                for i in range(LOCATIONS)
            ]
            svc = make_service(session, locs, slug="inf", duration=50, prep=10, recovery=15)
            for loc in locs:
                for r in loc.resources:
                    session.add(
                        Patient(
                            name=f"Chair patient {r.id}",
                            phone="+1",
                            email="x@y.z",
                            match_key=f"chair {r.id}",
                        )
                    )
                for n in range(3):
                    nurse = Clinician(name=f"Nurse {loc.slug} {n}", role="nurse")
                    session.add(nurse)
                    session.flush()
                    for weekday in range(7):
                        session.add(
                            ShiftPattern(
                                clinician_id=nurse.id,
                                location_id=loc.id,
                                weekday=weekday,
                                starts=dt.time(7 + 2 * n),
                                ends=dt.time(17 + 2 * n),
                            )
                        )
            session.commit()
            base = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)  # 08:00 EDT
            now = base + dt.timedelta(days=args.days // 2)
            params = {
                "svc": svc.id,
                "days": args.days,
                "per_day": PER_DAY,
                "base": base if args.db == "postgresql" else base.strftime("%Y-%m-%d %H:%M:%S"),
                "now": now if args.db == "postgresql" else now.strftime("%Y-%m-%d %H:%M:%S"),
            }
            started = time.perf_counter()
            session.execute(text(PG_INSERT if args.db == "postgresql" else SQLITE_INSERT), params)
            session.commit()
            if args.db == "postgresql":
                session.execute(text("ANALYZE"))
                session.commit()
            total = session.execute(text("SELECT count(*) FROM appointments")).scalar_one()
            print(f"inserted {total:,} appointments in {time.perf_counter() - started:.1f} s")

            loc_id = locs[0].id
            # 90 days across the end of summer time (2 November 2025), inside the visits.
            first = max(base.date() + dt.timedelta(days=1), dt.date(2025, 10, 1))
            first = min(first, (base + dt.timedelta(days=args.days - 90)).date())
            last = first + dt.timedelta(days=89)
            db.session.remove()

            def report() -> reports.Utilisation:
                location = db.session.get(Location, loc_id)
                assert location is not None
                out = reports.utilisation(db.session(), location, first, last, now=now)
                db.session.remove()
                return out

            result = report()
            booked = sum(c.booked_chair_minutes for c in result.cells)
            print(
                f"90 days {first}..{last}: booked {booked:,} chair-min, "
                f"open {sum(c.open_chair_minutes for c in result.cells):,}, "
                f"no-show {result.no_show_rate:.3f}, late-cancel {result.late_cancel_rate:.3f}"
            )

            location = db.session.get(Location, loc_id)
            assert location is not None
            g = reports.grid(first, last, reports.ZoneInfo(location.timezone))
            pg = args.db == "postgresql"
            start = g.start if pg else reports._sqlite_text(g.start)
            end = g.end if pg else reports._sqlite_text(g.end)
            reach_start = g.start - reports.REACH
            reach_end = g.end + reports.REACH
            if not pg:
                reach_start = reports._sqlite_text(reach_start)  # type: ignore[assignment]
                reach_end = reports._sqlite_text(reach_end)  # type: ignore[assignment]
            mark = "%s" if pg else "?"
            rows_sql = f"""
                SELECT a.occupied_start, a.occupied_end, r.kind = 'chair',
                       s.kind <> 'consultation'
                FROM appointments a JOIN resources r ON r.id = a.resource_id
                JOIN services s ON s.id = a.service_id
                WHERE a.location_id = {mark} AND a.active
                  AND a.start_at >= {mark} AND a.start_at < {mark}
                  AND a.occupied_start < {mark} AND a.occupied_end > {mark}
                  AND (r.kind = 'chair' OR s.kind <> 'consultation')"""
            rates_sql = f"""
                SELECT a.status, a.start_at, a.cancelled_at FROM appointments a
                WHERE a.location_id = {mark} AND a.start_at >= {mark} AND a.start_at < {mark}"""
            raw = db.engine.raw_connection()
            cur = raw.cursor()
            fetched = 0

            def raw_fetch() -> None:
                nonlocal fetched
                cur.execute(rows_sql, (loc_id, reach_start, reach_end, end, start))
                fetched = len(cur.fetchall())
                cur.execute(rates_sql, (loc_id, start, end))
                cur.fetchall()

            statement, agg_params = reports.visits_query(location, g, args.db)
            compiled = statement.compile(dialect=db.engine.dialect)
            positional = [agg_params[name] for name in compiled.positiontup or []]

            def raw_aggregate() -> None:
                if pg:
                    cur.execute(str(compiled), agg_params)
                else:
                    cur.execute(str(compiled), positional)
                cur.fetchall()

            if pg and args.explain:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), agg_params)
                print("\n".join(row[0] for row in cur.fetchall()))

            if args.profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                profiler.runcall(report)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)

            t_report = p50(report, args.runs)
            t_fetch = p50(raw_fetch, args.runs)
            t_agg = p50(raw_aggregate, args.runs)
            raw.close()
            print(f"visits read by the report: {fetched:,}")
            print(f"report p50:        {t_report * 1000:8.1f} ms")
            print(f"raw fetch p50:     {t_fetch * 1000:8.1f} ms  (ratio {t_report / t_fetch:.2f}x)")
            print(f"raw aggregate p50: {t_agg * 1000:8.1f} ms  (the report's SQL alone)")


if __name__ == "__main__":
    main()
