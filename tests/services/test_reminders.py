"""Reminder planning, claiming, texts, inbound keywords and history (service level, no HTTP)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from scheduler.models import Appointment, Reminder, ReminderStatus, SmsInbound, SmsOptOut
from scheduler.services import booking, reminders, sms_replies
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service

UTC = dt.UTC
LA = ZoneInfo("America/Los_Angeles")
NOW = dt.datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # Mon 08:00 in Los Angeles
SETTINGS = ClinicSettings(clinic_name="Chairside Clinic")
H = dt.timedelta(hours=1)


def la(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=LA).astimezone(UTC)  # type: ignore[misc]


# --- planning (pure) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "offset", "expected"),
    [
        # plain: 48 h and 2 h before a Thursday 11:00 visit
        (la(2026, 12, 3, 11), 48 * H, la(2026, 12, 1, 11)),
        (la(2026, 12, 3, 11), 2 * H, la(2026, 12, 3, 9)),
        # 2 h before 09:15 is 07:15, inside quiet hours: 08:00 the same morning
        (la(2026, 12, 3, 9, 15), 2 * H, la(2026, 12, 3, 8)),
        # 12 h before 09:00 is 21:00 the evening before: quiet, so 08:00
        (la(2026, 12, 3, 9), 12 * H, la(2026, 12, 3, 8)),
        # 20:59 is still allowed
        (la(2026, 12, 3, 8, 59), 12 * H, la(2026, 12, 2, 20, 59)),
        # 08:00 would be after a 07:30 visit: 20:30 the evening before
        (la(2026, 12, 3, 7, 30), 2 * H, la(2026, 12, 2, 20, 30)),
        # exactly 08:00 is the visit itself: not before it, so the evening before
        (la(2026, 12, 3, 8), 1 * H, la(2026, 12, 2, 20, 30)),
    ],
)
def test_plan_puts_reminders_outside_quiet_hours(start, offset, expected):
    [plan] = reminders.plan_instants(start, LA, [offset], NOW)
    assert plan.skip_reason == ""
    assert plan.due_at == expected


def test_plan_skips_a_reminder_whose_time_passed_at_booking():
    start = la(2026, 12, 1, 10)  # tomorrow 10:00; the 48 h reminder was due yesterday
    plans = reminders.plan_instants(start, LA, [48 * H, 2 * H], NOW)
    assert [(p.offset, p.skip_reason != "") for p in plans] == [(48 * H, True), (2 * H, False)]
    assert plans[1].due_at == la(2026, 12, 1, 8)


def test_plan_skips_a_reminder_that_would_land_on_another():
    # 3 h and 2 h before 09:30 are 06:30 and 07:30: both become 08:00; the nearer one stays
    plans = reminders.plan_instants(la(2026, 12, 3, 9, 30), LA, [3 * H, 2 * H], NOW)
    kept = [p for p in plans if not p.skip_reason]
    assert [(p.offset, p.due_at) for p in kept] == [(2 * H, la(2026, 12, 3, 8))]


@pytest.mark.parametrize(
    ("start", "expected_48h", "expected_2h"),
    [
        # spring forward Sun 14 Mar 2027: Tue 09:00 PDT, reminders Sun 09:00 PDT and 08:00 PDT
        (la(2027, 3, 16, 9), dt.datetime(2027, 3, 14, 16, tzinfo=UTC), la(2027, 3, 16, 8)),
        # across it: Mon 15 Mar 09:00 PDT -> Sat 13 Mar 09:00 PST (17:00Z, not 16:00Z)
        (la(2027, 3, 15, 9), dt.datetime(2027, 3, 13, 17, tzinfo=UTC), la(2027, 3, 15, 8)),
        # fall back Sun 7 Nov 2027: Mon 8 Nov 09:00 PST -> Sat 6 Nov 09:00 PDT (16:00Z)
        (la(2027, 11, 8, 9), dt.datetime(2027, 11, 6, 16, tzinfo=UTC), la(2027, 11, 8, 8)),
    ],
)
def test_plan_across_dst_keeps_local_wall_time(start, expected_48h, expected_2h):
    now = dt.datetime(2027, 3, 1, tzinfo=UTC)
    plans = reminders.plan_instants(start, LA, [48 * H, 2 * H], now)
    assert [p.due_at for p in plans] == [expected_48h, expected_2h]
    assert plans[0].due_at.astimezone(LA).hour == 9


# --- the texts ------------------------------------------------------------------------------------


def test_to_gsm7_replaces_what_the_alphabet_lacks():
    assert reminders.to_gsm7("San Francisco – Mission") == "San Francisco - Mission"
    assert reminders.to_gsm7("Dr. O’Brien’s “clinic”…") == "Dr. O'Brien's \"clinic\"..."
    assert reminders.to_gsm7("Zürich Café Łódź") == "Zürich Café Lodz"
    assert reminders.to_gsm7("emoji 😀") == "emoji ?"
    assert reminders.is_gsm7(reminders.to_gsm7("Ωmega → ☃"))


def _outgoing(**overrides):
    values = dict(
        id=1,
        appointment_id=1,
        token="t",
        attempts=1,
        planned_start=la(2026, 12, 1, 9),
        superseded=False,
        phone="+14155550123",
        location="San Francisco – Mission",
        location_phone="+14155550100",
        timezone="America/Los_Angeles",
        title="",
        manage_token="x" * 43,
    )
    values.update(overrides)
    return reminders.Outgoing(**values)  # type: ignore[arg-type]


def test_reminder_text_is_one_gsm7_segment_with_time_zone_and_link():
    settings = ClinicSettings(
        clinic_name="Chairside Clinic", public_base_url="https://chairside.example"
    )
    text = reminders.render_reminder(_outgoing(), settings)
    assert text == (
        "Chairside Clinic: Tue 1 Dec, 9:00 AM PST at San Francisco - Mission. "
        "Reply C to confirm. https://chairside.example/a/" + "x" * 43
    )
    assert reminders.is_gsm7(text)
    assert reminders.segments(text) == 1
    assert "CANCEL" not in text.upper()


def test_reminder_text_names_no_treatment_unless_the_service_has_a_public_title(session):
    loc = make_location(session, name="Mission")
    make_service(session, [loc], slug="ketamine", name="Ketamine infusion for depression")
    appt = _book(session, loc.slug, "ketamine", la(2026, 12, 3, 11))
    item = _outgoing(manage_token=appt.manage_token, title=appt.service.public_title)
    text = reminders.render_reminder(item, SETTINGS)
    for word in ("ketamine", "infusion", "depression"):
        assert word not in text.lower()
    titled = reminders.render_reminder(_outgoing(title="Wellness visit"), SETTINGS)
    assert "Wellness visit Tue 1 Dec" in titled


def test_summer_time_text_says_pdt():
    text = reminders.render_reminder(_outgoing(planned_start=la(2027, 7, 1, 14, 30)), SETTINGS)
    assert "Thu 1 Jul, 2:30 PM PDT" in text


# --- planning with the database -------------------------------------------------------------------


def _book(session, location, service, start, *, consent=True, phone="+14155550123", now=NOW):
    details = PatientDetails("Pat Patient", phone, "pat@example.com", consent)
    appt = booking.book(
        session,
        booking.BookingRequest(location, service, start, details),
        now=now,
        settings=SETTINGS,
    )
    session.flush()
    return appt


def _rows(session, appointment_id):
    return list(
        session.scalars(
            select(Reminder).where(Reminder.appointment_id == appointment_id).order_by(Reminder.id)
        )
    )


@pytest.fixture
def clinic(session):
    loc = make_location(session, slug="sf")
    make_service(session, [loc], slug="inf")
    session.commit()
    return loc


def test_booking_plans_reminders_in_the_same_transaction(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    rows = _rows(session, appt.id)
    assert [(r.offset_minutes, r.due_at, r.status) for r in rows] == [
        (2880, la(2026, 12, 1, 11), "pending"),
        (120, la(2026, 12, 3, 9), "pending"),
    ]
    session.rollback()  # the booking and its reminders go together
    assert session.scalars(select(Reminder)).all() == []


def test_no_reminders_without_consent_or_after_opt_out(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11), consent=False)
    assert _rows(session, appt.id) == []
    session.add(SmsOptOut(phone="+14155550999", opted_out=True, keyword="STOP", changed_at=NOW))
    other = _book(session, "sf", "inf", la(2026, 12, 4, 11), phone="+14155550999")
    assert _rows(session, other.id) == []


def test_service_offsets_override_the_clinic_default(session, clinic):
    svc = make_service(session, [clinic], slug="consult")
    svc.reminder_offsets = "24h, 90m"
    appt = _book(session, "sf", "consult", la(2026, 12, 3, 11))
    assert [r.due_at for r in _rows(session, appt.id)] == [
        la(2026, 12, 2, 11),
        la(2026, 12, 3, 9, 30),
    ]


def test_cancel_cancels_pending_reminders(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    booking.cancel(session, appt, now=NOW, settings=SETTINGS, by_staff=True)
    rows = _rows(session, appt.id)
    assert {(r.status, r.reason) for r in rows} == {("cancelled", "visit cancelled")}


def test_reschedule_cancels_old_reminders_and_plans_new_ones(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    booking.reschedule(session, appt, la(2026, 12, 5, 14), now=NOW, settings=SETTINGS)
    rows = _rows(session, appt.id)
    assert [(r.status, r.due_at) for r in rows] == [
        ("cancelled", la(2026, 12, 1, 11)),
        ("cancelled", la(2026, 12, 3, 9)),
        ("pending", la(2026, 12, 3, 14)),
        ("pending", la(2026, 12, 5, 12)),
    ]
    assert all(r.appointment_start_at == la(2026, 12, 5, 14) for r in rows[2:])


def test_a_sent_reminder_is_not_planned_again_on_a_status_round_trip(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    first = _rows(session, appt.id)[0]
    first.status = ReminderStatus.SENT
    later = la(2026, 12, 2, 12)
    booking.set_status(session, appt, "checked_in", now=later, settings=SETTINGS)
    booking.set_status(session, appt, "booked", now=later, settings=SETTINGS)
    rows = _rows(session, appt.id)
    assert [(r.offset_minutes, r.status) for r in rows] == [
        (2880, "sent"),
        (120, "cancelled"),
        (120, "pending"),
    ]


def test_booking_too_late_for_the_first_reminder_records_it_as_skipped(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 1, 11))  # 27 h ahead
    rows = _rows(session, appt.id)
    assert [(r.offset_minutes, r.status) for r in rows] == [(2880, "skipped"), (120, "pending")]
    assert rows[0].reason == "its time had passed when booked"


# --- claiming -------------------------------------------------------------------------------------


def test_claims_do_not_overlap_and_a_lease_expires(session, clinic):
    for day in (3, 4, 5):
        _book(session, "sf", "inf", la(2026, 12, day, 11), phone=f"+1415555012{day}")
    session.commit()
    at = la(2026, 12, 2, 12)  # two 48 h reminders are due (1 and 2 Dec, 11:00)
    lease = at + dt.timedelta(minutes=5)
    first = reminders.claim_due(session, at, token="a", lease_until=lease, limit=1)
    session.commit()
    second = reminders.claim_due(session, at, token="b", lease_until=lease, limit=10)
    session.commit()
    assert len(first) == 1 and len(second) == 1 and not set(first) & set(second)
    assert reminders.claim_due(session, at, token="c", lease_until=lease) == []
    # worker "a" died: after its lease, its rows are due again, with the attempt counted
    session.commit()
    taken = reminders.claim_due(
        session, lease + dt.timedelta(seconds=1), token="d", lease_until=lease + 5 * H
    )
    session.commit()
    assert sorted(taken) == sorted(first + second)
    assert {
        r.attempts for r in session.scalars(select(Reminder).where(Reminder.id.in_(first)))
    } == {2}


def test_release_hands_back_unhandled_rows(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    session.commit()
    at = la(2026, 12, 3, 10)
    ids = reminders.claim_due(session, at, token="x", lease_until=at + H)
    assert reminders.release(session, "x") == len(ids) == 2
    session.commit()
    assert {(r.status, r.attempts) for r in _rows(session, appt.id)} == {("pending", 0)}


# --- inbound keywords and status ------------------------------------------------------------------


def _inbound(session, body, sid, phone="+14155550123", **kw):
    return sms_replies.handle_inbound(
        session, phone=phone, body=body, message_sid=sid, now=NOW, settings=SETTINGS, **kw
    )


@pytest.mark.parametrize(
    "word", ["STOP", "stop", " Unsubscribe ", "CANCEL", "end", "Quit", "stopall"]
)
def test_opt_out_words_stop_sms_to_the_number(session, clinic, word):
    result = _inbound(session, word, "SM1")
    assert (result.action, result.reply) == ("opt_out", None)
    assert reminders.is_opted_out(session, "+14155550123")
    assert _inbound(session, "START", "SM2").action == "opt_in"
    assert not reminders.is_opted_out(session, "+14155550123")


def test_c_confirms_the_next_appointment_only_once_per_message(session, clinic):
    later = _book(session, "sf", "inf", la(2026, 12, 9, 11))
    nearer = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    result = _inbound(session, "c", "SM10")
    assert result.action == "confirm" and result.appointment_id == nearer.id
    assert "confirmed" in (result.reply or "") and "Thu 3 Dec, 11:00 AM PST" in (result.reply or "")
    assert nearer.confirmed_at == NOW and later.confirmed_at is None
    assert _inbound(session, "c", "SM10").action == "duplicate"
    assert session.scalars(select(SmsInbound)).all()[0].action == "confirm"


def test_yes_confirms_and_resubscribes_like_twilio(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    _inbound(session, "STOP", "SM1")
    result = _inbound(session, "Yes!", "SM2")
    assert result.action == "confirm" and appt.confirmed_at == NOW
    assert not reminders.is_opted_out(session, "+14155550123")


def test_help_and_unknown_answer_with_the_clinic_phone_and_never_cancel(session, clinic):
    _book(session, "sf", "inf", la(2026, 12, 3, 11))
    for body in ("HELP", "what time is it"):
        reply = _inbound(session, body, f"SM-{body}").reply or ""
        assert "+14155550100" in reply
        assert "CANCEL" not in reply.upper() and reminders.is_gsm7(reply)


def test_confirm_without_an_upcoming_visit_says_so(session, clinic):
    result = _inbound(session, "C", "SM1", phone="+14155550777")
    assert result.action == "confirm" and result.appointment_id is None
    assert "no upcoming visit" in (result.reply or "")


def test_status_callbacks_move_forward_only(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    row = _rows(session, appt.id)[0]
    row.status, row.provider_sid, row.provider_status = ReminderStatus.SENT, "SM1", "queued"
    at = NOW + H

    def cb(status, sid="SM1", code=""):
        return sms_replies.record_status(
            session, message_sid=sid, status=status, error_code=code, now=at, reminder_id=row.id
        )

    assert cb("delivered") is True
    assert (row.status, row.delivered_at) == ("delivered", at)
    assert cb("sent") is False  # late, out of order
    assert cb("delivered") is False  # duplicate
    assert cb("failed", code="30008") is False  # terminal already
    assert cb("delivered", sid="SM-other") is False  # not this reminder's message
    assert row.status == "delivered"


def test_undelivered_callback_records_failure_with_code(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    row = _rows(session, appt.id)[0]
    row.status, row.provider_sid, row.provider_status = ReminderStatus.SENT, "SM9", "sent"
    assert sms_replies.record_status(
        session, message_sid="SM9", status="undelivered", error_code="30003", now=NOW
    )
    assert (row.status, row.error_code) == ("failed", "30003")


def test_history_lists_planned_sent_delivered_failed_and_confirmed(session, clinic):
    appt = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    first, second = _rows(session, appt.id)
    first.status, first.sent_at, first.provider_sid = (
        ReminderStatus.SENT,
        la(2026, 12, 1, 11),
        "SM1",
    )
    sms_replies.record_status(
        session, message_sid="SM1", status="delivered", error_code="", now=la(2026, 12, 1, 11, 1)
    )
    second.status, second.failed_at = ReminderStatus.FAILED, la(2026, 12, 3, 9)
    second.error_code, second.reason = "21211", "rejected"
    sms_replies.handle_inbound(
        session,
        phone="+14155550123",
        body="C",
        message_sid="SM-in",
        now=la(2026, 12, 1, 12),
        settings=SETTINGS,
    )
    events = [(h.event, h.at) for h in sms_replies.history(session, appt.id)]
    assert events == [
        ("planned", NOW),
        ("planned", NOW),
        ("sent", la(2026, 12, 1, 11)),
        ("delivered", la(2026, 12, 1, 11, 1)),
        ("confirmed", la(2026, 12, 1, 12)),
        ("failed", la(2026, 12, 3, 9)),
    ]
    assert "21211" in sms_replies.history(session, appt.id)[-1].detail
    assert session.get(Appointment, appt.id).confirmed_at == la(2026, 12, 1, 12)


def test_recheck_sees_a_cancel_or_move_after_the_claim(session, clinic):
    moved = _book(session, "sf", "inf", la(2026, 12, 3, 11))
    cancelled = _book(session, "sf", "inf", la(2026, 12, 3, 14), phone="+14155550124")
    kept = _book(session, "sf", "inf", la(2026, 12, 3, 16), phone="+14155550125")
    session.commit()
    at = la(2026, 12, 2, 16)  # the three 48 h reminders are due
    ids = reminders.claim_due(session, at, token="w", lease_until=at + H)
    items = reminders.load_claimed(session, ids, "w", at)
    session.commit()
    assert len(items) == 3
    # between the claim and the send: one visit cancelled, one moved
    booking.cancel(session, cancelled, now=at, settings=SETTINGS, by_staff=True)
    booking.reschedule(
        session, moved, la(2026, 12, 4, 11), now=at, settings=SETTINGS, by_staff=True
    )
    session.commit()
    reasons = reminders.recheck(session, items, at)
    by_visit = {item.appointment_id: reasons.get(item.id, "") for item in items}
    assert by_visit == {moved.id: "visit moved", cancelled.id: "visit cancelled", kept.id: ""}
    outcome = reminders.prepare(session, items[1], at, reasons.get(items[1].id, ""))
    assert outcome is not None and outcome.kind == "skipped"
