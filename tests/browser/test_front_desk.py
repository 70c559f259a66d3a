"""The front desk's day in real Chromium: every page passes axe-core, the calendar is a page to work
in (sticky headers, status changes in place, week across chairs, keyboard shortcuts), the day
sheet prints every visit, and staff booking offers free times to click.

Screenshots go to tests/output/desk-*.png for reviewers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.services import booking
from tests.browser.conftest import LiveServer
from tests.conftest import IN_CI
from tests.web.staff_support import DAY, PASSWORD, at, book, make_clinic

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / ".cache" / "node" / "node_modules" / "axe-core" / "axe.min.js"


def _need(what: str, reason: str | None) -> None:
    if reason:
        if IN_CI:
            pytest.fail(f"{what} is required under CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def axe_source() -> str:
    _need("axe-core", None if AXE.exists() else f"{AXE} missing (scripts/install-test-tools.sh)")
    return AXE.read_text()


class Desk:
    """A desktop page (1440 x 900) that records script errors; CSP is bypassed only so that the
    test can inject axe-core."""

    def __init__(self, browser: Any, base: str, output_dir: Path, **size: int) -> None:
        viewport = {"width": size.get("width", 1440), "height": size.get("height", 900)}
        self.context = browser.new_context(viewport=viewport, bypass_csp=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.base, self.output_dir = base, output_dir
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def sign_in(self, email: str) -> None:
        self.page.goto(f"{self.base}/staff/sign-in")
        self.page.get_by_label("E-mail").fill(email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(f"{self.base}/staff/")

    def shot(self, name: str, full_page: bool = True) -> None:
        path = self.output_dir / f"desk-{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        assert self.errors == [], self.errors

    def axe(self, source: str) -> list[str]:
        """axe-core's violations on the current page, one line per rule and element."""
        if not self.page.evaluate("() => typeof window.axe === 'object'"):
            self.page.add_script_tag(content=source)
        result = self.page.evaluate("async () => JSON.stringify(await axe.run(document))")
        found = []
        for v in json.loads(result)["violations"]:
            for node in v["nodes"][:3]:
                found.append(
                    f"{v['id']} ({v['impact']}): {node['target']} {node['failureSummary']}"
                )
        return found


@pytest.fixture
def desk(browser: Any, live_server: LiveServer, output_dir: Path) -> Iterator[Desk]:
    d = Desk(browser, live_server.url, output_dir)
    yield d
    d.context.close()


@pytest.fixture
def clinic_day(session: Any, clock: Any) -> dict[str, Any]:
    """The SF clinic with a few visits on DAY in several states, a block, and an audit trail."""
    clinic = make_clinic(session)
    chairs = [r for r in clinic.sf.resources if r.kind == "chair"]
    visits = [
        book(session, clinic.sf, clinic.infusion, at(DAY, 9), clock.now, n=1, name="Ada Lovelace"),
        book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, n=2, name="Alan Turing"),
        book(session, clinic.sf, clinic.consult, at(DAY, 11), clock.now, n=3, name="Grace Hopper"),
    ]
    block = booking.create_block(
        session, chairs[3], at(DAY, 13), at(DAY, 15), reason="Pump service", now=clock.now
    )
    session.flush()
    values = {
        "admin": clinic.users["admin"].email,
        "front_desk": clinic.users["front_desk"].email,
        "visit": visits[0].id,
        "token": visits[0].manage_token,
        "chair": chairs[0].id,
        "block": block.id,
        "staff": clinic.users["nurse"].id,
    }
    session.commit()
    return values


def _staff_pages(v: dict[str, Any]) -> list[str]:
    return [
        "/staff/",
        f"/staff/sf/calendar?date={DAY}",
        f"/staff/sf/calendar?date={DAY}&view=week",
        f"/staff/sf/calendar?date={DAY}&view=week&resource={v['chair']}",
        f"/staff/sf/day-sheet?date={DAY}",
        f"/staff/sf/summary?date={DAY}",
        f"/staff/appointments/{v['visit']}",
        f"/staff/sf/book?date={DAY}",
        f"/staff/sf/blocks/new?date={DAY}",
        f"/staff/sf/blocks/{v['block']}",
        "/staff/audit",
        "/staff/account",
        "/staff/settings",
        "/staff/settings/locations/sf",
        "/staff/settings/locations/new",
        "/staff/settings/services/infusion",
        "/staff/settings/services/new",
        "/staff/settings/staff/new",
        f"/staff/settings/staff/{v['staff']}",
        # error pages: a bad date (400), another location's visit (403), no such block (404)
        "/staff/sf/calendar?date=2026-13-45",
        "/staff/ny/calendar",
        "/staff/sf/blocks/999999",
    ]


def test_every_staff_and_patient_page_passes_axe(desk, clinic_day, axe_source):
    page, found = desk.page, {}
    page.goto(f"{desk.base}/staff/sign-in")
    found["/staff/sign-in"] = desk.axe(axe_source)
    desk.sign_in(clinic_day["front_desk"])
    for path in [p for p in _staff_pages(clinic_day) if "/settings" not in p and "audit" not in p]:
        page.goto(desk.base + path)
        found[path] = desk.axe(axe_source)
    page.context.clear_cookies()
    desk.sign_in(clinic_day["admin"])
    for path in [p for p in _staff_pages(clinic_day) if "/settings" in p or "audit" in p]:
        page.goto(desk.base + path)
        found[path] = desk.axe(axe_source)
    # The form again after a refused booking (error summary and field messages).
    page.goto(f"{desk.base}/staff/sf/book?date={DAY}")
    page.get_by_role("button", name="Book", exact=True).click()
    found["/staff/sf/book (refused)"] = desk.axe(axe_source)
    # The patient pages, from choosing a location to the appointment's own page.
    page.goto(f"{desk.base}/")
    found["/"] = desk.axe(axe_source)
    page.goto(f"{desk.base}/book/sf")
    found["/book/sf"] = desk.axe(axe_source)
    page.goto(f"{desk.base}/book/sf/infusion")
    found["/book/sf/infusion"] = desk.axe(axe_source)
    page.goto(f"{desk.base}/book/sf/infusion/{DAY}")
    found["/book/sf/infusion/day"] = desk.axe(axe_source)
    page.locator("main a[href*='details']").first.click()
    found["/book/.../details"] = desk.axe(axe_source)
    token = clinic_day["token"]
    for path in (f"/a/{token}", f"/a/{token}/cancel", f"/a/{token}/reschedule", "/a/nope"):
        page.goto(desk.base + path)
        found[path] = desk.axe(axe_source)
    problems = {path: v for path, v in found.items() if v}
    assert problems == {}, json.dumps(problems, indent=1)
    assert len(found) >= 30
