"""The staff portal in real Chromium at desktop size: sign in, read the chair calendar, act on it.

Screenshots go to tests/output/staff-*.png for reviewers (the busy day is staff-busy-day.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_staff
from tests.web.staff_support import DAY, at, book, busy_day, make_clinic, play_day_until

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"


class Desk:
    """A desktop page that records console errors (CSP refusals show up there)."""

    def __init__(
        self, browser: Any, base: str, output_dir: Path, width: int = 1440, height: int = 900
    ) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.base, self.output_dir = base, output_dir
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(msg.text)

    def shot(self, name: str, full_page: bool = True) -> Path:
        path = self.output_dir / f"staff-{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        assert self.errors == [], self.errors
        return path

    def sign_in(self, email: str) -> None:
        self.page.goto(f"{self.base}/staff/sign-in")
        self.page.get_by_label("E-mail").fill(email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(f"{self.base}/staff/")

    def box(self, selector: str) -> dict[str, float]:
        box = self.page.locator(selector).first.bounding_box()
        assert box is not None, selector
        return box

    def column_of(self, selector: str) -> str:
        """The title of the chair column whose header spans the element's horizontal centre."""
        b = self.box(selector)
        centre = b["x"] + b["width"] / 2
        for head in self.page.locator(".colhead").all():
            h = head.bounding_box()
            if h and h["x"] <= centre < h["x"] + h["width"]:
                return str(head.get_attribute("data-column"))
        raise AssertionError(f"{selector} is under no column")

    def local_time_at(self, y: float) -> float:
        """The local time (hours) at a vertical position, read off the hour lines."""
        lines = {
            line.get_attribute("data-hour"): line.bounding_box()
            for line in self.page.locator(".hline").all()
        }
        nine, ten = lines["09:00"], lines["10:00"]
        assert nine and ten
        per_hour = ten["y"] - nine["y"]
        return 9 + (y - nine["y"]) / per_hour


@pytest.fixture
def desk(browser: Any, live_server: Any, output_dir: Path) -> Iterator[Desk]:
    d = Desk(browser, live_server.url, output_dir)
    yield d
    d.context.close()


def test_front_desk_reads_the_calendar_moves_blocks_and_checks_in(desk, session, clock):
    clinic = make_clinic(session)
    chair2 = clinic.sf.resources[1]
    appt = book(
        session,
        clinic.sf,
        clinic.infusion,
        at(DAY, 9, 15),
        clock.now,
        name="Ada Lovelace",
        resource_id=chair2.id,
    )
    email, appt_id = clinic.users["front_desk"].email, appt.id
    # Commit, then leave the ORM objects alone: touching one would reopen a SQLite write
    # transaction (BEGIN IMMEDIATE) that the live server would wait on.
    session.commit()
    page = desk.page

    desk.sign_in(email)
    page.get_by_role("link", name="Chair calendar").click()
    # Pick the day with the date picker.
    page.get_by_label("Date", exact=True).fill(DAY.isoformat())
    page.get_by_role("button", name="Go").click()
    page.wait_for_url(f"**/staff/sf/calendar?date={DAY}")
    sel = f'a.appt[data-appointment="{appt_id}"]'
    assert "Ada Lovelace" in page.locator(sel).inner_text()
    # In Chair 2's column, starting at 09:15 local (the box is the visit; prep shades above it).
    assert desk.column_of(sel) == "Chair 2"
    assert desk.local_time_at(desk.box(sel)["y"]) == pytest.approx(9.25, abs=0.02)
    bottom = desk.box(sel)["y"] + desk.box(sel)["height"]
    assert desk.local_time_at(bottom) == pytest.approx(9 + 55 / 60, abs=0.02)
    assert page.locator(".cal-body .prep").count() == 1
    assert page.locator(".cal-body .recovery").count() == 1
    desk.shot("01-calendar")

    # Move it to Chair 3, same time.
    page.locator(sel).click()
    page.get_by_label("Chair or room").select_option(label="Chair 3")
    page.get_by_role("button", name="Move").click()
    page.get_by_text("moved to Chair 3").wait_for()
    with page.expect_navigation():  # measure the new calendar, not the page being left
        page.get_by_role("link", name="San Francisco Mission, Tue 01 Dec").click()
    page.locator(sel).wait_for()
    assert desk.column_of(sel) == "Chair 3"
    assert desk.local_time_at(desk.box(sel)["y"]) == pytest.approx(9.25, abs=0.02)

    # Block Chair 4 for the early afternoon.
    page.get_by_title("Block Chair 4").click()
    page.get_by_label("From").fill("13:00")
    page.get_by_label("Until", exact=True).fill("15:00")
    page.get_by_label("Reason").fill("Pump service")
    page.get_by_role("button", name="Block").click()
    page.get_by_text("Chair 4 is blocked 13:00–15:00").wait_for()
    block = page.locator(".cal-body .block").first
    assert "Pump service" in block.inner_text()
    assert desk.column_of(".cal-body .block") == "Chair 4"
    assert desk.local_time_at(desk.box(".cal-body .block")["y"]) == pytest.approx(13, abs=0.02)
    desk.shot("02-blocked")

    # Check the patient in.
    page.locator(sel).click()
    page.get_by_role("button", name="Check in").click()
    page.get_by_text("Ada Lovelace: checked in.").wait_for()
    assert page.locator("h1 .pill").get_attribute("data-status") == "checked_in"
    assert "checked in" in page.locator("#audit").inner_text()
    desk.shot("03-appointment")
    page.get_by_role("link", name="San Francisco Mission, Tue 01 Dec").click()
    assert page.locator(sel).get_attribute("data-status") == "checked_in"
    assert "appt st-checked_in" in (page.locator(sel).get_attribute("class") or "")
    desk.shot("04-checked-in")


def test_a_block_over_a_booking_is_refused_showing_which(desk, session, clock):
    clinic = make_clinic(session)
    chair1 = clinic.sf.resources[0]
    book(
        session,
        clinic.sf,
        clinic.infusion,
        at(DAY, 10),
        clock.now,
        name="Grace Hopper",
        resource_id=chair1.id,
    )
    email, chair_id = clinic.users["nurse"].email, chair1.id
    session.commit()
    page = desk.page
    desk.sign_in(email)
    page.goto(f"{desk.base}/staff/sf/blocks/new?date={DAY}&resource={chair_id}")
    page.get_by_label("From").fill("09:00")
    page.get_by_label("Until", exact=True).fill("12:00")
    page.get_by_label("Reason").fill("Deep clean")
    page.get_by_role("button", name="Block").click()
    clashes = page.locator("#clashes")
    clashes.wait_for()
    assert "Grace Hopper" in clashes.inner_text()
    assert "10:00" in clashes.inner_text()
    desk.shot("05-block-refused")


def test_retiring_a_chair_with_a_visit_ahead_is_refused_showing_which(desk, session, clock):
    clinic = make_clinic(session)
    chair1 = clinic.sf.resources[0]
    book(
        session,
        clinic.sf,
        clinic.infusion,
        at(DAY, 10),
        clock.now,
        name="Grace Hopper",
        resource_id=chair1.id,
    )
    email, chair_id = clinic.users["manager"].email, chair1.id
    session.commit()
    page = desk.page
    desk.sign_in(email)
    page.goto(f"{desk.base}/staff/settings/locations/sf")
    row = page.locator("#resources tbody tr").filter(has=page.locator(f'[form="res{chair_id}"]'))
    row.get_by_label("Active").uncheck()
    row.get_by_role("button", name="Save").click()
    page.get_by_text("has booked visits ahead").first.wait_for()
    assert "10:00" in page.content()
    # Refused: the chair is still active on the page shown after the refusal.
    page.goto(f"{desk.base}/staff/settings/locations/sf")
    assert row.get_by_label("Active").is_checked()
    desk.shot("08-retire-refused")


@pytest.fixture
def busy(session: Any, clock: Any) -> Any:
    loc, appts = busy_day(session, clock.now)
    clinic_admin, _ = make_staff(session, role="admin", email="admin@clinic.example")
    # The day is under way: 11:20 in San Francisco.
    clock.now = at(DAY, 11, 20)
    play_day_until(session, appts, clock.now)
    values = (loc.slug, loc.resources[0].id, len(appts), clinic_admin.email)
    session.commit()
    return values


def test_busy_day_screenshot_is_readable(browser, live_server, output_dir, busy):
    slug, chair1_id, count, email = busy
    desk = Desk(browser, live_server.url, output_dir, width=1920, height=1700)
    try:
        page = desk.page
        desk.sign_in(email)
        page.goto(f"{desk.base}/staff/{slug}/calendar?date={DAY}")
        assert page.locator(".colhead").count() == 22  # 20 chairs and 2 rooms
        assert page.locator("a.appt").count() == count == 62
        # Every chair column fits on a full-HD screen: no sideways scrolling.
        scroll = page.locator(".cal-scroll")
        assert scroll.evaluate("e => e.scrollWidth <= e.clientWidth")
        # Every visit shows its patient's name and time on the box itself.
        for box in page.locator("a.appt").all()[:10]:
            text = box.inner_text()
            assert ":" in text and len(text.splitlines()[0]) > 3
        # No boxes overlap within a column: each appointment has its own lane.
        assert page.locator("[class*=lane]").count() == 0
        assert page.locator(".nowline").count() == 1
        assert desk.local_time_at(desk.box(".nowline")["y"]) == pytest.approx(
            11 + 20 / 60, abs=0.02
        )
        desk.shot("busy-day")
        # The top-left quarter at full resolution, for reading the boxes' text.
        page.screenshot(
            path=str(output_dir / "staff-busy-day-detail.png"),
            clip={"x": 0, "y": 180, "width": 960, "height": 700},
        )
        page.goto(f"{desk.base}/staff/{slug}/calendar?date={DAY}&view=week&resource={chair1_id}")
        assert page.locator("a.appt").count() == 3
        desk.shot("busy-week")
        page.goto(f"{desk.base}/staff/{slug}/summary?date={DAY}")
        assert "2" in page.locator('#counts [data-status="no_show"]').inner_text()
        desk.shot("busy-summary")
    finally:
        desk.context.close()


def test_admin_settings_in_the_browser(desk, session):
    clinic = make_clinic(session)
    email = clinic.users["admin"].email
    session.commit()
    page = desk.page
    desk.sign_in(email)
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="San Francisco Mission").last.click()
    page.get_by_label("Saturday").fill("09:00-13:00")
    page.get_by_role("button", name="Save hours").click()
    page.get_by_text("Saved.").wait_for()
    assert page.get_by_label("Saturday").input_value() == "09:00-13:00"
    form = page.locator("#add-resource")
    form.get_by_label("Name").fill("Chair 5")
    form.get_by_role("button", name="Add").click()
    page.get_by_text("Saved.").wait_for()
    assert page.locator('#resources input[value="Chair 5"]').count() == 1
    desk.shot("06-settings-location")

    page.get_by_role("link", name="← Settings").click()
    page.get_by_role("link", name="Add a staff user").click()
    page.get_by_label("Name").fill("Nora Nurse")
    page.get_by_label("E-mail").fill("nora@clinic.example")
    page.get_by_label("Role").select_option("nurse")
    page.get_by_label("San Francisco Mission").check()
    page.get_by_label("Password").fill("nora's long password")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Staff user created.").wait_for()
    assert "nora's long password" not in page.content()
    page.get_by_role("button", name="Issue a new API token").click()
    token = page.locator("#new-token code").inner_text()
    assert token.startswith("cs_")
    desk.shot("07-token-shown-once")
    page.get_by_role("link", name="edit user").click()
    assert page.get_by_role("heading", name="Nora Nurse").count() == 1
    assert token not in page.content()
    assert page.locator("#tokens tbody tr").count() == 1
    assert "active" in page.locator("#tokens tbody tr").inner_text()
