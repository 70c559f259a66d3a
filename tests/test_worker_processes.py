"""Reminder workers as real processes (`flask reminders ...`) against PostgreSQL and a local
Twilio-speaking server: two workers at once send each reminder exactly once; a worker killed
with SIGKILL mid-batch loses nothing; `reminders run` (BlockingScheduler) sends and stops on
SIGTERM."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import Session

from scheduler.models import Reminder
from tests.conftest import _clean
from tests.twilio_server import TwilioServer, daytime_zone, seed_due_reminders

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)  # 09:00 in Los Angeles
BATCH = 20
LEASE_SECONDS = 300


@pytest.fixture
def pg_url(postgresql_url: str) -> str:
    _clean(postgresql_url)
    return postgresql_url


@pytest.fixture
def engine(pg_url: str) -> Iterator[object]:
    eng = create_engine(pg_url)
    yield eng
    eng.dispose()


def seed(engine, n: int, due_at: dt.datetime = NOW, **kw: str) -> list[int]:
    with Session(engine) as session:
        ids = seed_due_reminders(session, n, due_at, **kw)
        session.commit()
    return ids


def worker_env(url: str, twilio: TwilioServer, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **twilio.config(),
        "DATABASE_URL": url,
        "SCHEDULER_EMBEDDED_WORKER": "0",
        "REMINDER_BATCH_SIZE": str(BATCH),
        "REMINDER_LEASE_SECONDS": str(LEASE_SECONDS),
        "PUBLIC_BASE_URL": "https://book.chairside.example",
        "SMTP_HOST": "",
        **extra,
    }


def flask(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "scheduler", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def send_due(url: str, twilio: TwilioServer, at: dt.datetime) -> subprocess.Popen[str]:
    return flask("reminders", "send-due", "--now", at.isoformat(), env=worker_env(url, twilio))


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    return out.strip()


def in_process_dispatch(url: str, twilio: TwilioServer, at: dt.datetime) -> Any:
    from config import TestConfig
    from scheduler import create_app, jobs
    from scheduler.extensions import db

    app = create_app(TestConfig(url, **twilio.config(), REMINDER_BATCH_SIZE=BATCH))
    try:
        return jobs.dispatch_once(app, at)
    finally:
        with app.app_context():
            db.engine.dispose()


def sent_per_reminder(twilio: TwilioServer) -> Counter[int]:
    """Accepted messages per reminder id (the id rides in the status callback URL)."""
    return Counter(
        int(parse_qs(urlparse(m.form["StatusCallback"]).query)["r"][0]) for m in twilio.messages
    )


def statuses(engine) -> Counter[str]:
    with Session(engine) as session:
        return Counter(session.scalars(select(Reminder.status)))


def test_two_workers_at_once_send_each_reminder_exactly_once(pg_url, engine, twilio):
    ids = seed(engine, 1000)
    # Hold every request until both workers have one in flight: they really run at once.
    # (One text at a time per worker, so two held requests mean two workers.)
    twilio.hold_after(0)
    env = worker_env(pg_url, twilio, REMINDER_SEND_CONCURRENCY="1")
    now = NOW.isoformat()
    workers = [flask("reminders", "send-due", "--now", now, env=env) for _ in range(2)]
    assert twilio.wait_held(2, timeout=90), [w.poll() for w in workers]
    twilio.release.set()
    outputs = [finish(w) for w in workers]

    per_reminder = sent_per_reminder(twilio)
    assert sorted(per_reminder) == sorted(ids)
    assert set(per_reminder.values()) == {1}
    assert len(twilio.requests) == 1000
    sent = [int(out.split()[0].removeprefix("sent=")) for out in outputs]
    assert sum(sent) == 1000 and min(sent) >= 1, outputs
    assert statuses(engine) == {"sent": 1000}
    # each message went to its own patient's number
    assert len({m.to for m in twilio.messages}) == 1000


def test_a_worker_killed_mid_batch_loses_nothing(pg_url, engine, twilio):
    ids = seed(engine, 400)
    twilio.hold_after(150)  # the 151st message is accepted, its answer never reaches the worker
    worker = send_due(pg_url, twilio, NOW)
    assert twilio.wait_held(1, timeout=90), worker.poll()
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate(timeout=30)
    with Session(engine) as session:
        in_flight = set(session.scalars(select(Reminder.id).where(Reminder.status == "sending")))
        recorded = len(session.scalars(select(Reminder.id).where(Reminder.status == "sent")).all())
    twilio.release.set()
    assert 1 <= len(in_flight) <= BATCH
    assert recorded >= 100  # the batches before the one in flight were recorded

    # Before the lease runs out, another worker sends the rest but leaves the dead worker's
    # rows alone ...
    early = in_process_dispatch(pg_url, twilio, NOW + dt.timedelta(seconds=1))
    assert early.sent == 400 - recorded - len(in_flight)
    assert statuses(engine)["sending"] == len(in_flight)
    # ... after it, they are sent again.
    late = NOW + dt.timedelta(seconds=2 * LEASE_SECONDS)
    assert finish(send_due(pg_url, twilio, late)) == f"sent={len(in_flight)} skipped=0 failed=0"

    per_reminder = sent_per_reminder(twilio)
    assert sorted(per_reminder) == sorted(ids)  # nothing lost
    duplicates = {rid for rid, count in per_reminder.items() if count > 1}
    assert duplicates <= in_flight  # only rows in flight at the kill may go twice
    # the held ones were accepted but their answers never reached the worker
    held = {int(m.form["StatusCallback"].rsplit("=", 1)[1]) for m in twilio.messages[150:154]}
    assert held & duplicates
    assert max(per_reminder.values()) == 2
    assert statuses(engine) == {"sent": 400}


def test_reminders_run_sends_on_its_interval_and_stops_on_sigterm(pg_url, engine, twilio):
    now = dt.datetime.now(dt.UTC)
    ids = seed(engine, 5, now - dt.timedelta(minutes=1), timezone=daytime_zone(now))
    env = worker_env(pg_url, twilio, REMINDER_POLL_SECONDS="1")
    worker = flask("reminders", "run", env=env)
    try:
        deadline = time.monotonic() + 60
        while len(twilio.messages) < 5 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
        assert sorted(sent_per_reminder(twilio)) == sorted(ids)
        # Another due reminder is picked up by a later tick of the same process.
        more = seed(engine, 1, dt.datetime.now(dt.UTC), timezone=daytime_zone(now))
        deadline = time.monotonic() + 60
        while len(twilio.messages) < 6 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
        assert sorted(sent_per_reminder(twilio)) == sorted(ids + more)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err[-3000:]
    assert set(sent_per_reminder(twilio).values()) == {1}
    assert statuses(engine) == {"sent": 6}


def test_a_stopping_worker_hands_back_its_unsent_rows(pg_url, engine, twilio):
    # What SIGTERM does inside a pass, without the process: stop after the row in hand.
    import threading

    from config import TestConfig
    from scheduler import create_app, jobs
    from scheduler.extensions import db

    seed(engine, 30)
    app = create_app(
        TestConfig(
            pg_url, **twilio.config(), REMINDER_BATCH_SIZE=BATCH, REMINDER_SEND_CONCURRENCY=1
        )
    )
    stop = threading.Event()
    twilio.hold_after(3)
    result: list[jobs.DispatchResult] = []
    runner = threading.Thread(target=lambda: result.append(jobs.dispatch_once(app, NOW, stop=stop)))
    runner.start()
    assert twilio.wait_held(1, timeout=60)
    stop.set()
    twilio.release.set()
    runner.join(timeout=60)
    assert result and result[0].sent == 4
    assert statuses(engine) == {"sent": 4, "pending": 26}
    with Session(engine) as session:
        attempts = set(
            session.scalars(select(Reminder.attempts).where(Reminder.status == "pending"))
        )
        session.execute(update(Reminder).values(status="sent"))  # keep the next test's seed clean
        session.commit()
    assert attempts == {0}
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_sigkill_repeats_at_most_the_texts_in_flight(db_url, twilio, concurrency):
    """Outcomes are recorded as the answers come in, not at the next re-check or the end of
    the batch: after a SIGKILL at most REMINDER_SEND_CONCURRENCY texts go out twice."""
    eng = create_engine(db_url)
    try:
        ids = seed(eng, 160)
        twilio.hold_after(130)  # mid-batch: the second batch of 100 has 30 answered texts
        env = worker_env(
            db_url,
            twilio,
            REMINDER_BATCH_SIZE="100",
            REMINDER_RECHECK_SECONDS="600",  # no re-check inside the batch to record at
            REMINDER_SEND_CONCURRENCY=str(concurrency),
        )
        worker = flask("reminders", "send-due", "--now", NOW.isoformat(), env=env)
        assert twilio.wait_held(concurrency, timeout=90), worker.poll()
        # Kill only once every answered text is recorded (the worker records each as its answer
        # comes in); on a loaded machine a fixed pause could kill it between answer and record.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with Session(eng) as session:
                done = session.scalar(
                    select(func.count()).select_from(Reminder).where(Reminder.status == "sent")
                )
            if done and done >= 130:
                break
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=30)
        # In flight at the kill: requests Twilio holds unanswered (on a loaded machine a held
        # request can time out and the worker send another, so this may exceed concurrency).
        in_flight = twilio.state.held
        twilio.release.set()
        with Session(eng) as session:
            recorded = len(
                session.scalars(select(Reminder.id).where(Reminder.status == "sent")).all()
            )
        first_run = [int(m.form["StatusCallback"].rsplit("=", 1)[1]) for m in twilio.messages]
        assert recorded >= 130 - concurrency
        late = NOW + dt.timedelta(seconds=2 * LEASE_SECONDS)
        out = finish(flask("reminders", "send-due", "--now", late.isoformat(), env=env))
        assert out.startswith(f"sent={160 - recorded} "), out
        per_reminder = sent_per_reminder(twilio)
        assert sorted(per_reminder) == sorted(ids)  # nothing lost
        duplicates = [rid for rid, count in per_reminder.items() if count > 1]
        assert len(duplicates) <= in_flight, (duplicates, in_flight, recorded, first_run[120:])
        assert statuses(eng) == {"sent": 160}
    finally:
        eng.dispose()
