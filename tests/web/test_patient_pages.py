"""The patient pages over HTTP: booking, the manage page, CSRF, headers, limits, 404s."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import func, select, text

from scheduler.models import Appointment, Base, Patient
from scheduler.services import booking
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service

UTC = dt.UTC
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PATIENT = {
    "name": "Robin Example",
    "phone": "(415) 555-0123",
    "email": "robin@example.com",
    "date_of_birth": "1980-04-02",
}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # TestConfig leaves Flask-WTF's default (on); say so explicitly, since these tests rely on it.
    return {**app_config, "WTF_CSRF_ENABLED": True}


@pytest.fixture
def clinic(session: Any) -> dict[str, Any]:
    sf = make_location(session, slug="sf", name="SF Mission", phone="+14155550100")
    ny = make_location(session, slug="ny", name="NY Flatiron", timezone="America/New_York")
    infusion = make_service(session, [sf, ny], slug="infusion", name="Infusion")
    session.commit()
    return {"sf": sf, "ny": ny, "infusion": infusion}


def book(session: Any, start: dt.datetime, location: str = "sf", n: int = 1) -> Appointment:
    appt = booking.book(
        session,
        booking.BookingRequest(
            location=location,
            service="infusion",
            start=start,
            patient=PatientDetails(f"Pat {n}", f"+1415555{n:04d}", f"pat{n}@example.com"),
        ),
        now=dt.datetime(2026, 11, 30, 16, 0, tzinfo=UTC),
        settings=ClinicSettings(),
    )
    session.commit()
    return appt


def csrf_from(client: Any, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    match = CSRF.search(response.get_data(as_text=True))
    assert match, "the page has no CSRF token"
    return match.group(1)


def text_of(response: Any) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


DEC1_0915 = dt.datetime(2026, 12, 1, 17, 15, tzinfo=UTC)  # 9:15 AM PST


# --- booking --------------------------------------------------------------------------------------


def test_booking_steps_lead_from_location_to_confirmation(client, session, clinic):
    assert "SF Mission" in text_of(client.get("/"))
    services = text_of(client.get("/book/sf"))
    assert "Infusion" in services and "40 minutes" in services
    assert "You will need someone to drive you home" in services
    days = client.get("/book/sf/infusion").get_data(as_text=True)
    assert "November 2026" in days  # today (30 Nov) still has openings
    assert 'href="/book/sf/infusion/2026-11-30"' in days
    assert 'href="/book/sf/infusion?month=2026-12"' in days
    days = client.get("/book/sf/infusion?month=2026-12").get_data(as_text=True)
    assert 'href="/book/sf/infusion/2026-12-01"' in days
    times = text_of(client.get("/book/sf/infusion/2026-12-01"))
    assert "Morning" in times and "Afternoon" in times
    assert "9:15 AM" in times and "(PST)" in times
    token = csrf_from(client, "/book/sf/infusion/details?start=2026-12-01T09:15")
    response = client.post(
        "/book/sf/infusion/details",
        data={"csrf_token": token, "start": "2026-12-01T09:15", "sms_consent": "1", **PATIENT},
    )
    assert response.status_code == 303
    appt = session.scalars(select(Appointment)).one()
    assert appt.start_at == DEC1_0915
    assert appt.patient.phone == "+14155550123" and appt.patient.sms_consent is True
    assert response.headers["Location"].endswith(f"/a/{appt.manage_token}")
    session.rollback()
    page = text_of(client.get(response.headers["Location"]))
    assert "You're booked" in page
    assert "Tue 1 Dec, 9:15 AM PST" in page
    assert "1 Main St" in page or "Main St" in page
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"/a/{appt.manage_token}/invite.ics" in html
    assert "https://calendar.google.com/calendar/render?action=TEMPLATE" in html
    assert "dates=20261201T171500Z%2F20261201T175500Z" in html
    assert "https://www.google.com/maps/search/?api=1" in html


def test_time_page_uses_the_location_zone(client, clinic):
    # New York opens 9:00 local = 6:00 in San Francisco; the page shows New York's wall clock.
    page = text_of(client.get("/book/ny/infusion/2026-12-01"))
    assert "9:15 AM" in page and "(EST)" in page
    html = client.get("/book/ny/infusion/2026-12-01").get_data(as_text=True)
    assert re.search(r'aria-label="Tue 1 Dec, 9:15 AM, leave by about [0-9:]+ AM EST"', html)
    assert "PST" not in page


def test_calendar_shows_only_days_with_openings_as_links(client, session, clinic):
    # Close 3 Dec; 2 Dec stays open.
    from scheduler.models import Closure

    session.add(
        Closure(
            location_id=clinic["sf"].id,
            first_day=dt.date(2026, 12, 3),
            last_day=dt.date(2026, 12, 3),
        )
    )
    session.commit()
    html = client.get("/book/sf/infusion?month=2026-12").get_data(as_text=True)
    assert 'href="/book/sf/infusion/2026-12-02"' in html
    assert 'href="/book/sf/infusion/2026-12-03"' not in html
    assert "Thursday 3 December 2026, no times available" in html


def test_detail_errors_are_tied_to_their_fields_and_input_is_kept(client, session, clinic):
    token = csrf_from(client, "/book/sf/infusion/details?start=2026-12-01T09:15")
    response = client.post(
        "/book/sf/infusion/details",
        data={
            "csrf_token": token,
            "start": "2026-12-01T09:15",
            "name": "Robin",
            "phone": "12",
            "email": "not-an-email",
            "note": "wheelchair",
        },
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert re.search(r'<input id="phone"[^>]*aria-describedby="phone-hint phone-error"', html)
    assert re.search(r'<input id="phone"[^>]*aria-invalid="true"', html)
    assert 'id="phone-error"' in html and 'id="email-error"' in html
    assert 'id="name-error"' not in html
    assert 'value="Robin"' in html and ">wheelchair</textarea>" in html
    assert 'href="#phone"' in html  # the summary links to the field
    assert session.scalar(select(func.count()).select_from(Appointment)) == 0


def test_taken_time_keeps_details_and_offers_nearest_alternatives(client, session):
    loc = make_location(session, slug="one", chairs=1)
    make_service(session, [loc], slug="infusion")
    session.commit()
    token = csrf_from(client, "/book/one/infusion/details?start=2026-12-01T10:00")
    book(session, dt.datetime(2026, 12, 1, 18, 0, tzinfo=UTC), location="one")  # 10:00 PST
    response = client.post(
        "/book/one/infusion/details",
        data={"csrf_token": token, "start": "2026-12-01T10:00", **PATIENT, "note": "hi"},
    )
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    page = text_of(response)
    assert "That time has just been taken" in page
    assert 'value="Robin Example"' in html and 'value="robin@example.com"' in html
    offered = re.findall(r'name="start" id="start-\d+" value="([^"]+)"', html)
    # 10:00 takes 9:50-10:50 of the only chair: 9:00 is too early (prep), so nearest are
    # 9:15 before and 11:00 after; nothing in between is free.
    assert "2026-12-01T09:15" not in offered  # 9:15 ends 10:05 with recovery: overlaps
    assert offered[0] == "2026-12-01T11:00" or "2026-12-01T08:45" in offered
    assert all(value.startswith("2026-12-01") for value in offered[:3])
    assert "2026-12-01T10:00" not in offered
    choice = offered[0]
    response = client.post(
        "/book/one/infusion/details",
        data={"csrf_token": token, "start": choice, **PATIENT},
    )
    assert response.status_code == 303
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Appointment)) == 2


def test_unknown_start_on_details_is_a_clear_400(client, clinic):
    response = client.get("/book/sf/infusion/details?start=tomorrow")
    assert response.status_code == 400
    assert "Please choose a time from the list" in text_of(response)


# --- the manage page ------------------------------------------------------------------------------


def _snapshot(session: Any) -> dict[str, list[tuple[Any, ...]]]:
    session.rollback()
    out = {}
    for table in Base.metadata.sorted_tables:
        exists = session.execute(select(func.count()).select_from(table)).scalar()
        out[table.name] = (
            [tuple(row) for row in session.execute(select(table).order_by(*table.primary_key))]
            if exists
            else []
        )
    session.rollback()
    return out


def test_get_on_any_manage_url_changes_nothing(client, session, clinic, clock):
    appt = book(session, DEC1_0915)
    token = appt.manage_token
    before = _snapshot(session)
    urls = [
        f"/a/{token}",
        f"/a/{token}/cancel",
        f"/a/{token}/reschedule",
        f"/a/{token}/reschedule?month=2026-12",
        f"/a/{token}/reschedule/2026-12-02",
        f"/a/{token}/reschedule/confirm?start=2026-12-02T10:00",
        f"/a/{token}/invite.ics",
        f"/a/{token}/cancel?confirm=yes",
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code in (200, 303), url
    clock.advance(hours=20)  # inside the late window too
    for url in urls:
        client.get(url)
    assert _snapshot(session) == before
    assert session.get(Appointment, appt.id).status == "booked"


def test_cancel_needs_the_confirmation_post(client, session, clinic):
    appt = book(session, DEC1_0915)
    page = client.get(f"/a/{appt.manage_token}/cancel")
    assert "Yes, cancel my appointment" in text_of(page)
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    response = client.post(f"/a/{appt.manage_token}/cancel", data={"csrf_token": token})
    assert response.status_code == 303
    session.rollback()
    assert session.get(Appointment, appt.id).status == "cancelled"
    assert "Appointment cancelled" in text_of(client.get(f"/a/{appt.manage_token}"))


def test_reschedule_moves_the_same_appointment(client, session, clinic):
    appt = book(session, DEC1_0915)
    token = csrf_from(client, f"/a/{appt.manage_token}/reschedule/confirm?start=2026-12-02T10:00")
    response = client.post(
        f"/a/{appt.manage_token}/reschedule/confirm",
        data={"csrf_token": token, "start": "2026-12-02T10:00"},
    )
    assert response.status_code == 303
    session.rollback()
    moved = session.get(Appointment, appt.id)
    assert moved.start_at == dt.datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    assert moved.ics_sequence == 1 and moved.status == "booked"
    assert "Wed 2 Dec, 10:00 AM PST" in text_of(client.get(f"/a/{appt.manage_token}"))


def test_late_cancel_window_shows_the_clinic_phone(client, session, clinic, clock):
    appt = book(session, DEC1_0915)
    clock.now = DEC1_0915 - dt.timedelta(hours=23)
    page = client.get(f"/a/{appt.manage_token}")
    html = page.get_data(as_text=True)
    assert "(415) 555-0100" in text_of(page)
    assert 'href="tel:+14155550100"' in html
    assert f"/a/{appt.manage_token}/cancel" not in html
    token = CSRF.search(client.get(f"/a/{appt.manage_token}/cancel").get_data(as_text=True))
    assert token is None  # no cancel form inside the window, only the phone number
    token = csrf_from(client, "/book/sf/infusion/details?start=2026-12-02T10:00")
    response = client.post(f"/a/{appt.manage_token}/cancel", data={"csrf_token": token})
    assert response.status_code == 409
    assert "(415) 555-0100" in text_of(response)
    session.rollback()
    assert session.get(Appointment, appt.id).status == "booked"
    # Moving is refused the same way: the reschedule pages lead back to the phone number.
    assert client.get(f"/a/{appt.manage_token}/reschedule").status_code == 303


@pytest.mark.parametrize(
    "token",
    [
        "A" * 43,  # the shape of a real token, but unknown
        "x",  # too short
        "z" * 300,  # too long
        "not a token!",
        "..%2F..%2Fetc",
        "%00",
    ],
)
def test_unknown_and_malformed_tokens_get_the_same_404(client, session, clinic, token):
    book(session, DEC1_0915)  # a real appointment exists
    reference = client.get("/a/" + "B" * 43)
    assert reference.status_code == 404
    for suffix in ("", "/cancel", "/reschedule", "/invite.ics"):
        response = client.get(f"/a/{token}{suffix}")
        assert response.status_code == 404, (token, suffix)
        assert response.get_data() == reference.get_data()
    response = client.post(f"/a/{token}/cancel", data={})
    assert response.status_code in (400, 404)


# --- CSRF, headers, limits -----------------------------------------------------------------------


def test_forms_without_a_csrf_token_are_refused(client, session, clinic):
    appt = book(session, DEC1_0915)
    attempts = [
        ("/book/sf/infusion/details", {"start": "2026-12-02T10:00", **PATIENT}),
        (f"/a/{appt.manage_token}/cancel", {}),
        (f"/a/{appt.manage_token}/reschedule/confirm", {"start": "2026-12-02T10:00"}),
        (f"/a/{appt.manage_token}/cancel", {"csrf_token": "forged"}),
    ]
    for url, data in attempts:
        response = client.post(url, data=data)
        assert response.status_code == 400, url
        assert "Please try again" in text_of(response)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Appointment)) == 1
    same = session.get(Appointment, appt.id)
    assert same.status == "booked" and same.start_at == DEC1_0915


def test_token_page_forms_work_over_https_without_a_referer(app, session, clinic):
    """Token pages send no Referer; their POSTs must still pass CSRF on HTTPS."""
    appt = book(session, DEC1_0915)
    client = app.test_client()
    page = client.get(f"/a/{appt.manage_token}/cancel", base_url="https://clinic.example")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    response = client.post(
        f"/a/{appt.manage_token}/cancel",
        data={"csrf_token": token},
        base_url="https://clinic.example",
    )
    assert response.status_code == 303
    session.rollback()
    assert session.get(Appointment, appt.id).status == "cancelled"


def test_security_headers(client, session, clinic):
    appt = book(session, DEC1_0915)
    for url in ("/", "/book/sf/infusion/2026-12-01", f"/a/{appt.manage_token}"):
        response = client.get(url)
        csp = response.headers["Content-Security-Policy"]
        script_src = re.search(r"script-src ([^;]+)", csp).group(1)
        assert "'unsafe-inline'" not in script_src and "'self'" in script_src
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script>" not in response.get_data(as_text=True)
        assert 'lang="en"' in response.get_data(as_text=True)
    assert client.get("/").headers["Referrer-Policy"] == "same-origin"
    manage = client.get(f"/a/{appt.manage_token}")
    assert manage.headers["Referrer-Policy"] == "no-referrer"
    assert manage.headers["Cache-Control"] == "no-store"
    assert client.get("/a/unknown").headers["Referrer-Policy"] == "no-referrer"


class TestRateLimits:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **app_config,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "PATIENT_TOKEN_RATELIMIT": "3 per minute",
            "PATIENT_BOOKING_RATELIMIT": "2 per minute",
        }

    def test_token_pages_are_rate_limited(self, client, clinic):
        codes = [client.get("/a/" + "C" * 43).status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        response = client.get("/a/" + "D" * 43)
        assert response.status_code == 429
        assert "Too many requests" in text_of(response)

    def test_booking_submissions_are_rate_limited(self, client, clinic):
        data = {"start": "2026-12-01T09:15", "name": "", "phone": "", "email": ""}
        codes = [client.post("/book/sf/infusion/details", data=data).status_code for _ in range(3)]
        assert codes == [422, 422, 429]
        # Reading the steps is limited separately (and more generously).
        assert client.get("/book/sf/infusion/details?start=2026-12-01T09:15").status_code == 200


def test_past_and_cancelled_appointments_offer_no_actions(client, session, clinic, clock):
    appt = book(session, DEC1_0915)
    clock.now = DEC1_0915 + dt.timedelta(hours=2)
    html = client.get(f"/a/{appt.manage_token}").get_data(as_text=True)
    assert "/cancel" not in html and "/reschedule" not in html
    session.execute(text("UPDATE appointments SET status='cancelled', active=false"))
    session.commit()
    page = text_of(client.get(f"/a/{appt.manage_token}"))
    assert "This appointment was cancelled" in page
    assert session.scalar(select(func.count()).select_from(Patient)) == 1


def test_a_double_submitted_form_books_once(client, session, clinic):
    page = client.get("/book/sf/infusion/details?start=2026-12-01T09:15").get_data(as_text=True)
    token = CSRF.search(page).group(1)
    submission = re.search(r'name="submission" value="([^"]+)"', page).group(1)
    data = {"csrf_token": token, "submission": submission, "start": "2026-12-01T09:15", **PATIENT}
    first = client.post("/book/sf/infusion/details", data=data)
    again = client.post("/book/sf/infusion/details", data=data)
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Appointment)) == 1
    # Without the form's key (another tab), the same person at the same time is refused.
    other = client.post("/book/sf/infusion/details", data={**data, "submission": "other-tab"})
    assert other.status_code == 422
    assert "You already have an appointment at that time" in text_of(other)


def test_choosing_no_alternative_keeps_the_alternatives_and_says_so(client, session):
    loc = make_location(session, slug="one", chairs=1)
    make_service(session, [loc], slug="infusion")
    session.commit()
    book(session, dt.datetime(2026, 12, 1, 18, 0, tzinfo=UTC), location="one")
    page = client.get("/book/one/infusion/details?start=2026-12-01T10:00")
    assert page.status_code == 409
    assert "no longer available" in text_of(page)
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    response = client.post(
        "/book/one/infusion/details",
        data={"csrf_token": token, "wanted": "2026-12-01T10:00", **PATIENT},
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert re.search(r'<fieldset[^>]*id="start"[^>]*aria-describedby="start-error"', html)
    assert 'id="start-error"' in html and "Choose one of the times." in html
    assert 'value="2026-12-01T11:00"' in html
    assert 'value="Robin Example"' in html


def test_reschedule_to_a_taken_time_offers_alternatives(client, session):
    loc = make_location(session, slug="one", chairs=1)
    make_service(session, [loc], slug="infusion")
    session.commit()
    mine = book(session, DEC1_0915, location="one")
    token = csrf_from(client, f"/a/{mine.manage_token}/reschedule/confirm?start=2026-12-02T10:00")
    book(session, dt.datetime(2026, 12, 2, 18, 0, tzinfo=UTC), location="one", n=2)
    response = client.post(
        f"/a/{mine.manage_token}/reschedule/confirm",
        data={"csrf_token": token, "start": "2026-12-02T10:00"},
    )
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "That time has just been taken" in text_of(response)
    offered = re.findall(r'name="start" id="start-\d+" value="([^"]+)"', html)
    assert "2026-12-02T11:00" in offered and "2026-12-02T10:00" not in offered
    assert "2026-12-01T09:15" not in offered  # the current time is not an alternative
    session.rollback()
    assert session.get(Appointment, mine.id).start_at == DEC1_0915


def test_times_are_formatted_for_people():
    from zoneinfo import ZoneInfo

    from scheduler.web.patient import duration, when

    la = ZoneInfo("America/Los_Angeles")
    assert when(dt.datetime(2026, 12, 1, 17, 0, tzinfo=UTC), la) == "Tue 1 Dec, 9:00 AM PST"
    assert when(dt.datetime(2027, 3, 15, 16, 0, tzinfo=UTC), la) == "Mon 15 Mar, 9:00 AM PDT"
    assert when(dt.datetime(2026, 12, 1, 20, 5, tzinfo=UTC), la) == "Tue 1 Dec, 12:05 PM PST"
    assert when(dt.datetime(2026, 12, 2, 8, 0, tzinfo=UTC), la) == "Wed 2 Dec, 12:00 AM PST"
    assert [duration(m) for m in (40, 60, 90, 240)] == [
        "40 minutes",
        "1 hour",
        "1 hour 30 minutes",
        "4 hours",
    ]
