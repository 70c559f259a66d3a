"""Reminder dispatch throughput: 10,000 due reminders sent to a local Twilio-speaking server.

All reminders are due at once; one worker process dispatches them (`jobs.dispatch_once`, as
`reminders send-due` runs it) in rounds, and before each round the same process runs a chunk of
a bare loop of `client.messages.create` against the same server, so a busy machine slows both
alike. Prints reminders/s, the bare loop's rate, their ratio (target >= 0.7) and the worker's
peak RSS (target <= 150 MB).
Usage: python benchmarks/reminders.py [--reminders N] [--bare N] [--rounds N] [--db ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request

from _common import ROOT, database  # type: ignore[import-not-found]

NOW = dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)  # 09:00 in Los Angeles


def start_twilio_server() -> tuple[subprocess.Popen[str], str]:
    """The test server in its own process, so it does not share the GIL with either loop."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.twilio_server"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def server_count(base: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/_test/count", timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def bare_loop(base: str, n: int) -> float:
    """Messages per second of plain client.messages.create calls (same client, same server)."""
    from twilio.rest import Client

    from scheduler.services.sms import BaseUrlHttpClient
    from tests.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=BaseUrlHttpClient(base, timeout=10))
    body = "Chairside Clinic: Tue 1 Dec, 9:00 AM PST at Bulk Street. Reply C to confirm."
    client.messages.create(to="+16280000000", from_=FROM_NUMBER, body=body)  # connect
    started = time.perf_counter()
    for i in range(n):
        client.messages.create(
            to=f"+1628{3000000 + i:07d}",
            from_=FROM_NUMBER,
            body=body,
            status_callback=f"https://book.chairside.example/webhooks/twilio/status?r={i}",
        )
    return n / (time.perf_counter() - started)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the
    parent through fork and exec, so it would report the benchmark's own seeding."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(url: str, base: str, reminders: int, bare: int, rounds: int) -> None:
    """Child process: `rounds` dispatch passes of reminders/rounds rows each, each preceded by a
    bare chunk of bare/rounds sends from the same process, so a busy machine slows both alike.
    Prints JSON with the totals and the peak RSS."""
    from config import TestConfig
    from scheduler import create_app, jobs
    from tests.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

    app = create_app(
        TestConfig(
            url,
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_FROM_NUMBER=FROM_NUMBER,
            TWILIO_API_BASE_URL=base,
            PUBLIC_BASE_URL="https://book.chairside.example",
        )
    )
    worker_seconds = bare_seconds = 0.0
    totals = {"sent": 0, "skipped": 0, "failed": 0}
    per_round = -(-reminders // rounds)
    for _ in range(rounds):
        chunk = bare // rounds
        bare_seconds += chunk / bare_loop(base, chunk)
        started = time.perf_counter()
        result = jobs.dispatch_once(app, NOW, max_rows=per_round)
        worker_seconds += time.perf_counter() - started
        for key in totals:
            totals[key] += getattr(result, key)
    rss_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "result": totals,
                "seconds": worker_seconds,
                "bare_rate": (bare // rounds) * rounds / bare_seconds,
                "rss_mb": rss_mb,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--bare", type=int, default=5_000, help="bare sends in total")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--worker", nargs=2, metavar=("URL", "BASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.reminders, args.bare, args.rounds)
        return

    from sqlalchemy import create_engine, func, select, text
    from sqlalchemy.orm import Session

    from scheduler.models import Reminder
    from tests.twilio_server import seed_due_reminders

    server, base = start_twilio_server()
    try:
        with database(args.db) as url:
            engine = create_engine(url)
            with Session(engine) as session:
                seed_due_reminders(session, args.reminders, NOW)  # all due at once
                session.commit()
                if args.db == "postgresql":
                    session.execute(text("ANALYZE"))  # as autovacuum would after a bulk load
                    session.commit()
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    url,
                    base,
                    f"--reminders={args.reminders}",
                    f"--bare={args.bare}",
                    f"--rounds={args.rounds}",
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                check=True,
            )
            report = json.loads(child.stdout.strip().splitlines()[-1])
            with Session(engine) as session:
                statuses = dict(
                    session.execute(
                        select(Reminder.status, func.count()).group_by(Reminder.status)
                    ).all()
                )
            engine.dispose()
    finally:
        counts = server_count(base)
        server.terminate()
        server.wait(10)

    bare = report["bare_rate"]
    rate = report["result"]["sent"] / report["seconds"]
    print(f"database: {args.db}; {args.reminders} due reminders; one worker process")
    print(
        f"bare client.messages.create loop: {bare:.0f} msg/s "
        f"({args.bare} sends, interleaved with the worker in {args.rounds} rounds)"
    )
    print(
        f"worker dispatch: {rate:.0f} reminders/s {report['result']} in {report['seconds']:.1f} s"
    )
    print(f"ratio worker / bare loop: {rate / bare:.2f} (target >= 0.7)")
    print(f"worker peak RSS: {report['rss_mb']:.0f} MB (target <= 150 MB)")
    print(f"reminder rows by status: {statuses}; server accepted {counts['accepted']} messages")


if __name__ == "__main__":
    main()
