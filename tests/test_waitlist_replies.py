"""Replies to a waitlist offer text, as signed webhooks on both databases: C or YES book nothing
and confirm no other visit (the answer gives the offer's link again, or says it expired); HELP,
STOP and START work as for reminders, and STOP after an offer stops the offers too."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from scheduler import jobs
from scheduler.models import Appointment, SmsInbound, SmsOptOut, WaitlistFreed, WaitlistOffer
from scheduler.services import booking, waitlist
from scheduler.services.patients import PatientDetails
from tests.test_sms_reply_flow import reply
from tests.waitlist_support import DAY, SETTINGS, at, book, join, make_world, phone


@pytest.fixture
def app_config(app_config: dict[str, Any], twilio: Any) -> dict[str, Any]:
    return {**app_config, **twilio.config(), "PUBLIC_BASE_URL": SETTINGS.public_base_url}


def test_c_or_yes_to_an_offer_gives_the_link_and_confirms_nothing(
    app, client, session, clock, twilio
):
    world = make_world(session, clock.now)
    other = book(session, clock.now, world.infusion, at(DAY + dt.timedelta(days=1), 10), 9100)
    pat = PatientDetails("Pat Waiting", phone(1), "pat@example.com", True)
    visit = booking.book(  # Pat's own visit, Friday: a bare C must not confirm it
        session,
        booking.BookingRequest(
            location="wl",
            service="infusion",
            start=at(DAY + dt.timedelta(days=2), 10),
            patient=pat,
        ),
        now=clock.now,
        settings=SETTINGS,
    )
    request = waitlist.JoinRequest(
        location="wl",
        service="infusion",
        course=None,
        patient=pat,
        earliest=DAY,
        latest=DAY + dt.timedelta(days=1),
    )
    waitlist.join(session, request, now=clock.now, settings=SETTINGS)
    session.commit()
    visit_id, other_id = visit.id, other.id

    def confirmed() -> bool:
        session.expire_all()
        done = session.get(Appointment, visit_id).confirmed_at is not None
        session.rollback()
        return done

    def actions() -> list[str]:
        found = list(session.scalars(select(SmsInbound.action).order_by(SmsInbound.id)))
        session.rollback()
        return found

    clock.now = at(DAY - dt.timedelta(days=2), 9)  # Monday 09:00
    booking.cancel(session, world.visits[0], now=clock.now, settings=SETTINGS, by_staff=True)
    session.commit()
    assert jobs.waitlist_once(app, clock.now).sent == 1
    token = session.scalars(select(WaitlistOffer.token)).one()
    session.rollback()
    link = f"{SETTINGS.public_base_url}/waitlist/offers/{token}"
    assert [m.to for m in twilio.messages] == [phone(1)]

    for minute, word in ((5, "C"), (6, "yes")):
        answer = reply(client, clock, clock.now.replace(minute=minute), word, phone=phone(1))
        assert link in answer and "a reply does not book" in answer
        assert "Wed 2 Dec, 10:00 AM PST at Mission Clinic" in answer
        assert "before Mon 30 Nov, 9:30 AM PST" in answer
        assert not confirmed()
    # Past its 30 minutes: the answer says so; still nothing confirmed, nothing booked.
    answer = reply(client, clock, at(DAY - dt.timedelta(days=2), 9, 31), "C", phone=phone(1))
    assert "has expired" in answer and "stay on the waitlist" in answer and token not in answer
    assert not confirmed()
    assert actions() == ["offer_reply"] * 3
    assert session.scalars(select(SmsInbound.appointment_id)).all() == [None] * 3
    session.rollback()

    # HELP names the offer's clinic; STOP stops the offers too; START resumes.
    help_text = reply(client, clock, at(DAY - dt.timedelta(days=2), 9, 32), "HELP", phone=phone(1))
    assert "+14155550100" in help_text
    assert reply(client, clock, at(DAY - dt.timedelta(days=2), 9, 35), "STOP", phone=phone(1)) == ""
    clock.now = at(DAY - dt.timedelta(days=2), 9, 40)
    cancelled = session.get(Appointment, other_id)
    booking.cancel(session, cancelled, now=clock.now, settings=SETTINGS, by_staff=True)
    session.commit()
    assert jobs.waitlist_once(app, clock.now).offered == 0
    assert len(twilio.messages) == 1
    assert (
        reply(client, clock, at(DAY - dt.timedelta(days=2), 9, 45), "START", phone=phone(1)) == ""
    )
    assert session.scalars(select(SmsOptOut.opted_out)).one() is False
    session.rollback()

    # A reminder texted after the offer: C answers the reminder and confirms Pat's visit.
    clock.now = at(DAY, 10)  # 48 h before Friday's visit
    jobs.dispatch_once(app, clock.now)
    assert [m.to for m in twilio.messages] == [phone(1), phone(1)]
    answer = reply(client, clock, at(DAY, 10, 5), "C", phone=phone(1))
    assert "is confirmed" in answer and "Fri 4 Dec" in answer
    assert confirmed()
    assert actions()[-1] == "confirm"


def test_stop_withdraws_the_offers_already_texted_to_that_number(
    app, client, session, clock, twilio
):
    world = make_world(session, clock.now)
    for n in (1, 2, 3):
        join(session, clock.now, n)
    session.commit()
    app.config["WAITLIST_BATCH_SIZE"] = 2  # the freed hour is offered to two at a time
    clock.now = at(DAY - dt.timedelta(days=2), 9)  # Monday 09:00
    booking.cancel(session, world.visits[0], now=clock.now, settings=SETTINGS, by_staff=True)
    session.commit()
    assert jobs.waitlist_once(app, clock.now).sent == 2
    tokens = dict(session.execute(select(WaitlistOffer.to_phone, WaitlistOffer.token)).all())
    session.rollback()

    assert reply(client, clock, at(DAY - dt.timedelta(days=2), 9, 5), "STOP", phone=phone(1)) == ""
    rows = session.execute(
        select(WaitlistOffer.to_phone, WaitlistOffer.status, WaitlistOffer.reason).order_by(
            WaitlistOffer.to_phone
        )
    ).all()
    session.rollback()
    assert [tuple(r) for r in rows] == [
        (phone(1), "skipped", "opted out"),
        (phone(2), "sent", ""),  # another number's offer stands
    ]
    # The link says the offer is no longer open, within its 30 minutes; claiming it is refused.
    page = client.get(f"/waitlist/offers/{tokens[phone(1)]}")
    assert page.status_code == 200
    assert "This offer is no longer open" in page.get_data(as_text=True)
    assert "no longer open" not in client.get(f"/waitlist/offers/{tokens[phone(2)]}").get_data(
        as_text=True
    )
    claimed = client.post(f"/api/v1/waitlist/offers/{tokens[phone(1)]}/claim")
    assert claimed.status_code == 409
    assert claimed.get_json()["error"]["code"] == "expired"
    assert "STOP" in claimed.get_json()["error"]["message"]
    # The freed hour's next batch counts only the offer still out: the third person gets one.
    freed = session.scalars(select(WaitlistFreed)).one()
    settings = dataclasses.replace(SETTINGS, waitlist_batch=2)
    assert waitlist.offer_freed(session, freed, now=clock.now, settings=settings) == (1, 2)
    assert session.scalars(
        select(WaitlistOffer.to_phone).where(WaitlistOffer.status == "pending")
    ).all() == [phone(3)]
    session.rollback()
