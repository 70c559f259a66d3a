"""The rota in real Chromium: a manager's refused shift removal is explained in place, an added
nurse's shift changes the calendar's nurse-load bar, and the rota, calendar, visit and settings
pages pass axe-core (whole pages). Screenshots: tests/output/rota-week.png, rota-busy-calendar.png (before the
change), rota-calendar-after.png, rota-refused.png."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.services import staffing
from tests.test_staffing_support import rota
from tests.web.staff_support import DAY, PASSWORD, at, book, make_clinic

pytestmark = pytest.mark.browser
NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov"]


class Desk:
    """A desktop page; CSP is bypassed only so that the test can inject axe-core."""

    def __init__(self, browser: Any, base: str, output_dir: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.base, self.output_dir = base, output_dir
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def go(self, path: str) -> None:
        self.page.goto(f"{self.base}{path}")

    def sign_in(self, email: str) -> None:
        self.go("/staff/sign-in")
        self.page.get_by_label("E-mail").fill(email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(f"{self.base}/staff/")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.output_dir / f"rota-{name}.png"), full_page=True)
        assert self.errors == [], self.errors

    def axe(self, source: str) -> list[str]:
        """axe-core's violations on the current page, one line per rule and element."""
        if not self.page.evaluate("() => typeof window.axe === 'object'"):
            self.page.add_script_tag(content=source)
        result = self.page.evaluate(
            "async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))"
        )
        return [
            f"{v['id']} ({v['impact']}): {node['target']} {node['failureSummary']}"
            for v in json.loads(result)["violations"]
            for node in v["nodes"][:3]
        ]

    def load(self, hour: str) -> dict[str, str]:
        cell = self.page.locator(f'#nurse-load .bar-cell[data-hour="{hour}"]')
        bar = cell.locator(".bar")
        return {
            "text": cell.locator(".bar-value").inner_text(),
            "state": cell.locator(".bar-state").inner_text().strip(),
            "color": bar.evaluate("e => getComputedStyle(e).backgroundColor"),
            "height": str(bar.evaluate("e => e.getBoundingClientRect().height")),
        }


@pytest.fixture
def desk(browser: Any, live_server: Any, output_dir: Path) -> Iterator[Desk]:
    d = Desk(browser, live_server.url, output_dir)
    yield d
    d.context.close()


@pytest.fixture
def busy(session: Any, clock: Any) -> dict[str, Any]:
    """SF with a prescriber and two nurses 08:00-18:00 at two patients each (capacity 4); four
    infusions at 10:00 fill every chair and the nurses, two more at 13:00."""
    clinic = make_clinic(session)
    (doc,), nurses = rota(
        session,
        clinic.sf,
        nurses=2,
        hours=(dt.time(8), dt.time(18)),
        patients_per_nurse=2,
        starts_per_window=10,
    )
    staffing.create_clinician(session, name="Nina Spare", role="nurse")
    visits = [
        book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, n + 1, NAMES[n])
        for n in range(4)
    ]
    visits.append(book(session, clinic.sf, clinic.infusion, at(DAY, 13), clock.now, 5, NAMES[4]))
    values = {
        "manager": clinic.users["manager"].email,
        "nurse": nurses[1].name,
        "visit": visits[0].id,
    }
    # Commit, then leave the ORM objects alone: touching one would reopen a SQLite write
    # transaction (BEGIN IMMEDIATE) that the live server would wait on.
    session.commit()
    return values


def test_rota_edit_changes_the_nurse_load_bar(desk, busy, axe_source):
    page = desk.page
    desk.sign_in(busy["manager"])
    found: dict[str, list[str]] = {}

    # The busy calendar: 10:00 is at capacity (4 of 4), red, and says so in text.
    desk.go(f"/staff/sf/calendar?date={DAY}")
    before = desk.load("10:00")
    assert before["text"] == "4/4" and before["state"] == "full"
    assert before["color"] == "rgb(185, 28, 28)"
    assert desk.load("13:00")["text"] == "1/4" and desk.load("13:00")["state"] == ""
    assert page.locator("#on-shift li").count() == 3
    assert page.locator(".appt .nurse").count() == 5
    desk.shot("busy-calendar")
    found["calendar"] = desk.axe(axe_source)

    # Removing a nurse's Tuesday shift is refused beside it, naming the 10:00 visits.
    desk.go(f"/staff/sf/rota?date={DAY}")
    page.get_by_role(
        "button", name=f"Remove {busy['nurse']}'s shift Tue 01 Dec 08:00–18:00"
    ).click()
    refused = page.locator("#refused-shift")
    refused.wait_for()
    assert "Booked visits need this shift" in refused.inner_text()
    assert refused.locator("li").count() == 4
    assert "Tue 01 Dec 10:00–10:40 Ada Lovelace" in refused.inner_text()
    desk.shot("refused")
    found["rota (refused)"] = desk.axe(axe_source)

    # Add a third nurse for Tuesday: capacity 6 from 08:00 to 18:00.
    form = page.locator("#add-shift")
    form.get_by_label("Clinician").select_option(label="Nina Spare (Nurse)")
    form.get_by_label("Date", exact=True).fill(DAY.isoformat())
    form.get_by_label("From", exact=True).fill("08:00")
    form.get_by_label("Until", exact=True).fill("18:00")
    form.get_by_role("button", name="Add shift").click()
    page.get_by_text("Shift added: Nina Spare, Tue 01 Dec 08:00–18:00.").wait_for()
    cell = page.locator('#rota tr:has-text("Nina Spare") td').nth(1)
    assert "08:00–18:00" in cell.inner_text() and "one-off" in cell.inner_text()
    desk.shot("week")
    found["rota"] = desk.axe(axe_source)

    # Back on the calendar the 10:00 bar is no longer at capacity, and shorter.
    desk.go(f"/staff/sf/calendar?date={DAY}")
    after = desk.load("10:00")
    assert after["text"] == "4/6" and after["state"] == ""
    assert after["color"] != before["color"]
    assert float(after["height"]) < float(before["height"])
    assert page.locator("#on-shift li").count() == 4
    desk.shot("calendar-after")

    # The visit's nurse can now be the spare nurse (on shift, room at 2 per nurse).
    desk.go(f"/staff/appointments/{busy['visit']}")
    page.locator("#nurse").get_by_label("Nurse on shift").select_option(label="Nina Spare")
    page.get_by_role("button", name="Change nurse").click()
    page.get_by_text("Nurse: Nina Spare.").wait_for()
    assert page.locator("#nurse-now").inner_text() == "Nina Spare"
    found["visit"] = desk.axe(axe_source)

    desk.go("/staff/settings/locations/sf")
    found["settings"] = desk.axe(axe_source)
    problems = {k: v for k, v in found.items() if v}
    assert problems == {}, json.dumps(problems, indent=1)
    assert desk.errors == []
