"""The waitlist on both databases: what a freed slot offers to whom, claims (first wins, the
others see `taken`, late ones `expired`), quiet hours and STOP, the triggers and the API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from config import TestConfig
from scheduler import create_app, jobs
from scheduler.extensions import db
from scheduler.models import (
    Appointment,
    Patient,
    ResourceBlock,
    SmsOptOut,
    WaitlistEntry,
    WaitlistFreed,
    WaitlistOffer,
)
from scheduler.services import booking, courses, staffing, waitlist
from scheduler.services.errors import Conflict, InvalidInput
from tests.factories import make_service, make_staff
from tests.waitlist_support import (
    DAY,
    SETTINGS,
    at,
    book,
    cancel_all,
    clear,
    join,
    make_world,
    phone,
)


@pytest.fixture
def app_config(app_config: dict[str, Any], twilio: Any) -> dict[str, Any]:
    return {**app_config, **twilio.config(), "PUBLIC_BASE_URL": SETTINGS.public_base_url}


@dataclass(frozen=True)
class Row:
    to_phone: str
    status: str
    slot_start: dt.datetime
    token: str


def offers(session) -> list[Row]:
    """The offers as plain rows; the read's transaction ends (on SQLite every transaction
    holds the write lock, which the worker needs)."""
    session.expire_all()
    rows = [
        Row(o.to_phone, o.status, o.slot_start, o.token)
        for o in session.scalars(select(WaitlistOffer).order_by(WaitlistOffer.id))
    ]
    session.rollback()
    return rows


def count(session, model: Any) -> int:
    n = session.scalar(select(func.count()).select_from(model))
    session.rollback()
    return int(n)


def offer_token(session, n: int) -> str:
    for offer in offers(session):
        if offer.to_phone == phone(n):
            return offer.token
    raise AssertionError(f"no offer to patient {n}")


@pytest.fixture
def scene(app, session, clock):
    """Entries that must not be offered the 10:00 slot join first, then the fitting ones."""
    world = make_world(session, clock.now)
    cleared = make_service(
        session,
        [world.location],
        slug="cleared",
        name="Esketamine session",
        duration=60,
        prep=0,
        recovery=0,
        step=60,
        notice_minutes=60,
        requires_clearance=True,
        min_gap_hours=24,
    )
    make_service(session, [world.location], slug="long", duration=240, prep=0, recovery=0)
    dob = dt.date(1980, 1, 1)
    join(session, clock.now, 3, times="afternoon")  # times do not match
    join(session, clock.now, 4, earliest=DAY + dt.timedelta(days=1), latest=DAY + dt.timedelta(3))
    join(session, clock.now, 5, service="long")  # four hours do not fit the freed hour
    join(session, clock.now, 6, service="cleared", dob=dob)  # no clearance
    soon = join(session, clock.now, 9, service="cleared", dob=dob)  # too soon after a visit
    clear(session, soon, cleared)
    booking.book(
        session,
        booking.BookingRequest(
            location="wl",
            service="cleared",
            start=at(DAY - dt.timedelta(days=1), 16),
            patient=waitlist.PatientDetails("Waiting Person9", phone(9), "", True, dob),
            require_email=False,
        ),
        now=clock.now,
        settings=SETTINGS,
    )
    join(session, clock.now, 10)  # replied STOP
    session.add(SmsOptOut(phone=phone(10), opted_out=True, keyword="STOP"))
    join(session, clock.now, 1, times="morning")
    join(session, clock.now, 2)
    fits = join(session, clock.now, 7, service="cleared", dob=dob)
    clear(session, fits, cleared)
    join(session, clock.now, 8)  # fits, but after a batch of three
    session.commit()
    return world


def test_a_cancel_offers_the_slot_once_to_each_fitting_entry_in_batches(
    app, session, clock, twilio, scene
):
    assert jobs.waitlist_once(app, clock.now).offered == 0  # nothing freed yet
    cancel_all(session, scene, clock.now)
    session.commit()
    assert count(session, WaitlistFreed) == 1

    result = jobs.waitlist_once(app, clock.now)
    assert (result.offered, result.sent) == (3, 3)
    assert sorted(m.to for m in twilio.messages) == [phone(1), phone(2), phone(7)]
    for message in twilio.messages:
        assert "Ketamine" not in message.body and "Esketamine" not in message.body
        assert "Mission Clinic" in message.body and "30 min" in message.body
        assert f"{SETTINGS.public_base_url}/waitlist/offers/" in message.body
    assert {o.slot_start for o in offers(session)} == {at(DAY, 10)}
    assert {o.status for o in offers(session)} == {"sent"}

    # Looking again changes nothing while the offers are out.
    clock.advance(minutes=10)
    assert jobs.waitlist_once(app, clock.now).offered == 0
    assert len(twilio.messages) == 3

    # They expire unclaimed: the slot goes to the next in join order (and only to them).
    clock.advance(minutes=21)
    result = jobs.waitlist_once(app, clock.now)
    assert (result.expired, result.offered, result.sent) == (3, 1, 1)
    assert [m.to for m in twilio.messages[3:]] == [phone(8)]
    clock.advance(minutes=31)
    jobs.waitlist_once(app, clock.now)
    clock.advance(minutes=31)
    assert jobs.waitlist_once(app, clock.now).offered == 0
    assert len(twilio.messages) == 4
    per_phone = Counter(m.to for m in twilio.messages)
    assert set(per_phone.values()) == {1}
    freed = session.scalars(select(WaitlistFreed)).one()
    assert freed.status == "done"


def test_no_offer_for_a_slot_inside_the_minimum_notice(app, session, clock, twilio):
    world = make_world(session, clock.now)
    join(session, clock.now, 1)
    session.commit()
    clock.now = at(DAY, 9, 30)  # the visit is at 10:00; the service needs 60 minutes' notice
    cancel_all(session, world, clock.now)
    session.commit()
    assert jobs.waitlist_once(app, clock.now).offered == 0
    assert twilio.messages == []


def test_claim_books_the_entry_and_a_later_claim_of_the_slot_is_taken(
    app, session, clock, client, twilio, scene
):
    cancel_all(session, scene, clock.now)
    session.commit()
    jobs.waitlist_once(app, clock.now)
    first, second = offer_token(session, 1), offer_token(session, 2)

    r = client.post(f"/api/v1/waitlist/offers/{first}/claim")
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["start"] == "2026-12-02T10:00:00-08:00"
    appointment = session.get(Appointment, r.get_json()["id"])
    assert appointment.patient.phone == phone(1) and appointment.source == "waitlist"
    session.rollback()
    assert client.post(f"/api/v1/waitlist/offers/{first}/claim").status_code == 201  # again

    r = client.post(f"/api/v1/waitlist/offers/{second}/claim")
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "taken"
    session.expire_all()
    states = {o.to_phone: o.status for o in offers(session)}
    assert states == {phone(1): "claimed", phone(2): "taken", phone(7): "taken"}
    entries = {e.patient.phone: e.status for e in session.scalars(select(WaitlistEntry))}
    assert entries[phone(1)] == "booked" and entries[phone(2)] == "active"
    view = waitlist.get_offer(session, second, now=clock.now)
    assert view.taken and not view.claimable
    session.rollback()
    assert client.post("/api/v1/waitlist/offers/nonesuch/claim").status_code == 404


def test_an_offer_claimed_after_it_expires_is_409_expired(app, session, clock, client, scene):
    cancel_all(session, scene, clock.now)
    session.commit()
    jobs.waitlist_once(app, clock.now)
    token = offer_token(session, 2)
    clock.advance(minutes=30, seconds=1)
    assert waitlist.get_offer(session, token, now=clock.now).expired
    session.rollback()
    r = client.post(f"/api/v1/waitlist/offers/{token}/claim")
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "expired"
    assert (
        session.scalar(
            select(func.count()).select_from(Appointment).where(Appointment.source == "waitlist")
        )
        == 0
    )


@pytest.fixture
def server(app, db_url, clock, twilio):
    """A second app on the same database, served by a threaded server (one thread a request)."""
    served = create_app(TestConfig(db_url, CLOCK=clock, **twilio.config()))
    httpd = make_server("127.0.0.1", 0, served, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(5)
    with served.app_context():
        deadline = time.monotonic() + 5
        while db.engine.pool.checkedout() and time.monotonic() < deadline:
            time.sleep(0.05)
        db.engine.dispose()


def test_two_patients_claiming_at_once_one_books_the_other_is_told_taken(
    app, session, clock, twilio, scene, server
):
    cancel_all(session, scene, clock.now)
    session.commit()
    jobs.waitlist_once(app, clock.now)
    tokens = [offer_token(session, 1), offer_token(session, 2)]
    barrier = threading.Barrier(2)

    def claim(token: str) -> tuple[int, Any]:
        with requests.Session() as http:
            barrier.wait()
            r = http.post(f"{server}/api/v1/waitlist/offers/{token}/claim", timeout=60)
            return r.status_code, r.json()

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(claim, tokens))
    assert sorted(code for code, _ in answers) == [201, 409], answers
    loser = next(body for code, body in answers if code == 409)
    assert loser["error"]["code"] == "taken"
    session.expire_all()
    booked = session.scalars(select(Appointment).where(Appointment.source == "waitlist")).all()
    assert len(booked) == 1
    statuses = Counter(e.status for e in session.scalars(select(WaitlistEntry)))
    assert statuses["booked"] == 1


def test_quiet_hours_hold_the_texts_and_stop_is_honoured(app, session, clock, twilio, scene):
    clock.now = at(DAY - dt.timedelta(days=1), 21, 30)  # 21:30 in Los Angeles, the day before
    cancel_all(session, scene, clock.now)
    session.commit()
    result = jobs.waitlist_once(app, clock.now)
    assert (result.offered, result.sent, result.deferred) == (3, 0, 3)
    assert twilio.messages == []
    # Patient 2 replies STOP to something else meanwhile: their offer is never texted.
    session.add(SmsOptOut(phone=phone(2), opted_out=True, keyword="STOP"))
    session.commit()
    clock.now = at(DAY, 7, 59)
    assert jobs.waitlist_once(app, clock.now).sent == 0
    clock.now = at(DAY, 8, 0)
    result = jobs.waitlist_once(app, clock.now)
    assert (result.sent, result.skipped) == (2, 1)
    assert sorted(m.to for m in twilio.messages) == [phone(1), phone(7)]
    assert {o.to_phone: o.status for o in offers(session)}[phone(2)] == "skipped"


def test_joining_without_an_email_keeps_a_known_patients_email(app, session, clock):
    world = make_world(session, clock.now)
    booked = world.visits[0].patient
    request = waitlist.JoinRequest(
        location="wl",
        service="infusion",
        course=None,
        patient=waitlist.PatientDetails(booked.name, booked.phone, "", True),
        earliest=DAY,
        latest=DAY,
    )
    entry = waitlist.join(session, request, now=clock.now, settings=SETTINGS)
    assert entry.patient_id == booked.id
    assert entry.patient.email == "b9000@example.com"
    # Joining again updates the dates and times and keeps the place in the queue.
    again = waitlist.join(
        session,
        dataclasses.replace(request, latest=DAY + dt.timedelta(days=2), times="morning"),
        now=clock.now + dt.timedelta(hours=1),
        settings=SETTINGS,
    )
    assert again.id == entry.id and again.created_at == clock.now
    assert (again.latest, again.times) == (DAY + dt.timedelta(days=2), "morning")


def test_each_trigger_queues_a_look_and_nothing_without_a_waitlist(app, session, clock):
    world = make_world(session, clock.now, chairs=2)

    def reasons() -> list[str]:
        return list(session.scalars(select(WaitlistFreed.reason).order_by(WaitlistFreed.id)))

    booking.cancel(session, world.visits[0], now=clock.now, settings=SETTINGS, by_staff=True)
    assert reasons() == []  # no one waits: nothing to look at
    join(session, clock.now, 1)
    visit = book(session, clock.now, world.infusion, at(DAY, 10), 50)
    booking.reschedule(
        session,
        visit,
        at(DAY + dt.timedelta(days=1), 10),
        now=clock.now,
        settings=SETTINGS,
        by_staff=True,
    )
    chair = world.location.resources[0]
    first_block = session.scalars(
        select(ResourceBlock).where(ResourceBlock.resource_id == chair.id)
    ).first()
    booking.delete_block(session, first_block, now=clock.now)
    other = world.visits[1]
    clock.now = at(DAY, 10, 20)  # recorded as a no-show during the visit
    booking.set_status(session, other, "no_show", now=clock.now, settings=SETTINGS)
    world.location.staffing_rules = True
    nurse = staffing.create_clinician(session, name="Nurse Float", role="nurse")
    staffing.add_shift(session, world.location, nurse.id, at(DAY, 12), at(DAY, 16), now=clock.now)
    assert reasons() == ["moved", "unblocked", "no_show", "shift"]
    moved = session.scalars(select(WaitlistFreed)).first()
    assert (moved.start_at, moved.end_at) == (at(DAY, 10), at(DAY, 11))


def test_the_api_joins_leaves_lists_and_offers_by_hand(app, session, clock, client, twilio):
    world = make_world(session, clock.now)
    _, token = make_staff(session, role="front_desk", locations=[world.location], now=clock.now)
    session.commit()
    body = {
        "location": "wl",
        "service": "infusion",
        "patient": {"name": "Api Person", "phone": phone(31), "email": "api@example.com"},
        "earliest": DAY.isoformat(),
        "latest": DAY.isoformat(),
        "times": "morning",
        "sms_consent": True,
    }
    r = client.post("/api/v1/waitlist", json=body)
    assert r.status_code == 201, r.get_json()
    joined = r.get_json()
    assert set(joined) == {"id", "manage_token"}

    bad = client.post("/api/v1/waitlist", json={**body, "course": "crps"})
    assert bad.status_code == 422 and "course" in bad.get_json()["error"]["fields"]
    bad = client.post("/api/v1/waitlist", json={**body, "service": None, "course": "crps"})
    assert bad.status_code == 404 and "course" in bad.get_json()["error"]["fields"]
    bad = client.post("/api/v1/waitlist", json={**body, "earliest": "2026-12-05"})
    assert bad.status_code == 422 and "latest" in bad.get_json()["error"]["fields"]
    bad = client.post("/api/v1/waitlist", json={**body, "times": "evening"})
    assert bad.status_code == 422 and "times" in bad.get_json()["error"]["fields"]
    bad = client.post("/api/v1/waitlist", json={**body, "location": "nowhere"})
    assert bad.status_code == 404

    auth = {"Authorization": f"Bearer {token}"}
    listed = client.get("/api/v1/locations/wl/waitlist", headers=auth)
    assert listed.status_code == 200
    [entry] = listed.get_json()
    assert entry["id"] == joined["id"] and entry["times"] == "morning" and entry["offers"] == []

    # By hand: a start that is not free is refused; the freed one is offered and texted.
    path = f"/api/v1/locations/wl/waitlist/{joined['id']}/offers"
    taken = client.post(path, json={"start": at(DAY, 10).isoformat()}, headers=auth)
    assert taken.status_code == 409
    booking.cancel(session, world.visits[0], now=clock.now, settings=SETTINGS, by_staff=True)
    session.commit()
    made = client.post(path, json={"start": at(DAY, 10).isoformat()}, headers=auth)
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["by_hand"] is True
    again = client.post(path, json={"start": at(DAY, 10).isoformat()}, headers=auth)
    assert again.status_code == 409
    result = jobs.waitlist_once(app, clock.now)
    assert result.sent == 1 and [m.to for m in twilio.messages] == [phone(31)]

    assert client.delete(f"/api/v1/waitlist/{joined['manage_token']}").status_code == 204
    assert client.delete(f"/api/v1/waitlist/{joined['manage_token']}").status_code == 204
    assert client.delete("/api/v1/waitlist/unknown-token").status_code == 404
    left = client.get("/api/v1/locations/wl/waitlist?status=left", headers=auth).get_json()
    assert [e["id"] for e in left] == [joined["id"]]
    assert [o["status"] for o in left[0]["offers"]] == ["skipped"]


def test_the_reminder_job_and_the_cli_run_the_waitlist_pass(app, session, clock, twilio, scene):
    cancel_all(session, scene, clock.now)
    session.commit()
    jobs.dispatch_once(app, clock.now)  # what the embedded worker and `reminders run` call
    assert sorted(m.to for m in twilio.messages) == [phone(1), phone(2), phone(7)]
    later = clock.now + dt.timedelta(minutes=31)
    out = app.test_cli_runner().invoke(args=["waitlist", "send-due", "--now", later.isoformat()])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == "offered=1 sent=1 skipped=0 failed=0 deferred=0 expired=3"


def test_a_course_entry_is_offered_only_a_start_its_course_fits_and_claims_the_course(
    app, session, clock, client, twilio
):
    world = make_world(session, clock.now)
    rules = {"service": "infusion", "sessions": 2, "min_gap_hours": 24, "max_gap_hours": 72}
    courses.save_template(
        session, None, {**rules, "slug": "pair", "name": "Two sessions", "within_days": 7}
    )
    courses.save_template(  # Mondays only: no plan starts on a Wednesday
        session,
        None,
        {**rules, "slug": "mondays", "name": "Mondays", "within_days": 14, "weekdays": "mon"},
    )
    request = waitlist.JoinRequest(
        location="wl",
        service=None,
        course="mondays",
        patient=waitlist.PatientDetails("Monday Person", phone(41), "", True),
        earliest=DAY,
        latest=DAY,
    )
    waitlist.join(session, request, now=clock.now, settings=SETTINGS)
    paired = waitlist.join(
        session,
        dataclasses.replace(
            request,
            course="pair",
            patient=waitlist.PatientDetails("Pair Person", phone(42), "", True),
        ),
        now=clock.now,
        settings=SETTINGS,
    )
    assert paired.course_slug == "pair" and paired.service_id == world.infusion.id
    cancel_all(session, world, clock.now)
    session.commit()
    assert jobs.waitlist_once(app, clock.now).sent == 1
    assert [m.to for m in twilio.messages] == [phone(42)]

    r = client.post(f"/api/v1/waitlist/offers/{offer_token(session, 42)}/claim")
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["start"] == "2026-12-02T10:00:00-08:00"
    visits = session.scalars(
        select(Appointment).where(Appointment.source == "waitlist").order_by(Appointment.start_at)
    ).all()
    assert [v.start_at for v in visits] == [at(DAY, 10), at(DAY + dt.timedelta(days=1), 10)]
    assert len({v.course_id for v in visits}) == 1 and visits[0].course_id is not None


# --- SMS consent, shared phones, weekly shifts ----------------------------------------------------


def test_joining_needs_sms_consent_and_the_worker_skips_patients_without_it(
    app, session, clock, client, twilio
):
    world = make_world(session, clock.now)
    session.commit()
    refused = waitlist.JoinRequest(
        location="wl",
        service="infusion",
        course=None,
        patient=waitlist.PatientDetails("No Texts", phone(50), "", False),
        earliest=DAY,
        latest=DAY,
    )
    with pytest.raises(InvalidInput) as caught:
        waitlist.join(session, refused, now=clock.now, settings=SETTINGS)
    assert caught.value.fields == {"sms_consent": "required"}
    session.rollback()
    body = {
        "location": "wl",
        "service": "infusion",
        "patient": {"name": "Api Person", "phone": phone(51), "email": "a51@example.com"},
        "earliest": DAY.isoformat(),
        "latest": DAY.isoformat(),
    }
    for consent in ({}, {"sms_consent": False}):
        r = client.post("/api/v1/waitlist", json={**body, **consent})
        assert r.status_code == 422, r.get_json()
        assert "sms_consent" in r.get_json()["error"]["fields"], consent
    assert client.post("/api/v1/waitlist", json={**body, "sms_consent": True}).status_code == 201
    assert count(session, WaitlistEntry) == 1

    # Consent withdrawn later (staff edit the patient): never offered, not even by hand.
    withdrawn = join(session, clock.now, 52)
    withdrawn.patient.sms_consent = False
    staff, _ = make_staff(session, role="front_desk", locations=[world.location], now=clock.now)
    cancel_all(session, world, clock.now)
    with pytest.raises(Conflict):
        waitlist.offer_by_hand(
            session, withdrawn, at(DAY, 10), now=clock.now, settings=SETTINGS, staff=staff
        )
    later = join(session, clock.now, 53)
    session.commit()
    lease = clock.now + dt.timedelta(minutes=5)
    waitlist.process_freed(
        session, now=clock.now, settings=SETTINGS, batch=5, token="t", lease_until=lease
    )
    session.commit()
    assert [o.to_phone for o in offers(session)] == [phone(51), phone(53)]
    # Consent withdrawn between the offer and its text: the text is skipped.
    session.get(Patient, later.patient_id).sms_consent = False
    session.commit()
    result = jobs.waitlist_once(app, clock.now)
    assert (result.sent, result.skipped) == (1, 1)
    assert [m.to for m in twilio.messages] == [phone(51)]
    assert {o.to_phone: o.status for o in offers(session)}[phone(53)] == "skipped"


def test_offers_to_a_shared_phone_carry_the_first_name(app, session, clock, twilio):
    world = make_world(session, clock.now)
    family = phone(60)
    for name in ("Ana Reyes", "Ben Reyes"):
        request = waitlist.JoinRequest(
            location="wl",
            service="infusion",
            course=None,
            patient=waitlist.PatientDetails(name, family, "", True),
            earliest=DAY,
            latest=DAY,
        )
        waitlist.join(session, request, now=clock.now, settings=SETTINGS)
    join(session, clock.now, 61)  # a number of their own: no name
    cancel_all(session, world, clock.now)
    session.commit()
    assert jobs.waitlist_once(app, clock.now).sent == 3
    bodies = sorted((m.to, m.body) for m in twilio.messages)
    assert [to for to, _ in bodies] == [family, family, phone(61)]
    assert bodies[0][1].startswith("Chairside Clinic: Ana, a time has opened")
    assert bodies[1][1].startswith("Chairside Clinic: Ben, a time has opened")
    assert bodies[2][1].startswith("Chairside Clinic: a time has opened")


def test_a_weekly_shift_queues_a_look_at_each_of_its_days(app, session, clock):
    world = make_world(session, clock.now)
    nurse = staffing.create_clinician(session, name="Nurse Weekly", role="nurse")

    def looks() -> list[tuple[str, dt.datetime, dt.datetime]]:
        return [
            (f.reason, f.start_at, f.end_at)
            for f in session.scalars(select(WaitlistFreed).order_by(WaitlistFreed.start_at))
        ]

    weekly = {"weekday": DAY.weekday(), "starts": dt.time(12), "ends": dt.time(16)}
    staffing.add_pattern(session, world.location, nurse.id, now=clock.now, **weekly)
    assert looks() == []  # staffing rules off: capacity is the chairs'
    world.location.staffing_rules = True
    staffing.add_pattern(
        session, world.location, nurse.id, now=clock.now, **{**weekly, "weekday": 0}
    )
    assert looks() == []  # no one waits
    join(session, clock.now, 70, latest=DAY + dt.timedelta(days=14))
    other = staffing.create_clinician(session, name="Nurse Other", role="nurse")
    staffing.add_pattern(session, world.location, other.id, now=clock.now, **weekly)
    # Every Wednesday from today to the last day anyone waits for, like a one-off shift.
    assert looks() == [
        ("shift", at(DAY + dt.timedelta(days=d), 12), at(DAY + dt.timedelta(days=d), 16))
        for d in (0, 7, 14)
    ]
    # A pattern starting later (a changed rota from a date) looks from that date.
    third = staffing.create_clinician(session, name="Nurse Third", role="nurse")
    staffing.add_pattern(
        session,
        world.location,
        third.id,
        now=clock.now,
        valid_from=DAY + dt.timedelta(days=10),
        **weekly,
    )
    assert len(looks()) == 4 and looks()[-1][1] == at(DAY + dt.timedelta(days=14), 12)


def test_a_clinician_back_on_the_rota_offers_the_time_their_shift_frees(
    app, session, clock, client, twilio
):
    """Reactivating a clinician counts their shifts again: under the staffing rules the waitlist
    looks at each shift still to come, as when a shift is added."""
    world = make_world(session, clock.now)
    doctor = staffing.create_clinician(session, name="Dr On Site", role="prescriber")
    staffing.add_shift(session, world.location, doctor.id, at(DAY, 8), at(DAY, 17), now=clock.now)
    nurse = staffing.create_clinician(session, name="Nurse Returning", role="nurse")
    staffing.add_shift(session, world.location, nurse.id, at(DAY, 8), at(DAY, 17), now=clock.now)
    tuesdays = {"weekday": 1, "starts": dt.time(12), "ends": dt.time(16)}  # the day before DAY
    staffing.add_pattern(session, world.location, nurse.id, now=clock.now, **tuesdays)
    away = staffing.create_clinician(session, name="Nurse Elsewhere", role="nurse")
    staffing.add_shift(session, world.location, away.id, at(DAY, 8), at(DAY, 17), now=clock.now)
    for clinician in (nurse, away):
        staffing.update_clinician(
            session, clinician, staffing.ClinicianChange(active=False), now=clock.now
        )
    cancel_all(session, world, clock.now)  # the chair is free at 10:00; no nurse on shift
    world.location.staffing_rules = True
    join(session, clock.now, 1)
    _, token = make_staff(session, now=clock.now)
    session.commit()
    assert count(session, WaitlistFreed) == 0

    def send_due() -> str:
        session.rollback()  # on SQLite the worker needs the write lock
        out = app.test_cli_runner().invoke(
            args=["waitlist", "send-due", "--now", clock.now.isoformat()]
        )
        assert out.exit_code == 0, out.output
        return out.output.strip()

    r = client.patch(
        f"/api/v1/clinicians/{nurse.id}",
        json={"active": True},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.get_json()
    assert send_due().startswith("offered=1 sent=1")
    assert [(o.to_phone, o.slot_start) for o in offers(session)] == [(phone(1), at(DAY, 10))]
    looks = [(f.start_at, f.end_at) for f in session.scalars(select(WaitlistFreed))]
    assert sorted(looks) == [
        (at(DAY - dt.timedelta(days=1), 12), at(DAY - dt.timedelta(days=1), 16)),
        (at(DAY, 8), at(DAY, 17)),
    ]
    # Without the staffing rules a returning clinician frees nothing: capacity is the chairs'.
    world.location.staffing_rules = False
    session.commit()
    staffing.update_clinician(session, away, staffing.ClinicianChange(active=True), now=clock.now)
    session.commit()
    assert count(session, WaitlistFreed) == 2
