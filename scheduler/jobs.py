"""The only module that knows APScheduler: one interval job that dispatches due reminders.

APScheduler only says "now is a good time to look"; the database says what is due
(scheduler.services.reminders claims rows atomically, so any number of workers may run).

Two ways to run it:
- embedded (SCHEDULER_EMBEDDED_WORKER=1, the default; one machine): the web process starts a
  BackgroundScheduler when it serves its first request. CLI commands (db upgrade, seed-demo,
  reminders ...) never serve requests, so they never start it, and under `flask run --reload`
  only the child that serves requests does: the worker runs once.
- own process (gunicorn deployments: SCHEDULER_EMBEDDED_WORKER=0 for the web workers):
  `flask --app scheduler reminders run` runs a BlockingScheduler in the foreground; SIGTERM
  finishes the texts in hand, hands back the rest of the batch and exits. Run one or more of
  these (systemd, a container) next to the web workers.
`flask --app scheduler reminders send-due [--now ISO]` is one pass (cron, operators, tests).

Each job run: the reminder pass, the waitlist pass, then the invite mail outbox (when
installed). The waitlist pass (`waitlist_once`; `flask --app scheduler waitlist send-due` runs
it alone) expires offers past their time, turns "a slot may have freed" rows into offers
(services.waitlist.process_freed, in one transaction: the offers' unique (entry, slot) makes
concurrent workers offer each pair once) and texts them one at a time, each recorded as soon
as the provider answers: a worker killed mid-pass can repeat at most the one text in flight. A pass claims
REMINDER_BATCH_SIZE rows at a time under a REMINDER_LEASE_SECONDS lease, re-checks the visits
at most REMINDER_RECHECK_SECONDS before sending, keeps up to REMINDER_SEND_CONCURRENCY texts in
flight on a small thread pool (only HTTP there; the database stays on the job's thread) and
records each text's outcome as soon as its answer is taken in, before the next text goes to the
pool: a worker killed mid-batch can repeat at most REMINDER_SEND_CONCURRENCY texts.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from flask import Flask
from sqlalchemy.orm import Session

from scheduler.extensions import db
from scheduler.services import reminders, waitlist
from scheduler.services.settings import ClinicSettings
from scheduler.services.sms import (
    LogSmsSender,
    SendResult,
    SmsError,
    SmsSender,
    sender_from_config,
)

log = logging.getLogger(__name__)
UTC = dt.UTC


@dataclass
class DispatchResult:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retrying: int = 0  # also counted in `failed`: this attempt failed, a later one will retry
    deferred: int = 0  # quiet hours: moved to 08:00 local


def _clock(app: Flask) -> Callable[[], dt.datetime]:
    clock = app.config.get("CLOCK")
    return clock if clock is not None else (lambda: dt.datetime.now(UTC))


def sms_sender(app: Flask) -> SmsSender:
    """The app's sender, built once (the Twilio client keeps its connections)."""
    sender = app.extensions.get("chairside_sms")
    if sender is None:
        sender = sender_from_config(app.config)
        app.extensions["chairside_sms"] = sender
    return cast(SmsSender, sender)


def dispatch_once(
    app: Flask,
    now: dt.datetime,
    *,
    stop: threading.Event | None = None,
    max_rows: int | None = None,
) -> DispatchResult:
    """One pass: send every reminder due at `now` (or the first `max_rows`), then pending mail.

    The mail pass runs at the app's clock (real time), never at `now`: `send-due --now` is for
    looking at reminders at another instant, and a mail retried then would have its next
    attempt pushed as far ahead as `now` is.
    """
    with app.app_context():
        try:
            result = _send_due(app, now, stop, max_rows)
            if stop is None or not stop.is_set():
                _log_waitlist(app, _waitlist_pass(app, now, stop))
            if stop is None or not stop.is_set():
                _deliver_mail(app, _clock(app)())
        finally:
            db.session.remove()
    if result.sent or result.failed or result.skipped:
        # Without Twilio credentials nothing reaches a phone: say so, not "sent".
        logged = isinstance(sms_sender(app), LogSmsSender)
        log.info(
            "reminders: %s=%d skipped=%d failed=%d (retrying %d)",
            "logged-not-sent" if logged else "sent",
            result.sent,
            result.skipped,
            result.failed,
            result.retrying,
        )
    return result


def _send_due(
    app: Flask, now: dt.datetime, stop: threading.Event | None, max_rows: int | None
) -> DispatchResult:
    session = db.session
    settings = ClinicSettings.from_config(app.config)
    sender = sms_sender(app)
    batch = int(app.config.get("REMINDER_BATCH_SIZE", 100))
    lease = dt.timedelta(seconds=int(app.config.get("REMINDER_LEASE_SECONDS", 300)))
    fresh_for = float(app.config.get("REMINDER_RECHECK_SECONDS", 1.0))
    result = DispatchResult()
    started = time.monotonic()
    left = max_rows if max_rows is not None else -1
    concurrency = max(1, int(app.config.get("REMINDER_SEND_CONCURRENCY", 4)))
    with contextlib.ExitStack() as stack:
        rows = stack.enter_context(_row_session(session))
        pool = (
            stack.enter_context(ThreadPoolExecutor(concurrency, thread_name_prefix="sms"))
            if concurrency > 1
            else None
        )
        while (stop is None or not stop.is_set()) and left != 0:
            token = f"{os.getpid()}-{secrets.token_hex(8)}"
            # The lease runs on the wall clock from the moment of claiming, whatever `now` says.
            lease_until = now + dt.timedelta(seconds=time.monotonic() - started) + lease
            limit = batch if left < 0 else min(batch, left)
            ids = reminders.claim_due(rows, now, token=token, lease_until=lease_until, limit=limit)
            left = left - len(ids) if left > 0 else left
            items = reminders.load_claimed(rows, ids, token, now)
            rows.commit()
            if not ids:
                break
            done = False
            try:
                done = _send_batch(
                    rows, items, sender, now, settings, fresh_for, stop, result, pool, concurrency
                )
            finally:
                if not done or len(items) < len(ids):
                    # Rows not handled (stopping, or an unexpected error): hand them back.
                    rows.rollback()
                    reminders.release(rows, token)
                    rows.commit()
    return result


class _Batch:
    """One claimed batch on its way out: re-checks, sends (up to `concurrency` at once on a
    thread pool, so the provider's latency overlaps), records. Only the calling thread touches
    the database; the pool's threads only talk HTTP."""

    def __init__(
        self,
        rows: Session,
        sender: SmsSender,
        now: dt.datetime,
        settings: ClinicSettings,
        result: DispatchResult,
        pool: ThreadPoolExecutor | None,
        concurrency: int,
    ) -> None:
        self.rows, self.sender, self.now, self.settings = rows, sender, now, settings
        self.result, self.pool, self.concurrency = result, pool, concurrency
        # Accepted texts are recorded as soon as their answers are taken in (the ones that
        # finished together in one statement), before another text is handed to the pool. So
        # at any instant at most `concurrency` texts have reached the provider without being
        # recorded: a worker killed then (SIGKILL) leaves only those `sending`, and only they
        # can go twice once the lease runs out.
        self.accepted: list[tuple[reminders.Outgoing, SendResult]] = []
        self.in_flight: deque[tuple[reminders.Outgoing, Future[SendResult]]] = deque()

    def send(self, item: reminders.Outgoing) -> None:
        if self.pool is None:
            try:
                self.accepted.append((item, reminders.deliver(item, self.sender, self.settings)))
                _tally(self.result, reminders.Outcome("sent"))
            except SmsError as exc:
                self._failed(item, exc)
            self.record()
            return
        future = self.pool.submit(reminders.deliver, item, self.sender, self.settings)
        self.in_flight.append((item, future))
        self.collect(keep=self.concurrency - 1)

    def collect(self, keep: int = 0) -> None:
        """Take in finished sends, in order, until at most `keep` are still in flight."""
        while self.in_flight and (len(self.in_flight) > keep or self.in_flight[0][1].done()):
            item, future = self.in_flight.popleft()
            try:
                self.accepted.append((item, future.result()))
                _tally(self.result, reminders.Outcome("sent"))
            except SmsError as exc:
                self._failed(item, exc)
        self.record()

    def _failed(self, item: reminders.Outgoing, exc: SmsError) -> None:
        _tally(self.result, reminders.record_error(self.rows, item, exc, self.now))
        self.rows.commit()

    def record(self) -> None:
        if not self.accepted:
            return
        recorded = reminders.record_sent(self.rows, self.accepted, self.now)
        self.rows.commit()
        if recorded < len(self.accepted):
            lost = len(self.accepted) - recorded
            log.warning("%d sent reminders had been reclaimed by another worker", lost)
        self.accepted.clear()


def _send_batch(
    rows: Session,
    items: list[reminders.Outgoing],
    sender: SmsSender,
    now: dt.datetime,
    settings: ClinicSettings,
    fresh_for: float,
    stop: threading.Event | None,
    result: DispatchResult,
    pool: ThreadPoolExecutor | None = None,
    concurrency: int = 1,
) -> bool:
    """Send a claimed batch; False when it stopped before the end."""
    batch = _Batch(rows, sender, now, settings, result, pool, concurrency)
    checked_at = -fresh_for - 1.0
    reasons: dict[int, str] = {}
    try:
        for index, item in enumerate(items):
            if stop is not None and stop.is_set():
                return False
            if time.monotonic() - checked_at > fresh_for:
                # Re-read the visits of the rest of the batch: no text goes out on a check older
                # than REMINDER_RECHECK_SECONDS (a cancel just before the send is seen).
                batch.collect(keep=len(batch.in_flight))
                batch.record()
                reasons = reminders.recheck(rows, items[index:], now)
                checked_at = time.monotonic()
            outcome = reminders.prepare(rows, item, now, reasons.get(item.id, ""))
            if rows.in_transaction():
                rows.commit()  # no transaction (no SQLite write lock) while sending
            if outcome is None:
                batch.send(item)
            else:
                _tally(result, outcome)
    finally:
        # Texts already handed to the provider are waited for and recorded, even when stopping.
        try:
            batch.collect(keep=0)
        finally:
            batch.record()
    return True


@contextlib.contextmanager
def _row_session(session: Any) -> Iterator[Session]:
    """Where the worker's statements go. On PostgreSQL an autocommit connection: each statement
    (each is atomic on its own: claim_due is one UPDATE) is one round trip, without BEGIN and
    COMMIT. SQLite keeps its rule: every transaction takes the write lock (BEGIN IMMEDIATE)."""
    engine = session.get_bind()
    if engine.dialect.name != "postgresql":
        yield session()
        return
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        with Session(bind=conn) as rows:
            yield rows


def _tally(result: DispatchResult, outcome: reminders.Outcome) -> None:
    if outcome.kind == "sent":
        result.sent += 1
    elif outcome.kind == "skipped":
        result.skipped += 1
    elif outcome.kind == "failed":
        result.failed += 1
    elif outcome.kind == "retrying":
        result.failed += 1
        result.retrying += 1
    elif outcome.kind == "deferred":
        result.deferred += 1


@dataclass
class WaitlistResult:
    offered: int = 0  # offers made from freed slots
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retrying: int = 0  # also counted in `failed`
    deferred: int = 0  # quiet hours
    expired: int = 0  # offers whose time ran out


def waitlist_once(
    app: Flask, now: dt.datetime, *, stop: threading.Event | None = None
) -> WaitlistResult:
    """One waitlist pass alone (the CLI's `waitlist send-due`; tests)."""
    with app.app_context():
        try:
            result = _waitlist_pass(app, now, stop)
        finally:
            db.session.remove()
    _log_waitlist(app, result)
    return result


def _log_waitlist(app: Flask, result: WaitlistResult) -> None:
    if result.offered or result.sent or result.failed or result.skipped:
        logged = isinstance(sms_sender(app), LogSmsSender)
        log.info(
            "waitlist: offered=%d %s=%d skipped=%d failed=%d deferred=%d expired=%d",
            result.offered,
            "logged-not-sent" if logged else "sent",
            result.sent,
            result.skipped,
            result.failed,
            result.deferred,
            result.expired,
        )


def _waitlist_pass(app: Flask, now: dt.datetime, stop: threading.Event | None) -> WaitlistResult:
    session = db.session
    settings = ClinicSettings.from_config(app.config)
    sender = sms_sender(app)
    batch = int(app.config.get("REMINDER_BATCH_SIZE", 100))
    lease = dt.timedelta(seconds=int(app.config.get("REMINDER_LEASE_SECONDS", 300)))
    started = time.monotonic()
    result = WaitlistResult()

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    def lease_until() -> dt.datetime:
        return now + dt.timedelta(seconds=time.monotonic() - started) + lease

    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    # Freed slots into offers: one transaction per claimed batch, until none is left due.
    while not stopped():
        claimed: list[int] = []
        result.offered += waitlist.process_freed(
            session(),
            now=now,
            settings=settings,
            batch=batch,
            token=token,
            lease_until=lease_until(),
            claimed=claimed,
        )
        session.commit()
        if len(claimed) < batch:
            break
    with _row_session(session) as rows:
        result.expired = waitlist.expire_offers(rows, now)
        rows.commit()
        while not stopped():
            token = f"{os.getpid()}-{secrets.token_hex(8)}"
            items = waitlist.claim_offers(
                rows, now, token=token, lease_until=lease_until(), limit=batch
            )
            rows.commit()
            if not items:
                break
            try:
                # Checked together just before the batch's texts (one transaction), each text
                # then recorded as soon as the provider answers.
                ready = [item for item in items if _prepared(rows, item, now, result)]
                rows.commit()
                for item in ready:
                    if stopped():
                        break
                    _offer_one(rows, item, sender, now, settings, result)
            finally:
                # Texts not handled (stopping, or an unexpected error): hand them back.
                rows.rollback()
                waitlist.release_offers(rows, token)
                rows.commit()
    return result


def _prepared(
    rows: Session, item: waitlist.OutgoingOffer, now: dt.datetime, result: WaitlistResult
) -> bool:
    """Whether the claimed text is to go now (else its outcome is recorded and counted)."""
    outcome = waitlist.prepare_offer(rows, item, now)
    if outcome == "skipped":
        result.skipped += 1
    elif outcome == "deferred":
        result.deferred += 1
    return outcome is None


def _offer_one(
    rows: Session,
    item: waitlist.OutgoingOffer,
    sender: SmsSender,
    now: dt.datetime,
    settings: ClinicSettings,
    result: WaitlistResult,
) -> None:
    """Send and record one checked offer text (no transaction open while sending)."""
    try:
        answer = waitlist.deliver_offer(item, sender, settings)
    except SmsError as exc:
        outcome = waitlist.record_offer_error(rows, item, exc, now)
        rows.commit()
        if outcome in ("failed", "retrying"):
            result.failed += 1
            result.retrying += outcome == "retrying"
        return
    if waitlist.record_offer_sent(rows, item, answer, now, settings):
        result.sent += 1
    rows.commit()


def _deliver_mail(app: Flask, now: dt.datetime) -> None:
    """The invite mail outbox rides on the same job (when that feature is installed)."""
    try:
        from scheduler.services import mail
    except ModuleNotFoundError as exc:
        if exc.name != "scheduler.services.mail":
            raise
        return
    mail.deliver_pending(db.session(), mail.sender_from_config(app.config), now)
    db.session.commit()


_PASS_LOCK = threading.Lock()


def _job(app: Flask, stop: threading.Event | None = None) -> None:
    with _PASS_LOCK:
        if stop is not None and stop.is_set():
            return
        try:
            dispatch_once(app, _clock(app)(), stop=stop)
        except Exception:  # the scheduler keeps running; the next tick tries again
            log.exception("reminder dispatch failed")


def _interval(app: Flask) -> int:
    return max(1, int(app.config.get("REMINDER_POLL_SECONDS", 30)))


# --- embedded worker (web process) ----------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Start the embedded worker with the first request served, when configured."""
    if not app.config.get("SCHEDULER_EMBEDDED_WORKER"):
        return
    lock = threading.Lock()

    @app.before_request
    def _start_embedded_worker() -> None:
        if "chairside_worker" in app.extensions:
            return
        with lock:
            if "chairside_worker" not in app.extensions:
                app.extensions["chairside_worker"] = start_embedded(app)


def _add_dispatch_job(
    scheduler: Any, app: Flask, stop: threading.Event, *, first_in: dt.timedelta
) -> None:
    """The one interval job, never overlapping itself; missed runs collapse into one."""
    scheduler.add_job(
        _job,
        "interval",
        seconds=_interval(app),
        args=[app, stop],
        id="reminders",
        coalesce=True,
        max_instances=1,
        next_run_time=dt.datetime.now(UTC) + first_in,
    )


def start_embedded(app: Flask) -> Any:
    """A BackgroundScheduler running the dispatch job every REMINDER_POLL_SECONDS."""
    from apscheduler.schedulers.background import BackgroundScheduler

    stop = threading.Event()
    scheduler = BackgroundScheduler(timezone=UTC, daemon=True)
    _add_dispatch_job(scheduler, app, stop, first_in=dt.timedelta(seconds=1))
    scheduler.start()

    def _shutdown() -> None:
        stop.set()
        if scheduler.running:
            scheduler.shutdown(wait=True)

    atexit.register(_shutdown)
    log.info("embedded reminder worker started (every %d s)", _interval(app))
    return scheduler


def embedded_scheduler(app: Flask) -> Any:
    """The embedded BackgroundScheduler, or None before the first request (or when disabled)."""
    return app.extensions.get("chairside_worker")


# --- foreground worker (`reminders run`) ----------------------------------------------------------


def run_forever(app: Flask) -> None:
    """The foreground worker: a BlockingScheduler with the one interval job, until SIGTERM/^C."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    stop = threading.Event()
    scheduler = BlockingScheduler(timezone=UTC)
    _add_dispatch_job(scheduler, app, stop, first_in=dt.timedelta(0))

    def _terminate(signum: int, frame: object) -> None:
        stop.set()
        scheduler.shutdown(wait=False)

    previous = signal.signal(signal.SIGTERM, _terminate)
    log.info("reminder worker running (every %d s)", _interval(app))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        stop.set()
        if scheduler.running:
            scheduler.shutdown(wait=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
        # A pass in progress finishes its row and hands back the rest of its batch.
        with _PASS_LOCK:
            pass
