"""Waitlist faults found by a tester, on both databases: a course offer shows (and texts) the
whole course it books; the staff list names the course; a `latest` past the horizon is refused;
a second claim after a booking is `already_booked`; the entry's escort is booked with the visit;
the staff refusal for an uncleared patient is worded for staff."""

from __future__ import annotations

import datetime as dt
from html import unescape
from typing import Any

import pytest
from sqlalchemy import select

from scheduler import jobs
from scheduler.models import Appointment, OfferStatus, WaitlistEntry, WaitlistOffer
from scheduler.services import courses, waitlist
from scheduler.services.errors import NotCleared
from scheduler.web import patient
from tests.factories import make_service, make_staff
from tests.waitlist_support import (
    DAY,
    LA,
    SETTINGS,
    at,
    book,
    cancel_all,
    join,
    make_world,
    phone,
)


@pytest.fixture
def app_config(app_config: dict[str, Any], twilio: Any) -> dict[str, Any]:
    return {**app_config, **twilio.config(), "PUBLIC_BASE_URL": SETTINGS.public_base_url}


def _body(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "location": "wl",
        "service": "infusion",
        "patient": {"name": f"Api Person{n}", "phone": phone(n), "email": f"a{n}@example.com"},
        "earliest": DAY.isoformat(),
        "latest": DAY.isoformat(),
        "sms_consent": True,
        **changes,
    }


def _token(session: Any, n: int) -> str:
    session.expire_all()
    token = session.scalars(
        select(WaitlistOffer.token).where(WaitlistOffer.to_phone == phone(n))
    ).first()
    session.rollback()
    assert token is not None, f"no offer to patient {n}"
    return str(token)


def test_a_course_offer_shows_and_texts_the_whole_course_it_books(
    app, session, clock, client, twilio
):
    world = make_world(session, clock.now)
    courses.save_template(
        session,
        None,
        {
            "service": "infusion",
            "sessions": 2,
            "min_gap_hours": 24,
            "max_gap_hours": 72,
            "slug": "pair",
            "name": "Two sessions",
            "within_days": 7,
        },
    )
    book(session, clock.now, world.infusion, at(DAY + dt.timedelta(days=1), 10), 9100)
    session.commit()
    joined = client.post("/api/v1/waitlist", json=_body(51, service=None, course="pair"))
    assert joined.status_code == 201, joined.get_json()
    cancel_all(session, world, clock.now)
    session.commit()
    assert jobs.waitlist_once(app, clock.now).sent == 1
    [text] = [m.body for m in twilio.messages]
    assert "course of 2 visits" in text and "books all 2 visits" in text
    assert "ketamine" not in text.lower() and "infusion" not in text.lower()

    token = _token(session, 51)
    plan = courses.plan(session, "wl", "pair", at(DAY, 10), now=clock.now, settings=SETTINGS)
    session.rollback()
    second = plan.sessions[1]
    assert second.start != at(DAY + dt.timedelta(days=1), 10) and second.moved
    page = unescape(client.get(f"/waitlist/offers/{token}").get_data(as_text=True))
    assert "Book all 2 sessions" in page and "Book this time" not in page
    assert "books the whole course" in page
    assert "Wed 2 Dec, 10:00 AM PST" in page
    assert patient.when(second.start, LA) in page and second.moved in page

    # Claiming books what the page showed.
    assert client.post(f"/api/v1/waitlist/offers/{token}/claim").status_code == 201
    booked = session.scalars(
        select(Appointment.start_at)
        .where(Appointment.source == "waitlist")
        .order_by(Appointment.start_at)
    ).all()
    assert booked == [at(DAY, 10), second.start]


def test_the_staff_list_names_an_entrys_course(app, session, clock, client):
    world = make_world(session, clock.now)
    courses.save_template(
        session,
        None,
        {
            "service": "infusion",
            "sessions": 2,
            "min_gap_hours": 24,
            "max_gap_hours": 72,
            "slug": "pair",
            "name": "Two sessions",
            "within_days": 7,
        },
    )
    _, token = make_staff(session, role="front_desk", locations=[world.location], now=clock.now)
    session.commit()
    assert client.post("/api/v1/waitlist", json=_body(52)).status_code == 201
    body = _body(53, service=None, course="pair")
    assert client.post("/api/v1/waitlist", json=body).status_code == 201
    listed = client.get(
        "/api/v1/locations/wl/waitlist", headers={"Authorization": f"Bearer {token}"}
    )
    assert [e["course"] for e in listed.get_json()] == [None, "pair"]
    schema = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert "course" in schema["WaitlistEntryOut"]["properties"]


def test_a_latest_past_the_last_bookable_day_is_refused_naming_it(app, session, clock, client):
    make_world(session, clock.now)
    session.commit()
    r = client.post("/api/v1/waitlist", json=_body(54, latest="2199-12-31"))
    assert r.status_code == 422, r.get_json()
    last = (clock.now.date() + dt.timedelta(days=60)).isoformat()
    assert r.get_json()["error"]["fields"]["latest"] == f"at most {last}, the last day bookable"
    assert session.scalars(select(WaitlistEntry)).first() is None
    r = client.post("/api/v1/waitlist", json=_body(54, latest=last))
    assert r.status_code == 201
    assert session.scalars(select(WaitlistEntry.latest)).one().isoformat() == last


def test_a_claim_after_the_entry_booked_is_already_booked_and_its_offers_withdrawn(
    app, session, clock, client, twilio
):
    world = make_world(session, clock.now)
    join(session, clock.now, 55)
    cancel_all(session, world, clock.now)
    session.commit()
    assert jobs.waitlist_once(app, clock.now).sent == 1
    first = _token(session, 55)
    entry = session.scalars(select(WaitlistEntry)).one()
    second = WaitlistOffer(
        entry_id=entry.id,
        location_id=entry.location_id,
        slot_start=at(DAY, 12),
        slot_end=at(DAY, 13),
        token="second-offer-token",
        status=OfferStatus.SENT.value,
        to_phone=phone(55),
        next_attempt_at=clock.now,
        sent_at=clock.now,
        expires_at=clock.now + dt.timedelta(minutes=30),
    )
    session.add(second)
    session.commit()
    assert client.post(f"/api/v1/waitlist/offers/{first}/claim").status_code == 201
    session.expire_all()
    assert session.get(WaitlistOffer, second.id).status == OfferStatus.SKIPPED
    session.rollback()
    r = client.post("/api/v1/waitlist/offers/second-offer-token/claim")
    assert r.status_code == 409
    error = r.get_json()["error"]
    assert error["code"] == "already_booked"
    assert error["message"].startswith("You have already booked from this waitlist")
    page = client.get("/waitlist/offers/second-offer-token")
    assert page.status_code == 200
    assert "You have already booked from this waitlist" in page.get_data(as_text=True)
    withdrawn = session.get(WaitlistOffer, second.id)
    answer = waitlist.render_offer_reply(session, withdrawn, now=clock.now, settings=SETTINGS)
    assert "already booked from this waitlist" in answer and "You stay" not in answer


def test_the_entrys_escort_is_booked_with_the_claimed_visit(app, session, clock, client):
    world = make_world(session, clock.now)
    world.infusion.escort_required = True
    session.commit()
    bad = client.post("/api/v1/waitlist", json=_body(56, escort={"name": "Ride", "phone": "12"}))
    assert bad.status_code == 422 and "escort.phone" in bad.get_json()["error"]["fields"]
    escort = {"name": "Riley Ride", "phone": "(415) 555-7777"}
    assert client.post("/api/v1/waitlist", json=_body(56, escort=escort)).status_code == 201
    assert client.post("/api/v1/waitlist", json=_body(57)).status_code == 201  # v1: optional
    cancel_all(session, world, clock.now)
    session.commit()
    jobs.waitlist_once(app, clock.now)
    with_escort = client.post(f"/api/v1/waitlist/offers/{_token(session, 56)}/claim")
    assert with_escort.status_code == 201, with_escort.get_json()
    out = with_escort.get_json()
    assert out["escort"] == {"name": "Riley Ride", "phone": "+14155557777"}
    assert out["escort_missing"] is False


def test_the_staff_refusal_for_an_uncleared_patient_is_worded_for_staff(app, session, clock):
    world = make_world(session, clock.now)
    make_service(
        session,
        [world.location],
        slug="cleared",
        name="Esketamine session",
        duration=60,
        prep=0,
        recovery=0,
        step=60,
        requires_clearance=True,
    )
    entry = join(session, clock.now, 58, service="cleared", dob=dt.date(1980, 1, 1))
    staff, _ = make_staff(session, role="front_desk", locations=[world.location], now=clock.now)
    cancel_all(session, world, clock.now)
    with pytest.raises(NotCleared) as refused:
        waitlist.offer_by_hand(
            session, entry, at(DAY, 10), now=clock.now, settings=SETTINGS, staff=staff
        )
    assert refused.value.message == (
        "This patient has no clearance for esketamine session; a prescriber records one on "
        "their record."
    )
    assert "please book" not in refused.value.message
