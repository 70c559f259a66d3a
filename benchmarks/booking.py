"""Bookings per second through gunicorn (4 workers, 16 concurrent clients) on PostgreSQL.

Prints bookings/s and the rate of a plain GET /api/v1/locations in the same run, measured in
alternating batches (4 rounds of GET then POST, after warming both), their ratio (target >= 0.4),
the ratio of each round, and the count of 5xx answers (target 0).
Usage: python benchmarks/booking.py [--requests N] [--db postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from _common import ROOT, database  # type: ignore[import-not-found]

CLIENTS = 16
WARMUP_BOOKINGS = 200
ROUNDS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_load(url: str, method: str, bodies: list[dict | None]) -> tuple[float, Counter[int]]:
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    local = threading.local()

    def one(body: dict | None) -> None:
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = requests.Session()
        r = http.request(method, url, json=body, timeout=60)
        with lock:
            statuses[r.status_code] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, bodies))
    return len(bodies) / (time.perf_counter() - started), statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    args = parser.parse_args()

    from config import TestConfig
    from scheduler import create_app
    from scheduler.extensions import db
    from tests.factories import make_location, make_service

    with database(args.db) as url:
        app = create_app(TestConfig(url))
        with app.app_context():
            loc = make_location(db.session, slug="bench", chairs=20, rooms=0)
            make_service(db.session, [loc], slug="inf", duration=40, prep=10, recovery=10)
            db.session.commit()
            db.engine.dispose()
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SCHEDULER_EMBEDDED_WORKER": "0",
            "RATELIMIT_ENABLED": "0",
            "SECRET_KEY": "bench",
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "4",
                "-b",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                "scheduler:create_app()",
            ],
            cwd=ROOT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}/api/v1"
        try:
            for _ in range(200):
                try:
                    requests.get(f"{base}/locations", timeout=10)
                    break
                except (requests.ConnectionError, requests.Timeout):
                    time.sleep(0.1)
            today = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
            slots = requests.get(
                f"{base}/locations/bench/availability",
                params={"service": "inf", "from": today.isoformat(), "days": 50},
                timeout=60,
            ).json()["slots"]
            get_seconds = book_seconds = 0.0
            get_status: Counter[int] = Counter()
            book_status: Counter[int] = Counter()
            round_ratios: list[float] = []
            bodies: list[dict | None] = []
            for i in range(args.requests + WARMUP_BOOKINGS):
                slot = slots[i % len(slots)]
                bodies.append(
                    {
                        "location": "bench",
                        "service": "inf",
                        "start": slot["start"],
                        "patient": {
                            "name": f"Bench {i}",
                            "phone": f"+1415555{i % 10000:04d}",
                            "email": f"bench{i}@example.com",
                        },
                    }
                )
            # Warm every worker on both endpoints (connections, statement caches). Then GET and
            # POST batches alternate, so drift on a shared machine falls on both alike.
            run_load(f"{base}/locations", "GET", [None] * 200)
            run_load(f"{base}/appointments", "POST", bodies[args.requests :])
            size = args.requests // ROUNDS
            for r in range(ROUNDS):
                get_rate, statuses = run_load(f"{base}/locations", "GET", [None] * size)
                get_seconds += size / get_rate
                get_status += statuses
                book_rate, statuses = run_load(
                    f"{base}/appointments", "POST", bodies[r * size : (r + 1) * size]
                )
                book_seconds += size / book_rate
                book_status += statuses
                round_ratios.append(book_rate / get_rate)
        finally:
            server.terminate()
            server.wait(20)
    fivexx = sum(n for code, n in (get_status + book_status).items() if code >= 500)
    get_rate, book_rate = ROUNDS * size / get_seconds, ROUNDS * size / book_seconds
    print(f"database: {args.db}; gunicorn 4 workers; {CLIENTS} concurrent clients")
    print(f"GET /api/v1/locations: {get_rate:.0f} req/s {dict(get_status)}")
    print(f"POST /api/v1/appointments: {book_rate:.0f} bookings/s {dict(book_status)}")
    print(f"ratio per round: {', '.join(f'{x:.2f}' for x in round_ratios)}")
    print(f"ratio bookings / GET: {book_rate / get_rate:.2f} (target >= 0.4)")
    print(f"5xx answers: {fivexx} (target 0)")


if __name__ == "__main__":
    main()
