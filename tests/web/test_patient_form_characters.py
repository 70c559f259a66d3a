"""A control character in any patient form (joining the waitlist, "my visits", the pages that
cancel, move or claim): the form again (422), the field named and what was typed kept, nothing
stored; never the generic error page. The clean form still goes through. Every patient POST
view opts in (`marks_form_problems`) and asks `refused_characters` first."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import (
    Appointment,
    AppointmentStatus,
    OfferStatus,
    Patient,
    VisitCode,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistStatus,
)
from scheduler.services import waitlist
from scheduler.services.sms import SendResult
from tests import waitlist_support as wl
from tests.factories import make_staff
from tests.web.staff_support import DAY, at, book, make_clinic
from tests.web.test_refused_forms_keep_input import pair_template

HINT = "Had a character we cannot accept"
PATIENT_POSTS = ("patient.", "manage.", "waitlist.", "waitlist_join.", "my_visits.")


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


class FakeSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        self.sent.append((to, body))
        return SendResult(sid=f"SM{len(self.sent)}", status="queued")


def text_of(html: str) -> str:
    return unescape(" ".join(re.sub(r"<[^>]+>", " ", html).split()))


def count(session: Any, model: Any) -> int:
    session.expire_all()
    n = session.scalar(select(func.count()).select_from(model))
    session.rollback()
    return int(n or 0)


def refused(r: Any, label: str, *kept: str) -> str:
    """The form again: 422, the field named, what was typed kept, no NUL echoed."""
    html = r.get_data(as_text=True)
    assert r.status_code == 422, text_of(html)[:500]
    assert "\x00" not in html
    assert f"{label}: {HINT}" in text_of(html), text_of(html)[:800]
    assert 'method="post"' in html  # the form itself, not the generic error page
    for snippet in kept:
        assert snippet in html, snippet
    return html


def test_every_patient_post_view_marks_its_own_form(app):
    posts = [
        rule
        for rule in app.url_map.iter_rules()
        if "POST" in (rule.methods or ()) and rule.endpoint.startswith(PATIENT_POSTS)
    ]
    assert len(posts) >= 13
    unmarked = [
        r.endpoint
        for r in posts
        if not getattr(app.view_functions[r.endpoint], "marks_form_problems", False)
    ]
    assert unmarked == []


# --- joining the waitlist -------------------------------------------------------------------------

JOIN = {
    "name": "Robin\x00 Example",
    "phone": "(415) 555-0123",
    "email": "robin@example.com",
    "date_of_birth": "1980-04-02",
    "earliest": str(wl.DAY),
    "latest": str(wl.DAY + dt.timedelta(days=3)),
    "times": "morning",
    "course": "",
    "sms_consent": "1",
}


def test_a_nul_in_the_waitlist_form_shows_it_again(client, session, clock):
    wl.make_world(session, clock.now)
    session.commit()
    url = "/book/wl/infusion/waitlist"
    before = (count(session, WaitlistEntry), count(session, Patient))

    html = refused(
        client.post(url, data=JOIN),
        "Full name",
        'value="Robin Example"',
        'value="(415) 555-0123"',
        'value="robin@example.com"',
        f'value="{wl.DAY + dt.timedelta(days=3)}"',
    )
    assert 'id="name-error"' in html
    assert (count(session, WaitlistEntry), count(session, Patient)) == before
    r = client.post(url, data={**JOIN, "name": "Robin Example"})
    assert r.status_code == 303 and "/waitlist/" in r.headers["Location"]
    assert count(session, WaitlistEntry) == before[0] + 1


# --- "my visits" ----------------------------------------------------------------------------------


def test_a_nul_in_the_my_visits_forms_shows_each_again(app, client, session, clock):
    sms = FakeSms()
    app.extensions["chairside_sms"] = sms
    clinic = make_clinic(session)
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, n=142)
    appt.patient.date_of_birth = dt.date(1980, 4, 2)
    patient_id, phone = appt.patient_id, appt.patient.phone
    session.commit()

    r = client.post("/my-visits", data={"phone": "(415) 555-0142\x00"})
    refused(r, "Mobile number", 'value="(415) 555-0142"')
    assert count(session, VisitCode) == 0 and sms.sent == []
    assert client.post("/my-visits", data={"phone": phone}).status_code == 303
    code = re.findall(r"\b\d{6}\b", sms.sent[-1][1])[0]

    r = client.post("/my-visits/code", data={"code": f"{code[:3]}\x00{code[3:]}"})
    refused(r, "Code", f'value="{code}"')
    r = client.post("/my-visits/code", data={"code": code})  # the refused one was no guess
    assert r.status_code == 303 and r.headers["Location"].endswith("/my-visits/who")

    form = {"patient": str(patient_id), "date_of_birth": "1980-04-02\x00"}
    html = refused(client.post("/my-visits/who", data=form), "Date of birth")
    assert 'value="1980-04-02"' in html
    assert f'value="{patient_id}" checked' in html
    with client.session_transaction() as state:
        assert "mv_patient" not in state
    r = client.post("/my-visits/who", data={**form, "date_of_birth": "1980-04-02"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/my-visits/visits")


# --- the manage pages (/a/<token>) ----------------------------------------------------------------


def test_a_nul_in_the_cancel_form_cancels_nothing(client, session, clock):
    clinic = make_clinic(session)
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now)
    token, appt_id = appt.manage_token, appt.id
    session.commit()

    def status() -> str:
        session.expire_all()
        found = session.get(Appointment, appt_id).status
        session.rollback()
        return str(found)

    url = f"/a/{token}/cancel"
    refused(client.post(url, data={"csrf_token": "to\x00ken"}), "Form", "Cancel your appointment?")
    assert status() == AppointmentStatus.BOOKED
    assert client.post(url, data={"csrf_token": "token"}).status_code == 303
    assert status() == AppointmentStatus.CANCELLED


def test_a_nul_in_the_move_form_keeps_the_chosen_time_and_moves_nothing(client, session, clock):
    clinic = make_clinic(session)
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now)
    token, appt_id = appt.manage_token, appt.id
    session.commit()

    def start() -> dt.datetime:
        session.expire_all()
        found = session.get(Appointment, appt_id).start_at
        session.rollback()
        return found

    url = f"/a/{token}/reschedule/confirm"
    wanted = f"{DAY}T13:00"
    form = {"start": f"{DAY}T13:00\x00", "wanted": wanted}
    refused(client.post(url, data=form), "Chosen time", f'name="start" value="{wanted}"')
    assert start() == at(DAY, 10)
    assert client.post(url, data={"start": wanted, "wanted": wanted}).status_code == 303
    assert start() == at(DAY, 13)


DETAILS = {
    "name": "Robin Example",
    "phone": "(415) 555-0123",
    "email": "robin@example.com",
    "date_of_birth": "1980-04-02",
    "sms_consent": "1",
}


def test_a_nul_in_the_course_cancel_form_cancels_nothing(client, session):
    make_clinic(session)
    pair_template(session)
    session.commit()
    starts = [f"{DAY}T10:00", "2026-12-03T10:00"]
    r = client.post("/book/sf/consult/course/pair/details", data={**DETAILS, "starts": starts})
    assert r.status_code == 303
    page = r.headers["Location"]

    def booked() -> int:
        session.expire_all()
        n = session.scalar(
            select(func.count())
            .select_from(Appointment)
            .where(Appointment.status == AppointmentStatus.BOOKED)
        )
        session.rollback()
        return int(n or 0)

    url = f"{page}/cancel-rest"
    refused(client.post(url, data={"csrf_token": "to\x00ken"}), "Form")
    assert booked() == 2
    assert client.post(url, data={"csrf_token": "token"}).status_code == 303
    assert booked() == 0


# --- one's place on the waitlist and an offer -----------------------------------------------------


def test_a_nul_in_the_leave_and_offer_forms_changes_nothing(client, session, clock):
    world = wl.make_world(session, clock.now)
    staff, _ = make_staff(session, now=clock.now)
    wl.cancel_all(session, world, clock.now)  # 10:00 on wl.DAY is free
    entry = wl.join(session, clock.now, 1)
    other = wl.join(session, clock.now, 2)
    offer = waitlist.offer_by_hand(
        session,
        entry,
        wl.at(wl.DAY, 10),
        now=clock.now,
        settings=wl.SETTINGS,
        staff=staff,
    )
    # As the worker leaves it once texted (a pending offer has no link out there yet).
    offer.status, offer.expires_at = OfferStatus.SENT, clock.now + dt.timedelta(minutes=30)
    entry_id, offer_token, other_token = entry.id, offer.token, other.manage_token
    session.commit()

    def states() -> tuple[object, ...]:
        session.expire_all()
        found = (
            session.get(WaitlistEntry, entry_id).status,
            session.scalars(select(WaitlistOffer.status)).all(),
            session.scalar(select(func.count()).select_from(Appointment)),
        )
        session.rollback()
        return found

    before = states()
    url = f"/waitlist/offers/{offer_token}"
    refused(client.post(url, data={"csrf_token": "to\x00ken"}), "Form", "Book this time")
    assert states() == before
    url = f"/waitlist/{other_token}/leave"
    refused(client.post(url, data={"csrf_token": "to\x00ken"}), "Form", "Leave the waitlist?")
    assert states() == before
    assert client.post(url, data={"csrf_token": "token"}).status_code == 303
    assert client.post(f"/waitlist/offers/{offer_token}", data={}).status_code == 303
    session.expire_all()
    assert session.get(WaitlistEntry, entry_id).status == WaitlistStatus.BOOKED
    session.rollback()
