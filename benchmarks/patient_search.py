"""Staff patient search on PostgreSQL with 100,000 patients: p50 of a phone-fragment and a
name search through `services.patients.search` (as a front-desk user, so the "seen at my
locations" filter runs too), and of the raw trigram-index lookup of every match of the same
fragment through psycopg in the same run; prints each, the ratio search / raw, the number of
hits and whether the plan uses the trigram index.

Usage: python benchmarks/patient_search.py [--patients N] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets

from _common import database, p50  # type: ignore[import-not-found]

SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vor", "shi", "bel", "dan", "ux", "pre", "gol"]


def _name(rng: random.Random) -> str:
    def word() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()

    return f"{word()} {word()}{word().lower()}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    import psycopg
    from sqlalchemy import insert, select

    from config import TestConfig
    from scheduler import create_app
    from scheduler.extensions import db
    from scheduler.models import Appointment, Patient, StaffUser
    from scheduler.services import patients
    from tests.factories import make_location, make_service, make_staff

    rng = random.Random(12)
    with database("postgresql") as url:
        app = create_app(TestConfig(url))
        with app.app_context():
            session = db.session
            loc = make_location(session, slug="bench", chairs=20, rooms=0)
            svc = make_service(session, [loc], slug="inf")
            staff, _ = make_staff(session, role="front_desk", locations=[loc])
            staff_id, loc_id, svc_id = staff.id, loc.id, svc.id
            chairs = [r.id for r in loc.resources]
            session.commit()
            rows = []
            for i in range(args.patients):
                name = _name(rng)
                dob = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(25_000))
                key = patients.name_key(name)
                rows.append(
                    {
                        "name": name,
                        "phone": f"+1415{rng.randrange(10**7):07d}",
                        "email": f"p{i}@example.com",
                        "date_of_birth": dob,
                        "name_key": key,
                        "match_key": f"{key}|{dob.isoformat()}#{i}",
                        "notes": "",
                        "sms_consent": False,
                        "created_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
                    }
                )
            for at in range(0, len(rows), 10_000):
                session.execute(insert(Patient), rows[at : at + 10_000])
            ids = list(session.scalars(select(Patient.id).order_by(Patient.id)))
            past = dt.datetime(2025, 6, 1, 16, tzinfo=dt.UTC)
            visits = []
            for n, pid in enumerate(ids):  # one past (cancelled) visit each, at the location
                start = past + dt.timedelta(minutes=n)
                visits.append(
                    {
                        "location_id": loc_id,
                        "resource_id": chairs[n % len(chairs)],
                        "service_id": svc_id,
                        "patient_id": pid,
                        "start_at": start,
                        "end_at": start + dt.timedelta(minutes=40),
                        "occupied_start": start,
                        "occupied_end": start + dt.timedelta(minutes=40),
                        "duration_minutes": 40,
                        "prep_minutes": 0,
                        "recovery_minutes": 0,
                        "status": "cancelled",
                        "active": False,
                        "manage_token": secrets.token_urlsafe(24),
                        "ics_uid": f"{secrets.token_hex(12)}@bench",
                        "ics_sequence": 0,
                        "note": "",
                        "source": "online",
                        "cancel_reason": "",
                        "created_at": start,
                        "updated_at": start,
                    }
                )
            for at in range(0, len(visits), 10_000):
                session.execute(insert(Appointment), visits[at : at + 10_000])
            session.commit()
            session.execute(db.text("ANALYZE"))
            session.commit()

            sample = rows[rng.randrange(len(rows))]
            phone_fragment = sample["phone"][-7:]
            name_fragment = sample["name"].split()[1].lower()  # a whole family name
            user = session.get(StaffUser, staff_id)
            assert user is not None
            found = patients.search(session, user, phone_fragment)
            assert any(p.phone == sample["phone"] for p in found), "phone search missed"
            session.rollback()

            raw_url = url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(raw_url, autocommit=True) as conn:
                results = {}
                for label, column, fragment in (
                    ("phone fragment", "phone", phone_fragment),
                    ("name", "name_key", name_fragment),
                ):
                    # Every match, as the search must see them all to order them.
                    sql = f"SELECT id FROM patients WHERE {column} LIKE %s"
                    pattern = f"%{fragment}%"
                    plan = "\n".join(
                        r[0] for r in conn.execute(f"EXPLAIN {sql}", (pattern,)).fetchall()
                    )
                    index = "ix_patients_" + column + "_trgm"
                    raw = p50(lambda s=sql, p=pattern: conn.execute(s, (p,)).fetchall(), args.runs)

                    def service(f: str = fragment) -> None:
                        patients.search(session, user, f)
                        session.rollback()

                    full = p50(service, args.runs)
                    results[label] = (
                        full,
                        raw,
                        index in plan,
                        len(patients.search(session, user, fragment)),
                    )
                    session.rollback()
            print(f"patients: {args.patients:,}; runs: {args.runs}")
            for label, (full, raw, uses_index, hits) in results.items():
                print(
                    f"{label:15s} search p50 {full * 1000:7.2f} ms   raw index lookup p50 "
                    f"{raw * 1000:6.2f} ms   ratio {full / raw:5.1f}x   hits {hits:3d}   "
                    f"plan uses trigram index: {uses_index}"
                )


if __name__ == "__main__":
    main()
