"""The waitlist's pages on both databases: joining from the time and day pages (the booking
form's rules, consent to texts), one's place and leaving it, the offer page (book this time,
just taken, expired, unknown), and the staff list with its offer by hand.

One app and one clinic per database for the module (tests/waitlist_support.py: one chair whose
only free hour on DAY, 10:00, is held by a visit); each test uses patients of its own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from config import TestConfig
from scheduler import create_app, jobs
from scheduler.extensions import db
from scheduler.models import WaitlistEntry, WaitlistOffer
from scheduler.services import booking
from tests.conftest import DEFAULT_NOW, FixedClock, _clean
from tests.factories import make_location, make_service, make_staff
from tests.waitlist_support import DAY, SETTINGS, at, make_world, phone
from tests.web.staff_support import PASSWORD, csrf_token

CLOSED = "shut"  # a location with no opening hours: nothing is ever free


@dataclass
class Site:
    app: Flask
    clock: FixedClock
    visit_id: int  # the visit holding DAY's 10:00
    address: str
    staff: dict[str, str]  # role -> e-mail


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    _clean(url)
    clock = FixedClock(DEFAULT_NOW)
    app = create_app(
        TestConfig(url, CLOCK=clock, PUBLIC_BASE_URL=SETTINGS.public_base_url, CLINIC_PHONE="")
    )
    with app.app_context():
        session = db.session
        world = make_world(session, clock.now)
        shut = make_location(session, slug=CLOSED, name="Closed Clinic", weekdays=())
        world.infusion.locations.append(shut)
        make_service(session, [world.location], slug="cleared", requires_clearance=True)
        ride = make_service(session, [world.location], slug="ride", name="Ride infusion")
        ride.escort_required = True
        other = make_location(session, slug="other", name="Other Clinic")
        staff = {}
        for role, where in (("manager", world.location), ("front_desk", world.location)):
            user, _ = make_staff(session, role=role, locations=(where,), email=f"{role}@x.example")
            staff[role] = user.email
        user, _ = make_staff(session, role="nurse", locations=(other,), email="nurse@x.example")
        staff["elsewhere"] = user.email
        built = Site(app, clock, world.visits[0].id, world.location.address, staff)
        session.commit()
        db.session.remove()  # no transaction left open: on SQLite it would hold the write lock
    yield built
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(site: Site) -> Any:
    return site.app.test_client()


def text_of(response: Any) -> str:
    return unescape(" ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split()))


def form_token(client: Any, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code)
    return csrf_token(page.get_data(as_text=True))


JOIN = f"/book/wl/infusion/waitlist?day={DAY}"


def details(n: int, **changes: str) -> dict[str, str]:
    values = {
        "earliest": DAY.isoformat(),
        "latest": (DAY + dt.timedelta(days=2)).isoformat(),
        "times": "any",
        "name": f"Page Person{n}",
        "date_of_birth": "1980-04-02",
        "phone": phone(n),
        "email": f"page{n}@example.com",
        "sms_consent": "1",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v != ""}


def join_page(client: Any, n: int, **changes: str) -> Any:
    data = details(n, **changes)
    data["csrf_token"] = form_token(client, JOIN)
    return client.post("/book/wl/infusion/waitlist", data=data)


def query(site: Site, statement: Any) -> list[Any]:
    with site.app.app_context():
        rows = list(db.session.execute(statement).all())
        db.session.rollback()
        return rows


def entry_state(site: Site, n: int) -> tuple[str, dt.date, dt.date, str]:
    from scheduler.models import Patient

    rows = query(
        site,
        select(
            WaitlistEntry.status, WaitlistEntry.earliest, WaitlistEntry.latest, WaitlistEntry.times
        )
        .join(Patient, Patient.id == WaitlistEntry.patient_id)
        .where(Patient.phone == phone(n)),
    )
    (row,) = rows
    return tuple(row)  # type: ignore[return-value]


def offer_tokens(site: Site) -> dict[str, str]:
    """The offers' link tokens by the patient's phone."""
    return dict(query(site, select(WaitlistOffer.to_phone, WaitlistOffer.token)))


# --- joining ----------------------------------------------------------------------------------------


def test_the_time_page_offers_the_waitlist_when_nothing_suits(site, client):
    # DAY's only hour is booked: no times, and the notice leads to the waitlist for that day.
    page = client.get(f"/book/wl/infusion/{DAY}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "There are no free times on this day." in text_of(page)
    assert f'href="/book/wl/infusion/waitlist?day={DAY}">join the waitlist</a>' in html
    # A day with times still offers it, under them.
    later = client.get(f"/book/wl/infusion/{DAY + dt.timedelta(days=1)}").get_data(as_text=True)
    assert 'class="button time"' in later
    assert re.search(
        r'id="waitlist-link">Nothing suitable\? <a href="[^"]+">Join the waitlist', later
    )
    # The days page offers it only when the month has nothing free.
    assert 'id="waitlist-link"' not in client.get("/book/wl/infusion").get_data(as_text=True)
    shut = client.get(f"/book/{CLOSED}/infusion").get_data(as_text=True)
    assert f'id="waitlist-link">Nothing free? <a href="/book/{CLOSED}/infusion/waitlist">' in shut


def test_the_join_form_starts_on_the_chosen_day_for_two_weeks(site, client):
    page = client.get(JOIN)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="earliest" type="date" value="2026-12-02"' in html
    assert 'name="latest" type="date" value="2026-12-16"' in html
    assert 'id="times-any" value="any" checked' in html
    assert "each offer lasts 30 minutes" in text_of(page)
    # A day in the past starts today; an unknown service or location is the 404 page.
    assert 'value="2026-11-30"' in client.get(f"{JOIN[:-10]}2020-01-01").get_data(as_text=True)
    assert 'id="clearance-note"' not in html
    # A service that needs a prescriber's clearance says that offers wait for one.
    assert "needs a prescriber's clearance first" in text_of(
        client.get("/book/wl/cleared/waitlist")
    )
    assert client.get("/book/wl/nothing/waitlist").status_code == 404
    assert client.get("/book/nowhere/infusion/waitlist").status_code == 404


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        (
            {"name": "", "phone": "", "email": "", "date_of_birth": "", "sms_consent": ""},
            ["name", "phone", "email", "date_of_birth", "sms_consent"],
        ),
        ({"phone": "12"}, ["phone"]),
        ({"email": "not-an-address"}, ["email"]),
        ({"date_of_birth": "2020-01-01"}, ["date_of_birth"]),  # under the minimum age
        ({"date_of_birth": "1st April"}, ["date_of_birth"]),
        ({"sms_consent": ""}, ["sms_consent"]),
        ({"earliest": "", "latest": "soon"}, ["earliest", "latest"]),
        ({"latest": "2026-12-01"}, ["latest"]),  # before the earliest
        ({"earliest": "2020-01-01", "latest": "2020-01-02"}, ["latest"]),  # in the past
        ({"earliest": "2027-06-01", "latest": "2027-06-02"}, ["earliest"]),  # past the horizon
        ({"latest": "2199-12-31"}, ["latest"]),  # refused, not shortened to the horizon
        ({"times": "evenings"}, ["times"]),
        ({"earliest": "99999-01-01"}, ["earliest"]),
    ],
    ids=[
        "empty",
        "phone",
        "email",
        "too-young",
        "birth-date-unreadable",
        "no-consent",
        "dates-unreadable",
        "latest-before-earliest",
        "past",
        "past-horizon",
        "latest-past-horizon",
        "times",
        "year-out-of-range",
    ],
)
def test_the_join_form_names_every_field_to_correct(site, client, changes, named):
    r = join_page(client, 90, **changes)
    assert r.status_code == 422, text_of(r)[:400]
    html = r.get_data(as_text=True)
    assert 'class="error-summary" role="alert"' in html
    listed = re.findall(r'<li><a href="#([a-z_]+)">', html)
    assert listed == named
    for name in named:
        assert f'id="{name}-error"' in html
    # What was typed stays in the form.
    if "name" not in named:
        assert 'value="Page Person90"' in html
    with pytest.raises(ValueError):
        entry_state(site, 90)


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("0001-01-01", "Is before 1900."),  # a date, if not a believable one
        ("1899-12-31", "Is before 1900."),
        ("1980-4-2", "Enter your date of birth, like 1980-04-02."),
    ],
    ids=["year-one", "before-1900", "unpadded"],
)
def test_the_join_form_reads_the_birth_date_by_the_booking_rule(site, client, typed, said):
    r = join_page(client, 93, date_of_birth=typed)
    assert r.status_code == 422
    assert re.findall(r'<li><a href="#([a-z_]+)">', r.get_data(as_text=True)) == ["date_of_birth"]
    assert said in text_of(r)


def test_a_latest_past_the_horizon_says_the_last_bookable_day(site, client):
    r = join_page(client, 91, latest="2199-12-31")
    assert r.status_code == 422
    assert "The latest date is at most 2027-01-29, the last day bookable." in text_of(r)


def test_the_join_form_asks_for_the_escort_of_an_escort_required_service(site, client):
    url = f"/book/wl/ride/waitlist?day={DAY}"
    assert 'name="escort_name"' in client.get(url).get_data(as_text=True)
    assert 'name="escort_name"' not in client.get(JOIN).get_data(as_text=True)
    data = {**details(92), "csrf_token": form_token(client, url)}
    r = client.post("/book/wl/ride/waitlist", data=data)
    assert r.status_code == 422
    assert re.findall(r'<li><a href="#([a-z_]+)">', r.get_data(as_text=True)) == ["escort_name"]
    data.update(escort_name="Riley Ride", escort_phone="12")
    r = client.post("/book/wl/ride/waitlist", data=data)
    assert r.status_code == 422 and 'id="escort_phone-error"' in r.get_data(as_text=True)
    data.update(escort_phone="(415) 555-7777")
    assert client.post("/book/wl/ride/waitlist", data=data).status_code == 303
    rows = query(
        site,
        select(WaitlistEntry.escort_name, WaitlistEntry.escort_phone).where(
            WaitlistEntry.service.has(slug="ride")
        ),
    )
    assert [tuple(r) for r in rows] == [("Riley Ride", "+14155557777")]


def test_joining_shows_how_offers_work_and_a_private_link_to_leave(site, client):
    r = join_page(client, 11, times="morning")
    assert r.status_code == 303
    place = r.headers["Location"]
    assert re.fullmatch(r"/waitlist/[\w-]{40,}", place)
    assert entry_state(site, 11) == ("active", DAY, DAY + dt.timedelta(days=2), "morning")
    page = client.get(place)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    words = text_of(page)
    assert "You're on the waitlist" in words
    assert "the first to claim the time gets it" in words
    assert "An offer lasts 30 minutes" in words
    assert "Wednesday 2 December 2026 to Friday 4 December 2026" in words
    assert "Mornings (starting before 12:00 noon)" in words
    assert "(415) 556-0011" in words
    # Joining again for the same service changes the dates, keeping the place in the queue.
    again = join_page(client, 11, latest=(DAY + dt.timedelta(days=5)).isoformat())
    assert again.status_code == 303 and again.headers["Location"] == place
    assert entry_state(site, 11)[2] == DAY + dt.timedelta(days=5)
    # Reloading the page later shows the place without the banner.
    assert "You're on the waitlist" in text_of(client.get(place))
    assert "You're on the waitlist" not in text_of(client.get(place))


def test_leaving_the_waitlist_asks_first_and_needs_the_form_token(site, client):
    place = join_page(client, 12).headers["Location"]
    ask = client.get(f"{place}/leave")
    assert ask.status_code == 200 and "Leave the waitlist?" in text_of(ask)
    # A POST without the page's CSRF token changes nothing.
    refused = client.post(f"{place}/leave")
    assert refused.status_code == 400
    assert entry_state(site, 12)[0] == "active"
    done = client.post(
        f"{place}/leave", data={"csrf_token": csrf_token(ask.get_data(as_text=True))}
    )
    assert done.status_code == 303 and done.headers["Location"] == place
    assert entry_state(site, 12)[0] == "left"
    page = client.get(place)
    assert "You have left the waitlist" in text_of(page)
    assert "Leave the waitlist" not in text_of(page).replace("You have left the waitlist", "")
    # Asking to leave again goes back to the page.
    assert client.get(f"{place}/leave").status_code == 303


@pytest.mark.parametrize(
    "path",
    [
        "/waitlist/not-a-token",
        "/waitlist/not-a-token/leave",
        "/waitlist/offers/not-a-token",
        "/waitlist/offers/" + "x" * 500,
        "/waitlist/offers/abc/claim",
        "/waitlist/offers/",
    ],
)
def test_unknown_tokens_are_the_not_found_page(site, client, path):
    for method in ("GET", "POST"):
        r = client.open(path, method=method, data={"csrf_token": form_token(client, JOIN)})
        assert r.status_code == 404, (method, path)
        assert "We could not find that page" in text_of(r)


# --- offers -----------------------------------------------------------------------------------------


def test_an_offer_is_booked_by_the_first_to_claim_and_just_taken_for_the_next(site, client):
    """Two wait for DAY's 10:00; its visit is cancelled; the worker texts both."""
    app, clock = site.app, site.clock
    for n in (21, 22):
        assert (
            join_page(client, n, earliest=DAY.isoformat(), latest=DAY.isoformat()).status_code
            == 303
        )
    with app.app_context():
        visit = booking.get_appointment(db.session, site.visit_id)
        booking.cancel(db.session, visit, now=clock.now, settings=SETTINGS, by_staff=True)
        db.session.commit()
    result = jobs.waitlist_once(app, clock.now)  # no Twilio configured: the log sender
    assert result.sent >= 2
    tokens = offer_tokens(site)
    first, second = f"/waitlist/offers/{tokens[phone(21)]}", f"/waitlist/offers/{tokens[phone(22)]}"

    page = client.get(first)
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    words = text_of(page)
    assert "A time has opened up" in words
    assert "Wed 2 Dec, 10:00 AM PST" in words and "Wednesday 2 December 2026" in words
    assert "Mission Clinic" in words and site.address in words
    assert "1 hour" in words
    assert "This offer lasts until Mon 30 Nov, 8:30 AM PST" in words
    html = page.get_data(as_text=True)
    assert f'<form method="post" action="{first}">' in html

    # The button needs the page's CSRF token.
    assert client.post(first).status_code == 400
    booked = client.post(first, data={"csrf_token": csrf_token(html)})
    assert booked.status_code == 303
    assert booked.headers["Location"].startswith("/a/")
    confirmation = text_of(client.get(booked.headers["Location"]))
    assert "You're booked" in confirmation and "page21@example.com" in confirmation
    assert "Wed 2 Dec, 10:00 AM PST" in confirmation
    # The link again (or a second click) leads to the visit.
    assert client.get(first).headers["Location"] == booked.headers["Location"]
    again = client.post(first, data={"csrf_token": csrf_token(html)})
    assert again.headers["Location"] == booked.headers["Location"]
    assert entry_state(site, 21)[0] == "booked"

    # The other patient: just taken, and still on the list.
    page = client.get(second)
    assert page.status_code == 200
    assert "Sorry, this time has just been taken" in text_of(page)
    assert "You stay on the waitlist" in text_of(page)
    late = client.post(second, data={"csrf_token": csrf_token(html)})
    assert late.status_code == 409
    assert "Sorry, this time has just been taken" in text_of(late)
    assert "You stay on the waitlist" in text_of(late)
    assert entry_state(site, 22)[0] == "active"


def _sign_in(client: Any, email: str) -> None:
    page = client.get("/staff/sign-in")
    data = {
        "email": email,
        "password": PASSWORD,
        "csrf_token": csrf_token(page.get_data(as_text=True)),
    }
    assert client.post("/staff/sign-in", data=data).status_code == 302


def test_staff_see_the_list_in_join_order_and_offer_a_time_by_hand_that_expires(site, client):
    app, clock = site.app, site.clock
    for n in (31, 32):
        join_page(client, n, times="afternoon")
    staff = app.test_client()
    _sign_in(staff, site.staff["front_desk"])
    page = staff.get("/staff/wl/waitlist")
    assert page.status_code == 200
    words = text_of(page)
    assert words.index("Page Person31") < words.index("Page Person32")
    assert "Afternoons" in words and "Wed 02 Dec – Fri 04 Dec" in words
    assert "Ketamine infusion" in words
    # Linked from the calendar and the navigation.
    calendar = staff.get(f"/staff/wl/calendar?date={DAY}").get_data(as_text=True)
    assert calendar.count('href="/staff/wl/waitlist"') >= 2

    entry_id = re.search(
        r'href="/staff/wl/waitlist/(\d+)/offer"[^>]*>Offer a time<span class="visually-hidden"> to Page Person31',
        page.get_data(as_text=True),
    )
    assert entry_id, page.get_data(as_text=True)
    form_url = f"/staff/wl/waitlist/{entry_id.group(1)}/offer"
    next_day = DAY + dt.timedelta(days=1)
    form = staff.get(f"{form_url}?date={next_day}")
    assert form.status_code == 200
    html = form.get_data(as_text=True)
    start = at(next_day, 13).isoformat()
    assert f'value="{start}"' in html
    assert "outside their days or times" in text_of(form)  # the mornings on that day
    token = csrf_token(html)
    assert staff.post(form_url, data={"start": at(next_day, 13).isoformat()}).status_code == 400

    bad = staff.post(
        form_url, data={"csrf_token": token, "start": "tomorrow", "date": str(next_day)}
    )
    assert bad.status_code == 422 and "Choose one of the free times." in text_of(bad)
    busy = staff.post(form_url, data={"csrf_token": token, "start": at(next_day, 7).isoformat()})
    assert busy.status_code == 409 and "not free" in text_of(busy)

    done = staff.post(form_url, data={"csrf_token": token, "start": start, "date": str(next_day)})
    assert done.status_code == 303 and done.headers["Location"] == "/staff/wl/waitlist"
    listing = text_of(staff.get("/staff/wl/waitlist"))
    assert "Page Person31 will be texted the offer of Thu 03 Dec 13:00" in listing
    assert "Thu 03 Dec 13:00: to be texted (by hand)" in listing
    # The same start again is refused, and marked on the form.
    assert "offered before" in text_of(staff.get(f"{form_url}?date={next_day}"))
    again = staff.post(form_url, data={"csrf_token": token, "start": start})
    assert again.status_code == 409 and "already offered" in text_of(again)

    # The worker texts it; the patient waits too long: expired, and still on the list.
    jobs.waitlist_once(app, clock.now)
    link = f"/waitlist/offers/{offer_tokens(site)[phone(31)]}"
    assert "A time has opened up" in text_of(client.get(link))
    saved = clock.now
    try:
        clock.advance(minutes=31)
        page = client.get(link)
        assert page.status_code == 200 and "This offer has expired" in text_of(page)
        late = client.post(link, data={"csrf_token": form_token(client, JOIN)})
        assert late.status_code == 409
        assert "This offer has expired" in text_of(late)
        assert "You stay on the waitlist" in text_of(late)
    finally:
        clock.now = saved
    assert entry_state(site, 31)[0] == "active"


def test_the_staff_list_is_only_for_the_locations_own_staff(site, client):
    elsewhere = site.app.test_client()
    _sign_in(elsewhere, site.staff["elsewhere"])
    assert elsewhere.get("/staff/wl/waitlist").status_code == 403
    assert elsewhere.get("/staff/wl/waitlist/1/offer").status_code == 403
    manager = site.app.test_client()
    _sign_in(manager, site.staff["manager"])
    assert manager.get("/staff/wl/waitlist").status_code == 200
    assert manager.get("/staff/wl/waitlist/999999/offer").status_code == 404
    assert manager.get("/staff/wl/waitlist/99999999999/offer").status_code == 404
    ((entry_id,),) = query(site, select(WaitlistEntry.id).limit(1))
    assert manager.get(f"/staff/wl/waitlist/{entry_id}/offer?date=2026-13-01").status_code == 400
    assert elsewhere.get(f"/staff/wl/waitlist/{entry_id}/offer").status_code == 403
    # Without signing in: to the sign-in page.
    assert client.get("/staff/wl/waitlist").status_code == 302


# --- courses ----------------------------------------------------------------------------------------


def test_the_join_form_offers_the_services_courses_and_a_course_offer_leads_to_the_course(
    site, client
):
    from scheduler.models import Course, Patient, StaffUser
    from scheduler.models import WaitlistEntry as Entry
    from scheduler.services import courses, waitlist

    app, clock = site.app, site.clock
    assert 'name="course"' not in client.get(JOIN).get_data(as_text=True)  # none offered yet
    with app.app_context():
        rules = {"service": "infusion", "sessions": 2, "min_gap_hours": 24, "max_gap_hours": 72}
        courses.save_template(
            db.session, None, {**rules, "slug": "pair", "name": "Two sessions", "within_days": 7}
        )
        db.session.commit()
    page = client.get(JOIN)
    html = page.get_data(as_text=True)
    assert 'id="course-single" value="" checked' in html
    assert 'id="course-pair" value="pair"' in html
    assert "To start the course Two sessions" in text_of(page)
    assert "2 sessions, 24 hours to 3 days apart, within 7 days" in text_of(page)
    # Not one of the courses: named; the single visit stays the default.
    bad = join_page(client, 41, course="nonesuch")
    assert bad.status_code == 422 and 'id="course-error"' in bad.get_data(as_text=True)
    assert re.findall(r'<li><a href="#([a-z_]+)">', bad.get_data(as_text=True)) == ["course"]

    joined = join_page(client, 41, course="pair", times="afternoon")
    assert joined.status_code == 303
    ((entry_id, slug),) = query(
        site,
        select(Entry.id, Entry.course_slug)
        .join(Patient, Patient.id == Entry.patient_id)
        .where(Patient.phone == phone(41)),
    )
    assert slug == "pair"

    # Offered (by hand) Thursday 14:00; claiming books the course and lands on its page.
    thursday = DAY + dt.timedelta(days=1)
    with app.app_context():
        entry = db.session.get(Entry, entry_id)
        staff = db.session.scalars(
            select(StaffUser).where(StaffUser.email == site.staff["front_desk"])
        ).one()
        waitlist.offer_by_hand(
            db.session, entry, at(thursday, 14), now=clock.now, settings=SETTINGS, staff=staff
        )
        db.session.commit()
    jobs.waitlist_once(app, clock.now)
    link = f"/waitlist/offers/{offer_tokens(site)[phone(41)]}"
    page = client.get(link)
    assert page.status_code == 200 and "A time has opened up" in text_of(page)
    booked = client.post(link, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert booked.status_code == 303, text_of(booked)[:400]
    ((course_token,),) = query(
        site,
        select(Course.manage_token)
        .join(Patient, Patient.id == Course.patient_id)
        .where(Patient.phone == phone(41)),
    )
    assert booked.headers["Location"] == f"/a/{course_token}"
    course_page = client.get(booked.headers["Location"])
    assert course_page.status_code == 200 and "Two sessions" in text_of(course_page)
    # The link again leads to the course too.
    assert client.get(link).headers["Location"] == f"/a/{course_token}"
