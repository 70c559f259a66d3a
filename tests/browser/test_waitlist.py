"""The waitlist in real Chromium: a patient on a 360 px phone finds nothing on the day they want,
joins the waitlist from the time page, a visit is cancelled, the worker's pass texts the offer
(the log sender, in-process), and the patient books it from the offer page by keyboard; another
patient sees "just taken", then "expired". Staff see the list. axe-core checks every page.

Screenshots go to tests/output/patient-waitlist-*.png and waitlist-staff-*.png for reviewers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scheduler import jobs
from scheduler.models import Patient, WaitlistEntry, WaitlistOffer
from scheduler.services import booking
from tests.browser.test_front_desk import Desk
from tests.browser.test_patient_booking import Steps
from tests.factories import make_staff
from tests.waitlist_support import DAY, SETTINGS, join, make_world, phone
from tests.web.staff_support import PASSWORD

pytestmark = pytest.mark.browser
ADDRESS = "500 Mission St, San Francisco, CA 94105"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "PUBLIC_BASE_URL": SETTINGS.public_base_url}


@pytest.fixture
def world(session: Any, clock: Any) -> dict[str, Any]:
    built = make_world(session, clock.now)
    built.location.address = ADDRESS
    make_staff(session, role="front_desk", locations=(built.location,), email="desk@x.example")
    values = {"visit": built.visits[0].id}
    session.commit()
    return values


@pytest.fixture
def phone_page(browser: Any, output_dir: Path) -> Iterator[Desk]:
    """A 360 x 740 page; CSP is bypassed only so that the test can inject axe-core."""
    desk = Desk(browser, "", output_dir, width=360, height=740)
    yield desk
    desk.context.close()


def offer_token(session: Any, n: int) -> str:
    """The link token of patient `n`'s offer (the read's transaction ends at once: on SQLite
    it would hold the write lock the live server needs)."""
    session.rollback()
    token = session.scalars(
        select(WaitlistOffer.token)
        .join(WaitlistEntry, WaitlistEntry.id == WaitlistOffer.entry_id)
        .join(Patient, Patient.id == WaitlistEntry.patient_id)
        .where(Patient.phone == phone(n))
    ).one()
    session.rollback()
    return str(token)


def test_join_the_waitlist_at_360_px_then_book_the_offer(
    phone_page,
    live_server,
    live_app,
    session,
    clock,
    world,
    axe_source,  # noqa: F811
):
    base, page = live_server.url, phone_page.page
    steps = Steps(page, phone_page.output_dir, "waitlist")
    found: dict[str, list[str]] = {}

    # Nothing on the day wanted: the time page leads to the waitlist.
    page.goto(f"{base}/book/wl/infusion/{DAY}")
    assert page.viewport_size["width"] == 360
    assert "There are no free times on this day." in page.inner_text("main")
    found["times"] = phone_page.axe(axe_source)
    steps.shot("times")
    page.get_by_role("link", name="join the waitlist").click()
    page.get_by_role("heading", name="Join the waitlist").wait_for()
    assert page.input_value("#earliest") == DAY.isoformat()
    found["join"] = phone_page.axe(axe_source)
    steps.shot("join")

    # Sent empty: every field to correct is named and tied to its input.
    page.get_by_role("button", name="Join the waitlist").click()
    page.get_by_role("alert").wait_for()
    assert "Tick the box" in page.inner_text("#sms_consent-error")
    assert page.get_attribute("#name", "aria-invalid") == "true"
    found["join (errors)"] = phone_page.axe(axe_source)
    steps.shot("join-errors")

    # By keyboard: the time of day with the arrow keys, then the details.
    page.focus("#times-any")
    page.keyboard.press("ArrowDown")
    assert page.is_checked("#times-morning")
    page.get_by_label("Full name").fill("Robin Example")
    page.get_by_label("Date of birth").fill("1980-04-02")
    page.get_by_label("Mobile number").fill("(415) 556-0001")
    page.get_by_label("E-mail address").fill("robin@example.com")
    page.get_by_label("Text me offers of freed times").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Join the waitlist"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="You're on the waitlist").wait_for()
    assert "the first to claim the time gets it" in page.inner_text("main")
    found["on the waitlist"] = phone_page.axe(axe_source)
    steps.shot("joined")
    page.get_by_role("link", name="Leave the waitlist").click()
    page.get_by_role("heading", name="Leave the waitlist?").wait_for()
    found["leave?"] = phone_page.axe(axe_source)
    steps.shot("leave")
    page.go_back()

    # Another patient waits too; the visit is cancelled and the worker texts them both.
    join(session, clock.now, 2)
    booking.cancel(
        session,
        booking.get_appointment(session, world["visit"]),
        now=clock.now,
        settings=SETTINGS,
        by_staff=True,
    )
    session.commit()
    assert jobs.waitlist_once(live_app, clock.now).sent == 2
    mine, theirs = offer_token(session, 1), offer_token(session, 2)

    page.goto(f"{base}/waitlist/offers/{mine}")
    page.get_by_role("heading", name="A time has opened up").wait_for()
    main = page.inner_text("main")
    assert "Wed 2 Dec, 10:00 AM PST" in main and ADDRESS in main and "1 hour" in main
    assert "This offer lasts until Mon 30 Nov, 8:30 AM PST" in main
    found["offer"] = phone_page.axe(axe_source)
    steps.shot("offer")
    # Book it by keyboard: Tab from the top of the page reaches the button.
    page.focus("body")
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Book this time":
            break
    else:
        raise AssertionError("the button cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="You're booked").wait_for()
    assert "Wed 2 Dec, 10:00 AM PST" in page.inner_text("main")
    found["booked"] = phone_page.axe(axe_source)
    steps.shot("booked")

    # The other patient was a moment too late; later still, the offer has expired.
    page.goto(f"{base}/waitlist/offers/{theirs}")
    page.get_by_role("heading", name="Sorry, this time has just been taken").wait_for()
    assert "You stay on the waitlist" in page.inner_text("main")
    found["taken"] = phone_page.axe(axe_source)
    steps.shot("taken")
    clock.advance(minutes=31)
    page.goto(f"{base}/waitlist/offers/{theirs}")
    page.get_by_role("heading", name="This offer has expired").wait_for()
    found["expired"] = phone_page.axe(axe_source)
    steps.shot("expired")
    page.goto(f"{base}/waitlist/offers/not-a-real-token")
    page.get_by_role("heading", name="We could not find that page").wait_for()
    found["unknown offer"] = phone_page.axe(axe_source)

    # Staff: the list and the offer-by-hand form (a desktop window).
    desk = Desk(page.context.browser, base, phone_page.output_dir)
    try:
        desk.page.goto(f"{base}/staff/sign-in")
        desk.page.get_by_label("E-mail").fill("desk@x.example")
        desk.page.get_by_label("Password").fill(PASSWORD)
        desk.page.get_by_role("button", name="Sign in").click()
        desk.page.wait_for_url(f"{base}/staff/")
        desk.page.goto(f"{base}/staff/wl/waitlist")
        assert "Waiting Person2" in desk.page.inner_text("#waitlist")
        found["staff waitlist"] = desk.axe(axe_source)
        desk.page.screenshot(path=str(phone_page.output_dir / "waitlist-staff-list.png"))
        desk.page.get_by_role("link", name="Offer a time to Waiting Person2").click()
        desk.page.get_by_role("link", name="Next day →").click()  # DAY's hour is booked now
        desk.page.locator("#offer").wait_for()
        found["staff offer form"] = desk.axe(axe_source)
        desk.page.screenshot(path=str(phone_page.output_dir / "waitlist-staff-offer.png"))
        assert desk.errors == []
    finally:
        desk.context.close()
    assert {k: v for k, v in found.items() if v} == {}
