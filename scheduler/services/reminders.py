"""SMS reminders: plan rows with each booking, claim what is due, send, record.

Planning runs inside the booking transaction (via notifications). Dispatch is split in small
steps so the caller (scheduler.jobs) decides the transactions: `claim_due` marks due rows as
`sending` under a lease (one `WITH ... FOR UPDATE SKIP LOCKED` UPDATE on PostgreSQL; a
conditional UPDATE under SQLite's write lock), `load_claimed` reads what the texts need,
`recheck` re-reads the visits (still booked, same time, consent, not opted out), `deliver`
hands one text to the provider outside any transaction, and `record_sent` / `record_error`
write the outcome. A worker that dies leaves `sending` rows behind; once their lease expires
any worker claims them again (at-least-once: only rows in flight at the crash can go twice).

Replies (STOP, START, HELP, C, YES), delivery status callbacks and the staff's reminder history
are in `sms_replies`: a reply refers to the latest text sent to that number, so every row keeps
the number it goes to (`to_phone`).

Kinds: `reminder` (the offsets), `day_before` (24 h before, for services with an escort or
pre-visit instructions: the instructions, and "reply YES to confirm your visit and your ride";
it replaces a plain 24 h reminder), and `escort_ready` (queued by staff through `day_of`: to the
escort, not planned, not held by quiet hours nor by the visit having started). Texts to a number
that several patients share start with the patient's first name.

Times: offsets are taken in the location's wall-clock time (a 48h reminder before a 09:00 visit
goes out at 09:00 two days before, across a DST change too). No texts during quiet hours
(21:00-08:00 local): a reminder due then goes out at 08:00, or at 20:30 the evening before if
08:00 is not before the visit. A reminder whose time has passed when it is planned is recorded
as skipped, never sent late.
"""

from __future__ import annotations

import datetime as dt
import functools
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from sqlalchemy import and_, bindparam, case, exists, func, select, text, update
from sqlalchemy.orm import Session, aliased

from scheduler import paths
from scheduler.models import (
    Appointment,
    AppointmentStatus,
    Location,
    Patient,
    Reminder,
    ReminderKind,
    ReminderStatus,
    Service,
    SmsOptOut,
)
from scheduler.services.settings import ClinicSettings, parse_offsets
from scheduler.services.sms import SendResult, SmsError, SmsSender

UTC = dt.UTC
REMINDERS = Reminder.__table__
QUIET_START = dt.time(21, 0)
QUIET_END = dt.time(8, 0)
EVENING_FALLBACK = dt.time(20, 30)
MAX_ATTEMPTS = 6
BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_MAX = dt.timedelta(minutes=30)
TEMPLATES = paths.TEMPLATES / "sms"
DAY_BEFORE = dt.timedelta(hours=24)
PLANNED_KINDS = (ReminderKind.REMINDER.value, ReminderKind.DAY_BEFORE.value)


# --- planning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedReminder:
    offset: dt.timedelta
    due_at: dt.datetime
    skip_reason: str = ""  # set: recorded as skipped, never sent


def _wall_minus(start: dt.datetime, offset: dt.timedelta, tz: ZoneInfo) -> dt.datetime:
    """`offset` before `start` on the local wall clock (a day before 09:00 is 09:00)."""
    wall = start.astimezone(tz).replace(tzinfo=None) - offset
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _local_instant(day: dt.date, wall: dt.time, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, wall).replace(tzinfo=tz, fold=0).astimezone(UTC)


def in_quiet_hours(instant: dt.datetime, tz: ZoneInfo) -> bool:
    local = instant.astimezone(tz).time()
    return local >= QUIET_START or local < QUIET_END


def outside_quiet_hours(
    instant: dt.datetime, tz: ZoneInfo, visit_start: dt.datetime
) -> dt.datetime:
    """`instant`, or the next 08:00 local if it falls in quiet hours; 20:30 the evening before
    when that 08:00 is not before the visit."""
    if not in_quiet_hours(instant, tz):
        return instant
    local = instant.astimezone(tz)
    morning_day = local.date() + dt.timedelta(days=1 if local.time() >= QUIET_START else 0)
    morning = _local_instant(morning_day, QUIET_END, tz)
    if morning < visit_start:
        return morning
    return _local_instant(morning_day - dt.timedelta(days=1), EVENING_FALLBACK, tz)


def plan_instants(
    start: dt.datetime, tz: ZoneInfo, offsets: Iterable[dt.timedelta], now: dt.datetime
) -> list[PlannedReminder]:
    """When each reminder goes out (pure; tested without a database)."""
    plans: list[PlannedReminder] = []
    seen: set[dt.datetime] = set()
    for offset in sorted(set(offsets)):  # smallest first: it wins a tie after quiet hours
        nominal = _wall_minus(start, offset, tz)
        due = outside_quiet_hours(nominal, tz, start)
        if nominal <= now or due <= now:
            plans.append(PlannedReminder(offset, due, "its time had passed when booked"))
        elif due in seen:
            plans.append(PlannedReminder(offset, due, "same time as another reminder"))
        else:
            seen.add(due)
            plans.append(PlannedReminder(offset, due))
    return sorted(plans, key=lambda p: p.offset, reverse=True)


def offsets_for(service: Service, settings: ClinicSettings) -> tuple[dt.timedelta, ...]:
    """The service's own offsets (e.g. "24h,2h") or, when empty or unreadable, the clinic's."""
    if service.reminder_offsets and service.reminder_offsets.strip():
        try:
            return parse_offsets(service.reminder_offsets)
        except ValueError:
            return settings.reminder_offsets
    return settings.reminder_offsets


def wants_day_before(service: Service) -> bool:
    """Services with an escort or pre-visit instructions get the day-before text."""
    return bool(
        service.escort_required
        or service.fasting_hours
        or service.arrive_early_minutes
        or service.no_driving
    )


def is_opted_out(session: Session, phone: str) -> bool:
    return bool(
        session.scalar(
            select(SmsOptOut.opted_out).where(SmsOptOut.phone == phone, SmsOptOut.opted_out)
        )
    )


_CANCEL_REASONS = {
    "cancelled": "visit cancelled",
    "rescheduled": "visit moved",
    "booked": "visit changed",
}


def sync_plan(
    session: Session,
    appointment: Appointment,
    change: str,
    now: dt.datetime,
    settings: ClinicSettings,
) -> None:
    """Make the appointment's pending reminders match its current state (same transaction).

    Booked: rows at the planned instants. Moved: pending rows for the old time are cancelled and
    new ones planned. Cancelled or no longer `booked`: pending rows are cancelled. Rows already
    claimed by a worker are left alone; the worker re-checks the visit before sending.
    """
    patient = appointment.patient
    wanted = (
        appointment.active
        and appointment.status == AppointmentStatus.BOOKED
        # A course's session held for the review gets its reminders once the course continues.
        and not appointment.awaiting_review
        and patient.sms_consent
        and not is_opted_out(session, patient.phone)
    )
    tz = ZoneInfo(appointment.location.timezone)
    plans: list[tuple[str, PlannedReminder]] = []
    if wanted:
        offsets = offsets_for(appointment.service, settings)
        if wants_day_before(appointment.service):
            offsets = tuple(o for o in offsets if o != DAY_BEFORE)
            plans += [
                (ReminderKind.DAY_BEFORE.value, p)
                for p in plan_instants(appointment.start_at, tz, [DAY_BEFORE], now)
            ]
        plans += [
            (ReminderKind.REMINDER.value, p)
            for p in plan_instants(appointment.start_at, tz, offsets, now)
        ]
    wanted_keys = {(kind, int(p.offset.total_seconds() // 60), p.due_at) for kind, p in plans}
    existing = (
        []  # a new appointment has no reminders yet
        if change == "booked"
        else list(
            session.scalars(
                select(Reminder).where(
                    Reminder.appointment_id == appointment.id,
                    Reminder.kind.in_(PLANNED_KINDS),  # the escort's text is not planned here
                )
            )
        )
    )
    have: set[tuple[str, int]] = set()
    for row in existing:
        current = row.appointment_start_at == appointment.start_at
        if row.status == ReminderStatus.PENDING and not (
            current and (row.kind, row.offset_minutes, row.due_at) in wanted_keys
        ):
            row.status = ReminderStatus.CANCELLED
            row.reason = _CANCEL_REASONS.get(change, f"visit {appointment.status}")
            row.closed_at = now
            row.claim_token = None
        elif current and row.status != ReminderStatus.CANCELLED:
            have.add((row.kind, row.offset_minutes))
    for kind, plan in plans:
        minutes = int(plan.offset.total_seconds() // 60)
        if (kind, minutes) in have:
            continue
        session.add(
            Reminder(
                appointment_id=appointment.id,
                appointment_start_at=appointment.start_at,
                offset_minutes=minutes,
                kind=kind,
                to_phone=patient.phone,
                due_at=plan.due_at,
                next_attempt_at=plan.due_at,
                status=ReminderStatus.SKIPPED if plan.skip_reason else ReminderStatus.PENDING,
                reason=plan.skip_reason,
                closed_at=now if plan.skip_reason else None,
                created_at=now,
                attempts=0,
                provider_status="",
                error_code="",
            )
        )
    session.flush()


# --- dispatch -------------------------------------------------------------------------------------


def _pending_due(now: dt.datetime) -> Any:
    return and_(Reminder.status == ReminderStatus.PENDING, Reminder.next_attempt_at <= now)


def _lease_expired(now: dt.datetime) -> Any:
    return and_(Reminder.status == ReminderStatus.SENDING, Reminder.lease_until < now)


def claim_due(
    session: Session,
    now: dt.datetime,
    *,
    token: str,
    lease_until: dt.datetime,
    limit: int = 50,
) -> list[int]:
    """Mark up to `limit` due rows as ours (`sending`, lease until `lease_until`): rows whose
    worker's lease expired first, then pending rows, oldest first. Concurrent workers never get
    the same row. The caller commits (on PostgreSQL each claim is one atomic statement)."""
    ids = _claim(session, _lease_expired(now), token, lease_until, limit)
    if len(ids) < limit:
        ids += _claim(session, _pending_due(now), token, lease_until, limit - len(ids))
    return sorted(ids)


def _claim(
    session: Session, due: Any, token: str, lease_until: dt.datetime, limit: int
) -> list[int]:
    table = REMINDERS
    claim = {
        "status": ReminderStatus.SENDING.value,
        "claim_token": token,
        "lease_until": lease_until,
        "attempts": table.c.attempts + 1,
    }
    return claim_rows(session, table, due, claim, limit)


def claim_rows(
    session: Session, table: Any, due: Any, values: dict[str, Any], limit: int
) -> list[int]:
    """Set `values` on up to `limit` rows of `table` matching `due`, oldest `next_attempt_at`
    first, and return their ids: rows another worker is claiming at the same time are skipped,
    never shared. Used by every worker queue (reminders, the waitlist's freed slots and offers).
    """
    # Each condition alone lets the (status, next_attempt_at) index give the rows in order and
    # stop after `limit` (no tie-breaker column: that would sort every due row).
    pick = select(table.c.id).where(due).order_by(table.c.next_attempt_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        # One statement (atomic even on an autocommit connection): lock due rows, skipping
        # rows other workers hold, and mark them. The CTE is materialized: inside
        # `UPDATE ... WHERE id IN (SELECT ... LIMIT n)` PostgreSQL may claim more than n.
        picked = pick.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
        statement = (
            update(table)
            .where(table.c.id == picked.c.id, due)
            .values(**values)
            .returning(table.c.id)
        )
    else:
        # SQLite: the transaction already holds the write lock (BEGIN IMMEDIATE); the UPDATE
        # re-checks that each row is still due.
        ids = list(session.scalars(pick))
        if not ids:
            return []
        statement = (
            update(table).where(table.c.id.in_(ids), due).values(**values).returning(table.c.id)
        )
    return list(session.scalars(statement))


def release(session: Session, token: str) -> int:
    """Hand back rows claimed under `token` and not handled (the worker is stopping)."""
    result = session.execute(
        update(Reminder)
        .where(Reminder.claim_token == token, Reminder.status == ReminderStatus.SENDING)
        .values(
            status=ReminderStatus.PENDING,
            attempts=Reminder.attempts - 1,
            claim_token=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Outgoing:
    """A claimed reminder and what its text needs."""

    id: int
    appointment_id: int
    token: str
    attempts: int
    planned_start: dt.datetime
    superseded: bool  # a later reminder for the same visit is also due: send only that one
    phone: str
    location: str
    location_phone: str
    timezone: str
    title: str
    manage_token: str
    kind: str = ReminderKind.REMINDER.value
    patient_name: str = ""
    shared_phone: bool = False  # several patients have this number: the text names the patient
    location_address: str = ""
    fasting_hours: int = 0
    arrive_early_minutes: int = 0
    no_driving: bool = False
    escort_required: bool = False

    @property
    def first_name(self) -> str:
        return first_name(self.patient_name)


def first_name(name: str) -> str:
    parts = name.split()
    return parts[0] if parts else ""


def shared_phone(patient: Any = Patient) -> Any:
    """The one rule for naming the patient in a text (reminders, replies, waitlist offers):
    another patient, not merged away, has the same mobile number. An SQL EXISTS over `patient`
    (the Patient entity, or an alias of it) to select beside it."""
    sharer = aliased(Patient)
    return exists().where(
        sharer.phone == patient.phone, sharer.id != patient.id, sharer.merged_into_id.is_(None)
    )


def phone_is_shared(session: Session, patient_id: int) -> bool:
    """`shared_phone` for one patient."""
    return bool(session.scalar(select(shared_phone()).where(Patient.id == patient_id)))


def load_claimed(
    session: Session, ids: Sequence[int], token: str, now: dt.datetime
) -> list[Outgoing]:
    if not ids:
        return []
    newer = aliased(Reminder)
    superseded = exists().where(
        newer.appointment_id == Reminder.appointment_id,
        newer.id != Reminder.id,
        newer.appointment_start_at == Reminder.appointment_start_at,
        newer.offset_minutes < Reminder.offset_minutes,
        newer.kind.in_(PLANNED_KINDS),
        Reminder.kind.in_(PLANNED_KINDS),
        newer.due_at <= now,
        newer.status.in_(
            [
                ReminderStatus.PENDING,
                ReminderStatus.SENDING,
                ReminderStatus.SENT,
                ReminderStatus.DELIVERED,
            ]
        ),
    )
    shared = shared_phone()
    rows = session.execute(
        select(
            Reminder.id,
            Reminder.appointment_id,
            Reminder.attempts,
            Reminder.appointment_start_at,
            superseded.label("superseded"),
            func.coalesce(func.nullif(Reminder.to_phone, ""), Patient.phone),
            Location.name,
            Location.phone,
            Location.timezone,
            Service.public_title,
            Appointment.manage_token,
            Reminder.kind,
            Patient.name,
            shared.label("shared"),
            Location.address,
            Service.fasting_hours,
            Service.arrive_early_minutes,
            Service.no_driving,
            Service.escort_required,
        )
        .join(Appointment, Appointment.id == Reminder.appointment_id)
        .join(Patient, Patient.id == Appointment.patient_id)
        .join(Location, Location.id == Appointment.location_id)
        .join(Service, Service.id == Appointment.service_id)
        .where(Reminder.id.in_(ids), Reminder.claim_token == token)
        .order_by(Reminder.id)
    )
    return [
        Outgoing(
            id=r[0],
            appointment_id=r[1],
            token=token,
            attempts=r[2],
            planned_start=r[3],
            superseded=bool(r[4]),
            phone=r[5],
            location=r[6],
            location_phone=r[7],
            timezone=r[8],
            title=r[9] or "",
            manage_token=r[10],
            kind=r[11],
            patient_name=r[12],
            shared_phone=bool(r[13]),
            location_address=r[14] or "",
            fasting_hours=r[15],
            arrive_early_minutes=r[16],
            no_driving=bool(r[17]),
            escort_required=bool(r[18]),
        )
        for r in rows
    ]


def recheck(session: Session, items: Sequence[Outgoing], now: dt.datetime) -> dict[int, str]:
    """Why each claimed reminder must not go out now (absent: it may), in one query: the visit
    is still booked, active and at the planned time; consent given; the number not opted out."""
    if not items:
        return {}
    rows = session.execute(
        select(
            Appointment.id,
            Appointment.status,
            Appointment.active,
            Appointment.start_at,
            Patient.sms_consent,
        )
        .join(Patient, Patient.id == Appointment.patient_id)
        .where(Appointment.id.in_({item.appointment_id for item in items}))
    )
    state = {row[0]: row[1:] for row in rows}
    opted_out = set(
        session.scalars(
            select(SmsOptOut.phone).where(
                SmsOptOut.phone.in_({item.phone for item in items}), SmsOptOut.opted_out
            )
        )
    )
    reasons: dict[int, str] = {}
    for item in items:
        reason = ""
        found = state.get(item.appointment_id)
        is_out = item.phone in opted_out
        if found is None:
            reason = "visit deleted"
        elif item.kind == ReminderKind.COURSE_STOPPED:
            # About cancelled visits by design: only the number's consent and opt-out matter.
            if not found[3]:
                reason = "no SMS consent"
            elif is_out:
                reason = "number opted out"
        elif item.kind == ReminderKind.ESCORT_READY:
            # Sent when the visit is over (checked in or completed), to a number of its own.
            if found[0] == AppointmentStatus.CANCELLED:
                reason = "visit cancelled"
            elif is_out:
                reason = "number opted out"
        else:
            status, active, start_at, consent = found
            if not active or status != AppointmentStatus.BOOKED:
                reason = f"visit {status}"
            elif start_at != item.planned_start:
                reason = "visit moved"
            elif not consent:
                reason = "no SMS consent"
            elif is_out:
                reason = "number opted out"
            elif start_at <= now:
                reason = "visit already started"
            elif item.superseded:
                reason = "a later reminder is due too"
        if reason:
            reasons[item.id] = reason
    return reasons


@dataclass(frozen=True)
class Outcome:
    kind: str  # sent | skipped | failed | retrying | deferred | lost (lease taken over)
    detail: str = ""


def backoff(attempts: int) -> dt.timedelta:
    """30 s, 1 min, 2 min, ... capped at 30 min."""
    delay = BACKOFF_BASE * (1 << max(attempts - 1, 0))
    return min(delay, BACKOFF_MAX)


def _finish(session: Session, item: Outgoing, **values: object) -> bool:
    """Record the outcome of our claim (a Core UPDATE: one round trip, no ORM bookkeeping)."""
    table = REMINDERS
    result = session.execute(
        update(table)
        .where(table.c.id == item.id, table.c.claim_token == item.token)
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


def status_callback_url(settings: ClinicSettings, reminder_id: int) -> str:
    return f"{settings.public_base_url}/webhooks/twilio/status?r={reminder_id}"


def prepare(session: Session, item: Outgoing, now: dt.datetime, reason: str) -> Outcome | None:
    """Decide about one claimed row before sending, given its `recheck` reason: an Outcome when
    it is not to be sent now (already recorded), None when it may go."""
    if reason:
        ok = _finish(
            session,
            item,
            status=ReminderStatus.SKIPPED,
            reason=reason,
            closed_at=now,
            claim_token=None,
            lease_until=None,
        )
        return Outcome("skipped" if ok else "lost", reason)
    tz = ZoneInfo(item.timezone)
    if item.kind != ReminderKind.ESCORT_READY and in_quiet_hours(now, tz):
        later = outside_quiet_hours(now, tz, item.planned_start)
        if later <= now or later >= item.planned_start:
            ok = _finish(
                session,
                item,
                status=ReminderStatus.SKIPPED,
                reason="quiet hours until the visit",
                closed_at=now,
                claim_token=None,
                lease_until=None,
            )
            return Outcome("skipped" if ok else "lost", "quiet hours")
        ok = _finish(
            session,
            item,
            status=ReminderStatus.PENDING,
            next_attempt_at=later,
            attempts=Reminder.attempts - 1,
            claim_token=None,
            lease_until=None,
        )
        return Outcome("deferred" if ok else "lost", "quiet hours")
    return None


def send(
    session: Session,
    item: Outgoing,
    sender: SmsSender,
    now: dt.datetime,
    settings: ClinicSettings,
) -> Outcome:
    """Send one prepared row (no transaction should be open) and record the outcome (flushed)."""
    try:
        result = deliver(item, sender, settings)
    except SmsError as exc:
        return record_error(session, item, exc, now)
    return Outcome("sent" if record_sent(session, [(item, result)], now) else "lost")


def deliver(item: Outgoing, sender: SmsSender, settings: ClinicSettings) -> SendResult:
    """Hand the text to the provider (no database); raises SmsError."""
    body = render_reminder(item, settings)
    return sender.send(item.phone, body, status_callback=status_callback_url(settings, item.id))


def record_error(session: Session, item: Outgoing, exc: SmsError, now: dt.datetime) -> Outcome:
    """Permanent errors (and the last attempt) fail the row; others retry with backoff."""
    if exc.permanent or item.attempts >= MAX_ATTEMPTS:
        reason = "rejected" if exc.permanent else f"gave up after {item.attempts} attempts"
        ok = _finish(
            session,
            item,
            status=ReminderStatus.FAILED,
            error_code=exc.code[:16],
            reason=reason,
            failed_at=now,
            closed_at=now,
            claim_token=None,
            lease_until=None,
        )
        return Outcome("failed" if ok else "lost", exc.code)
    ok = _finish(
        session,
        item,
        status=ReminderStatus.PENDING,
        error_code=exc.code[:16],
        reason=f"retrying after error {exc.code}",
        next_attempt_at=now + backoff(item.attempts),
        claim_token=None,
        lease_until=None,
    )
    return Outcome("retrying" if ok else "lost", exc.code)


_RECORD_SENT_PG = text(
    """
    UPDATE reminders AS r SET
        status = CASE WHEN r.status = 'sending' THEN 'sent' ELSE r.status END,
        provider_sid = COALESCE(r.provider_sid, v.sid),
        provider_status = CASE WHEN r.provider_status = '' THEN v.status
                               ELSE r.provider_status END,
        sent_at = :sent_at, error_code = '', reason = '', claim_token = NULL, lease_until = NULL
    FROM unnest(CAST(:ids AS integer[]), CAST(:tokens AS text[]), CAST(:sids AS text[]),
                CAST(:statuses AS text[])) AS v(id, token, sid, status)
    WHERE r.id = v.id AND r.claim_token = v.token
    """
)


def record_sent(
    session: Session, sent: Sequence[tuple[Outgoing, SendResult]], now: dt.datetime
) -> int:
    """Record accepted messages (one statement for many rows); how many were still ours.

    A status callback may already have moved a row on (to delivered): that is kept.
    """
    if not sent:
        return 0
    table = REMINDERS
    c = table.c
    statement = (
        update(table)
        .where(c.id == bindparam("b_id"), c.claim_token == bindparam("b_token"))
        .values(
            status=case(
                (c.status == ReminderStatus.SENDING.value, ReminderStatus.SENT.value),
                else_=c.status,
            ),
            provider_sid=func.coalesce(c.provider_sid, bindparam("b_sid")),
            provider_status=case(
                (c.provider_status == "", bindparam("b_status")), else_=c.provider_status
            ),
            sent_at=now,
            error_code="",
            reason="",
            claim_token=None,
            lease_until=None,
        )
    )
    params = [
        {"b_id": item.id, "b_token": item.token, "b_sid": result.sid, "b_status": result.status}
        for item, result in sent
    ]
    if session.get_bind().dialect.name == "postgresql":
        # One statement, one round trip for the lot (arrays unnested), compiled once.
        result = session.execute(
            _RECORD_SENT_PG,
            {
                "ids": [p["b_id"] for p in params],
                "tokens": [p["b_token"] for p in params],
                "sids": [p["b_sid"] for p in params],
                "statuses": [p["b_status"] for p in params],
                "sent_at": now,
            },
        )
        return int(getattr(result, "rowcount", 0) or 0)
    result = session.execute(statement, params)
    return int(getattr(result, "rowcount", len(params)) or 0)


# --- the texts ------------------------------------------------------------------------------------


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )


# GSM 03.38 basic character set (one septet each) and the extension table (two septets each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
_REPLACEMENTS = {
    "\u2013": "-",
    "\u2014": "-",
    "\u2212": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
    "\u00a0": " ",
    "\u202f": " ",
    "\t": " ",
    "\u0141": "L",
    "\u0142": "l",
    "\u0110": "D",
    "\u0111": "d",
    "\u0152": "OE",
    "\u0153": "oe",
    "\u0131": "i",
}


def to_gsm7(text: str) -> str:
    """Text in the GSM-7 basic set: typographic marks simplified, accents dropped where the
    accented letter is not in the set, anything else becomes '?'."""
    if GSM7_BASIC.issuperset(text):
        return text
    out = []
    for ch in text:
        if ch in GSM7_BASIC:
            out.append(ch)
            continue
        ch = _REPLACEMENTS.get(ch, ch)
        if all(c in GSM7_BASIC for c in ch):
            out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append(base if base and all(c in GSM7_BASIC for c in base) else "?")
    return "".join(out)


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text)


def segments(text: str) -> int:
    """How many SMS segments a GSM-7 text takes (160 septets alone, 153 per part)."""
    septets = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
    return 1 if septets <= 160 else -(-septets // 153)


def local_when(instant: dt.datetime, tz: ZoneInfo) -> str:
    """'Tue 1 Dec, 9:00 AM PST': the local date and time with the zone's abbreviation."""
    local = instant.astimezone(tz)
    hour = local.hour % 12 or 12
    half = "AM" if local.hour < 12 else "PM"
    return f"{local:%a} {local.day} {local:%b}, {hour}:{local:%M} {half} {local.tzname()}"


def render_text(name: str, **values: object) -> str:
    text = _env().get_template(name).render(**values)
    return to_gsm7(" ".join(text.split()))


def render_reminder(item: Outgoing, settings: ClinicSettings) -> str:
    """The text of a claimed row, by kind. A reminder takes the full template when it fits one
    segment, else the short one; the others may take two segments."""
    values = {
        "clinic": settings.clinic_name,
        "title": item.title,
        "when": local_when(item.planned_start, ZoneInfo(item.timezone)),
        "location": item.location,
        "url": settings.manage_url(item.manage_token),
        "who": item.first_name if item.shared_phone else "",
    }
    if item.kind == ReminderKind.ESCORT_READY:
        return render_text(
            "escort_ready.txt",
            clinic=settings.clinic_name,
            patient=item.first_name,
            location=item.location,
            address=item.location_address,
            phone=item.location_phone,
        )
    if item.kind == ReminderKind.COURSE_STOPPED:
        return render_text("course_stopped.txt", **values, phone=item.location_phone)
    if item.kind == ReminderKind.DAY_BEFORE:
        return render_text(
            "day_before.txt",
            fasting_hours=item.fasting_hours,
            arrive_early_minutes=item.arrive_early_minutes,
            no_driving=item.no_driving,
            ride=item.no_driving or item.escort_required,
            **values,
        )
    text = render_text("reminder.txt", **values)
    if segments(text) > 1:
        short = render_text("reminder_short.txt", **values)
        if segments(short) < segments(text):
            return short
    return text
