"""Waitlist workers as real processes (`flask waitlist send-due`), counted at the
local Twilio server: two workers at once offer each (entry, slot) once (PostgreSQL); a worker
SIGKILLed mid-offer loses no offer and repeats none beyond the text in flight (both databases)."""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections import Counter

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from scheduler.models import WaitlistOffer
from tests.test_worker_processes import LEASE_SECONDS, engine, finish, flask, pg_url, worker_env
from tests.waitlist_support import cancel_all, join, make_world

__all__ = ["engine", "pg_url"]  # fixtures shared with the reminder worker's tests

NOW = dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)  # 09:00 in Los Angeles
CHAIRS = 10  # ten chairs free up at 10:00: ten freed rows, three offers each
ENTRIES = 40


def seed(engine) -> None:
    """Ten visits at 10:00 cancelled, forty patients waiting: 30 offers owed."""
    with Session(engine) as session:
        world = make_world(session, NOW, chairs=CHAIRS)
        for n in range(1, ENTRIES + 1):
            join(session, NOW, n)
        session.commit()
        cancel_all(session, world, NOW)
        session.commit()


def send_due(url, twilio, at: dt.datetime, **extra: str):
    env = worker_env(url, twilio, REMINDER_BATCH_SIZE="2", **extra)
    return flask("waitlist", "send-due", "--now", at.isoformat(), env=env)


def offer_states(engine) -> Counter[str]:
    with Session(engine) as session:
        return Counter(session.scalars(select(WaitlistOffer.status)))


def test_two_workers_at_once_offer_each_entry_and_slot_once(pg_url, engine, twilio):
    seed(engine)
    # Hold every text until both workers have one in flight: they really run at once.
    twilio.hold_after(0)
    workers = [send_due(pg_url, twilio, NOW + dt.timedelta(seconds=1)) for _ in range(2)]
    assert twilio.wait_held(2, timeout=90), [w.poll() for w in workers]
    twilio.release.set()
    outputs = [finish(w) for w in workers]

    per_phone = Counter(m.to for m in twilio.messages)
    assert set(per_phone.values()) == {1}, per_phone  # nobody offered the slot twice
    assert len(per_phone) == 3 * CHAIRS  # every freed chair offered to a batch of three
    sent = [int(out.split()[1].removeprefix("sent=")) for out in outputs]
    assert sum(sent) == 3 * CHAIRS and min(sent) >= 1, outputs
    assert offer_states(engine) == {"sent": 3 * CHAIRS}


def test_a_worker_killed_mid_offer_loses_none_and_repeats_at_most_the_one_in_flight(db_url, twilio):
    engine = create_engine(db_url)
    try:
        _kill_mid_offer(db_url, engine, twilio)
    finally:
        engine.dispose()


def _kill_mid_offer(url: str, engine, twilio) -> None:
    seed(engine)
    twilio.hold_after(7)  # the 8th text is accepted; its answer never reaches the worker
    worker = send_due(url, twilio, NOW + dt.timedelta(seconds=1))
    assert twilio.wait_held(1, timeout=90), worker.poll()
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate(timeout=30)
    with Session(engine) as session:
        in_flight = set(
            session.scalars(select(WaitlistOffer.to_phone).where(WaitlistOffer.status == "sending"))
        )
    twilio.release.set()
    states = offer_states(engine)
    assert states["sent"] == 7 and 1 <= states["sending"] <= 2  # a batch of two claimed
    assert sum(states.values()) == 3 * CHAIRS  # every offer was made before the texts

    # Before the lease runs out another worker texts the rest and leaves the dead one's alone;
    # after it, those go (again, for the one whose answer was lost).
    finish(send_due(url, twilio, NOW + dt.timedelta(seconds=2)))
    assert offer_states(engine)["sending"] == len(in_flight)
    late = NOW + dt.timedelta(seconds=2 * LEASE_SECONDS)
    finish(send_due(url, twilio, late))

    per_phone = Counter(m.to for m in twilio.messages)
    assert len(per_phone) == 3 * CHAIRS  # no offer lost
    repeated = {p for p, count in per_phone.items() if count > 1}
    assert len(repeated) <= 1 and repeated <= in_flight  # only the text in flight went twice
    assert offer_states(engine) == {"sent": 3 * CHAIRS}
