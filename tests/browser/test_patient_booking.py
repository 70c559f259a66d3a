"""The patient pages in real Chromium at 360 px: book, cancel, reschedule, keyboard, races, zones.

Every step writes a screenshot to tests/output/ (patient-*.png) for reviewers.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import Appointment, Service
from scheduler.services import booking
from scheduler.services.demo import seed_demo
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.conftest import DEFAULT_NOW
from tests.factories import HASHER, make_location, make_service
from tests.test_staffing_support import rota
from tests.web.staff_support import make_clinic

pytestmark = pytest.mark.browser
UTC = dt.UTC
NAME, PHONE, EMAIL = "Robin Example", "(415) 555-0123", "robin@example.com"

# WCAG 2 contrast of every visible piece of text against its effective background colour.
LOW_CONTRAST = """() => {
  const rgba = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    }).reduce((acc, v, i) => acc + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => {
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const c = rgba(getComputedStyle(node).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || el.closest(".visually-hidden, .skip")) continue;
    const fg = lum(rgba(style.color).slice(0, 3)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) failures.push(`${node.textContent.trim().slice(0, 40)}: ${ratio.toFixed(2)}`);
  }
  return failures;
}"""


@pytest.fixture
def demo(session: Any) -> None:
    seed_demo(session, HASHER, DEFAULT_NOW)
    # These walks are about the steps, not clearance (test_patient_clearance.py has that).
    for service in session.scalars(select(Service)):
        service.requires_clearance = False
    session.commit()


class Steps:
    """Screenshots named by test and step; also checks each page fits 360 px and logs no errors."""

    def __init__(self, page: Any, output_dir: Path, name: str) -> None:
        self.page, self.output_dir, self.name, self.n = page, output_dir, name, 0
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _console(self, msg: Any) -> None:
        # A 409/422 answer to a form is expected; CSP refusals and script errors are not.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(msg.text)

    def shot(self, label: str) -> None:
        self.n += 1
        self.page.screenshot(
            path=str(self.output_dir / f"patient-{self.name}-{self.n:02d}-{label}.png"),
            full_page=True,
        )
        width = self.page.evaluate("document.documentElement.scrollWidth")
        viewport = self.page.viewport_size["width"]
        assert width <= viewport, f"{label}: page is {width}px wide in a {viewport}px viewport"
        assert self.errors == [], self.errors  # CSP violations show up here
        assert self.page.evaluate(LOW_CONTRAST) == [], f"{label}: text below WCAG AA contrast"


def appointments(session: Any) -> list[SimpleNamespace]:
    """Plain copies of the appointments: the read transaction ends at once (SQLite's write lock
    is taken by every transaction here, and the live server needs it)."""
    session.rollback()
    try:
        return [
            SimpleNamespace(
                id=a.id,
                start_at=a.start_at,
                status=a.status,
                manage_token=a.manage_token,
                note=a.note,
                patient=SimpleNamespace(
                    name=a.patient.name, email=a.patient.email, sms_consent=a.patient.sms_consent
                ),
            )
            for a in session.scalars(select(Appointment).order_by(Appointment.id))
        ]
    finally:
        session.rollback()


def fill_details(page: Any) -> None:
    page.get_by_label("Full name").fill(NAME)
    page.get_by_label("Mobile number").fill(PHONE)
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Date of birth").fill("1980-04-02")
    page.get_by_label("Text me reminders before my appointment").check()
    if page.locator("#escort").count():  # services that need someone to take the patient home
        page.get_by_label("Escort's name").fill("Sam Driver")
        page.get_by_label("Escort's mobile").fill("(415) 555-0188")


def test_book_an_infusion_end_to_end_then_cancel_it(page, live_server, session, demo, output_dir):
    steps = Steps(page, output_dir, "book")
    page.goto(live_server.url + "/")
    assert page.evaluate("document.documentElement.lang") == "en"
    steps.shot("location")
    page.get_by_role("link", name="San Francisco – Mission").click()
    steps.shot("service")
    assert page.get_by_text("You will need someone to drive you home").first.is_visible()
    page.get_by_role("link", name="Infusion (40 minutes)").click()
    assert page.locator("#first-free").inner_text().startswith("First free: ")
    assert page.locator("#first-free a").is_visible()
    steps.shot("calendar-november")
    page.get_by_role("link", name="Later month").click()
    steps.shot("calendar-december")
    # Sunday is closed in the demo clinic: no link for it.
    assert page.get_by_role("link", name=re.compile("^Sunday 6 December")).count() == 0
    page.get_by_role("link", name=re.compile("^Tuesday 1 December 2026")).click()
    page.get_by_role("heading", name="Afternoon").wait_for()
    assert "Times are local to San Francisco – Mission (PST)" in page.inner_text("#zone-note")
    steps.shot("times")
    assert (
        page.get_by_role("link", name="Tue 1 Dec, 9:00 AM, leave by about 9:50 AM PST").count() == 1
    )
    page.get_by_role("link", name="Tue 1 Dec, 9:00 AM,").click()
    assert "Tue 1 Dec, 9:00 AM PST" in page.inner_text("#chosen")
    steps.shot("details")
    fill_details(page)
    page.get_by_label("Anything we should know?").fill("I use a wheelchair.")
    steps.shot("details-filled")
    page.get_by_role("button", name="Book this appointment").click()
    page.get_by_role("heading", name="You're booked").wait_for()
    steps.shot("confirmation")

    (appt,) = appointments(session)
    assert appt.start_at == dt.datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    assert appt.status == "booked" and appt.patient.sms_consent is True
    assert page.url.endswith(f"/a/{appt.manage_token}")
    body = page.inner_text("main")
    assert "Tue 1 Dec, 9:00 AM PST – leave by about 9:50 AM PST (recovery included)" in body
    assert "2100 Mission St, San Francisco, CA 94110" in body
    ics = page.get_by_role("link", name="Download calendar file (.ics)")
    assert ics.get_attribute("href") == f"/a/{appt.manage_token}/invite.ics"
    assert ics.get_attribute("download") == "appointment.ics"
    invite = page.request.get(live_server.url + ics.get_attribute("href"))
    assert invite.headers["content-type"].startswith("text/calendar")
    assert "attachment" in invite.headers["content-disposition"]
    assert b"BEGIN:VEVENT" in invite.body() and b"America/Los_Angeles" in invite.body()
    gcal = page.get_by_role("link", name=re.compile("Add to Google Calendar")).get_attribute("href")
    assert gcal.startswith("https://calendar.google.com/calendar/render?action=TEMPLATE")
    assert "20261201T170000Z%2F20261201T174000Z" in gcal
    assert "Infusion" not in gcal  # discreet title

    page.get_by_role("link", name="Cancel appointment").click()
    page.get_by_role("heading", name="Cancel your appointment?").wait_for()
    steps.shot("cancel-confirm")
    assert appointments(session)[0].status == "booked"  # the GET changed nothing
    page.get_by_role("button", name="Yes, cancel my appointment").click()
    page.get_by_role("heading", name="Appointment cancelled").wait_for()
    steps.shot("cancelled")
    assert appointments(session)[0].status == "cancelled"


def test_reschedule_from_the_manage_page(page, live_server, session, demo, output_dir):
    appt = booking.book(
        session,
        booking.BookingRequest(
            location="sf-mission",
            service="infusion",
            start=dt.datetime(2026, 12, 1, 17, 0, tzinfo=UTC),
            patient=PatientDetails(NAME, PHONE, EMAIL),
        ),
        now=DEFAULT_NOW,
        settings=ClinicSettings(),
    )
    token, appt_id = appt.manage_token, appt.id
    session.commit()
    steps = Steps(page, output_dir, "reschedule")
    page.goto(f"{live_server.url}/a/{token}")
    steps.shot("manage")
    page.get_by_role("link", name="Change time").click()
    steps.shot("calendar")
    if page.get_by_role("link", name="Later month").count():
        page.get_by_role("link", name="Later month").click()
    page.get_by_role("link", name=re.compile("^Thursday 3 December 2026")).click()
    steps.shot("times")
    page.get_by_role("link", name="Thu 3 Dec, 2:30 PM,").click()
    assert "Thu 3 Dec, 2:30 PM PST" in page.inner_text("dd.new")
    assert "Tue 1 Dec, 9:00 AM PST" in page.inner_text("dd.old")
    steps.shot("confirm")
    assert appointments(session)[0].start_at == dt.datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    page.get_by_role("button", name="Yes, move my appointment").click()
    page.get_by_role("heading", name="Your appointment has moved").wait_for()
    steps.shot("moved")
    (moved,) = appointments(session)
    assert moved.id == appt_id and moved.manage_token == token
    assert moved.start_at == dt.datetime(2026, 12, 3, 22, 30, tzinfo=UTC)
    assert "Thu 3 Dec, 2:30 PM PST" in page.inner_text("main")


def _tab_to(page: Any, pattern: str, limit: int = 80) -> None:
    """Press Tab until the focused element's accessible text matches `pattern`."""
    regex = re.compile(pattern)
    for _ in range(limit):
        page.keyboard.press("Tab")
        label = page.evaluate(
            """() => { const el = document.activeElement;
                const lab = el.labels && el.labels.length ? el.labels[0].innerText : '';
                return [el.getAttribute('aria-label') || '', el.innerText || '', lab]; }"""
        )
        if any(regex.search(part.strip()) for part in label):
            _assert_focus_visible(page)
            return
    raise AssertionError(f"never reached {pattern!r} with Tab")


def _assert_focus_visible(page: Any) -> None:
    style = page.evaluate(
        """() => { const s = getComputedStyle(document.activeElement);
            return [s.outlineStyle, s.outlineWidth, s.boxShadow]; }"""
    )
    assert style[0] != "none" and float(style[1].removesuffix("px")) >= 2, style


def test_keyboard_only_booking(page, live_server, session, demo, output_dir):
    steps = Steps(page, output_dir, "keyboard")
    page.goto(live_server.url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.innerText") == "Skip to content"
    _assert_focus_visible(page)
    _tab_to(page, "New York – Flatiron")
    steps.shot("focus-location")
    page.keyboard.press("Enter")
    page.wait_for_url("**/book/nyc-flatiron")
    _tab_to(page, r"Initial consultation")
    page.keyboard.press("Enter")
    page.wait_for_url("**/book/nyc-flatiron/initial-consultation")
    _tab_to(page, "^Later")
    page.keyboard.press("Enter")
    page.wait_for_url("**month=2026-12")
    _tab_to(page, "^Wednesday 2 December 2026")
    steps.shot("focus-day")
    page.keyboard.press("Enter")
    page.wait_for_url("**/2026-12-02")
    _tab_to(page, "^Wed 2 Dec, 1:00 PM, .* EST$")
    steps.shot("focus-time")
    page.keyboard.press("Enter")
    page.wait_for_url("**/details?start=*")
    _tab_to(page, "Full name")
    page.keyboard.type(NAME)
    page.keyboard.press("Tab")
    page.keyboard.type(PHONE)
    page.keyboard.press("Tab")
    page.keyboard.type("robin@")  # a mistake first
    _tab_to(page, "Book this appointment")
    steps.shot("focus-submit")
    page.keyboard.press("Enter")
    # The error summary takes focus and links to the field.
    page.get_by_role("alert").wait_for()
    assert page.evaluate("document.activeElement.className") == "error-summary"
    steps.shot("error")
    _tab_to(page, "E-mail address")
    page.keyboard.press("Enter")  # follow the summary's link to the field
    assert page.evaluate("document.activeElement.id") == "email"
    described = page.get_attribute("#email", "aria-describedby")
    assert "email-error" in described
    assert "valid e-mail" in page.inner_text("#email-error")
    page.keyboard.press("Control+A")
    page.keyboard.type(EMAIL)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "date_of_birth"
    page.keyboard.type("04021980")  # the date field's month, day and year, in turn
    _tab_to(page, "^Text me reminders")  # Tab also steps through the date's parts
    page.keyboard.press("Space")  # the SMS consent checkbox
    assert page.is_checked("#sms_consent")
    _tab_to(page, "Book this appointment")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="You're booked").wait_for()
    steps.shot("booked")
    (appt,) = appointments(session)
    assert appt.start_at == dt.datetime(2026, 12, 2, 18, 0, tzinfo=UTC)  # 1 PM EST
    assert appt.patient.email == EMAIL and appt.patient.sms_consent is True


def test_slot_taken_between_steps_keeps_details_and_offers_alternatives(
    page, live_server, session, output_dir
):
    loc = make_location(session, slug="one-chair", name="One Chair Clinic", chairs=1)
    make_service(session, [loc], slug="infusion", name="Infusion")
    session.commit()
    steps = Steps(page, output_dir, "race")
    page.goto(f"{live_server.url}/book/one-chair/infusion/2026-12-01")
    page.get_by_role("link", name="Tue 1 Dec, 10:00 AM,").click()
    fill_details(page)
    page.get_by_label("Anything we should know?").fill("Please call on arrival.")
    steps.shot("details-filled")
    # Someone else takes the only chair at 10:00 through the public API meanwhile.
    other = page.request.post(
        f"{live_server.url}/api/v1/appointments",
        data={
            "location": "one-chair",
            "service": "infusion",
            "start": "2026-12-01T10:00:00-08:00",
            "patient": {"name": "Someone Else", "phone": "+14155550999", "email": "se@example.com"},
        },
    )
    assert other.status == 201, other.text()
    page.get_by_role("button", name="Book this appointment").click()
    page.get_by_role("alert").wait_for()
    steps.shot("taken")
    assert "That time has just been taken" in page.inner_text(".error-summary")
    assert page.input_value("#name") == NAME
    assert page.input_value("#phone") == PHONE
    assert page.input_value("#email") == EMAIL
    assert page.input_value("#note") == "Please call on arrival."
    assert page.is_checked("#sms_consent")
    offered = page.locator("fieldset.alternatives label").all_inner_texts()
    assert offered, "no alternatives offered"
    assert "Tue 1 Dec, 10:00 AM PST" not in offered
    # The nearest free starts around the taken 10:00 (9:50-10:50 with buffers) on the only chair.
    assert "Tue 1 Dec, 9:15 AM PST" not in offered
    assert "Tue 1 Dec, 11:00 AM PST" in offered
    page.get_by_label("Tue 1 Dec, 11:00 AM PST").check()
    page.get_by_role("button", name="Book the chosen time").click()
    page.get_by_role("heading", name="You're booked").wait_for()
    steps.shot("booked-alternative")
    first, mine = appointments(session)
    assert first.patient.name == "Someone Else"
    assert mine.patient.name == NAME and mine.note == "Please call on arrival."
    assert mine.start_at == dt.datetime(2026, 12, 1, 19, 0, tzinfo=UTC)


def test_times_are_in_the_location_zone_whatever_the_browser_zone(
    browser, live_server, session, demo, output_dir
):
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, timezone_id="Asia/Tokyo", locale="ja-JP"
    )
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        steps = Steps(page, output_dir, "zone")
        page.goto(f"{live_server.url}/book/nyc-flatiron/infusion/2026-12-01")
        assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "Asia/Tokyo"
        assert "(EST)" in page.inner_text("#zone-note")
        first = page.locator(".times a").first
        # New York opens at 8:00; 10 min prep: the first start's prep begins at opening.
        # 40 minutes in the chair and 10 of recovery: the patient can leave at 9:00.
        assert first.inner_text().split() == ["8:10", "AM", "leave", "by", "about", "9:00", "AM"]
        assert first.get_attribute("aria-label") == "Tue 1 Dec, 8:10 AM, leave by about 9:00 AM EST"
        steps.shot("times-tokyo-browser")
        first.click()
        fill_details(page)
        page.get_by_role("button", name="Book this appointment").click()
        page.get_by_role("heading", name="You're booked").wait_for()
        assert "Tue 1 Dec, 8:10 AM EST" in page.inner_text("main")
        steps.shot("booked-tokyo-browser")
        (appt,) = appointments(session)
        assert appt.start_at == dt.datetime(2026, 12, 1, 13, 10, tzinfo=UTC)
    finally:
        context.close()


def test_inside_the_late_window_the_page_shows_the_clinic_phone(
    page, live_server, session, demo, clock, output_dir
):
    appt = booking.book(
        session,
        booking.BookingRequest(
            location="sf-mission",
            service="long-infusion",
            start=dt.datetime(2026, 12, 1, 21, 30, tzinfo=UTC),  # 1:30 PM PST
            patient=PatientDetails(NAME, PHONE, EMAIL),
        ),
        now=DEFAULT_NOW,
        settings=ClinicSettings(),
    )
    token = appt.manage_token
    session.commit()
    clock.now = dt.datetime(2026, 12, 1, 5, 30, tzinfo=UTC)  # 16 hours before
    steps = Steps(page, output_dir, "late")
    page.goto(f"{live_server.url}/a/{token}")
    steps.shot("manage-late")
    assert page.get_by_role("link", name="Cancel appointment").count() == 0
    assert page.get_by_role("link", name="Change time").count() == 0
    phone = page.locator("#too-late a.phone")
    assert phone.inner_text() == "(415) 555-0100"
    assert phone.get_attribute("href") == "tel:+14155550100"
    assert "less than 24 hours" in page.inner_text("#too-late")
    page.goto(f"{live_server.url}/a/{token}/cancel")  # an old link to the cancel page
    assert page.locator("#too-late a.phone").is_visible()
    assert page.get_by_role("button", name=re.compile("cancel", re.I)).count() == 0
    steps.shot("cancel-late")
    assert appointments(session)[0].status == "booked"


def test_choose_a_prescriber_by_keyboard_then_move_only_to_their_times(
    browser, live_server, session, output_dir, axe_source
):
    from tests.browser.test_course_booking import violations

    clinic = make_clinic(session)
    (morning,), _ = rota(session, clinic.sf, nurses=0, hours=(dt.time(8), dt.time(12)))
    (all_day,), _ = rota(session, clinic.sf, nurses=1, hours=(dt.time(8), dt.time(18)))
    morning.name, all_day.name = "Dr Morning", "Dr Allday"
    morning_id = morning.id
    session.commit()
    # CSP is bypassed only so that the test can inject axe-core.
    context = browser.new_context(viewport={"width": 360, "height": 740}, bypass_csp=True)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        steps = Steps(page, output_dir, "prescriber")
        page.goto(f"{live_server.url}/book/sf/consult")
        choice = page.get_by_role("group", name="Who would you like to see?")
        assert choice.get_by_role("radio", name=re.compile("^Any prescriber")).is_checked()
        assert violations(page, axe_source) == []
        steps.shot("choose")
        page.get_by_label(re.compile("^Any prescriber")).focus()
        page.keyboard.press("ArrowDown")  # Dr Allday
        page.keyboard.press("ArrowDown")  # Dr Morning
        assert page.get_by_label("Dr Morning").is_checked()
        _tab_to(page, "^Show days$")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**clinician={morning_id}")
        assert "with Dr Morning" in page.inner_text(".lead")
        assert page.get_by_label("Dr Morning").is_checked()
        page.get_by_role("link", name="Later month").click()
        page.get_by_role("link", name=re.compile("^Wednesday 2 December 2026")).click()
        page.get_by_role("heading", name="Morning").wait_for()
        assert page.get_by_role("heading", name="Afternoon").count() == 0  # she works mornings
        assert violations(page, axe_source) == []
        steps.shot("her-times")
        page.get_by_role("link", name="Wed 2 Dec, 10:00 AM").click()
        assert "with Dr Morning" in page.inner_text("#chosen")
        fill_details(page)
        page.get_by_role("button", name="Book this appointment").click()
        page.get_by_role("heading", name="You're booked").wait_for()
        assert "Dr Morning (your choice" in page.inner_text("#prescriber")
        steps.shot("booked")
        page.get_by_role("link", name="Change time").click()
        page.get_by_role("heading", name="Choose a new day").wait_for()
        wednesday = page.get_by_role("link", name=re.compile("^Wednesday 2 December 2026"))
        if not wednesday.count():  # the calendar opens on the first month with a free time
            page.get_by_role("link", name="Later month").click()
        wednesday.click()
        page.get_by_role("heading", name="Morning").wait_for()
        assert page.get_by_role("heading", name="Afternoon").count() == 0
        assert "Only times Dr Morning is free" in page.inner_text("#prescriber-kept")
        assert violations(page, axe_source) == []
        steps.shot("move-her-times")
        (appt,) = appointments(session)
        assert appt.start_at == dt.datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    finally:
        context.close()
