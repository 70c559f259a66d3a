"""The utilisation page in real Chromium: both heatmaps are tables a screen reader can read, the
range picker and the CSV download work, and axe-core finds nothing.

Screenshot: tests/output/staff-utilisation.png (a fortnight across the November DST change).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.reports_support import seed_fortnight
from tests.web.staff_support import PASSWORD, make_clinic

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parents[2] / ".cache" / "node" / "node_modules" / "axe-core"


def _axe(page: Any) -> list[str]:
    source = AXE / "axe.min.js"
    if not source.exists():
        reason = f"{source} missing (npm install --prefix .cache/node axe-core@4)"
        if IN_CI:
            pytest.fail(f"axe-core is required under CI: {reason}")
        pytest.skip(reason)
    page.add_script_tag(content=source.read_text())
    result = page.evaluate(
        "async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))"
    )
    return [
        f"{v['id']} ({v['impact']}): {node['target']}"
        for v in json.loads(result)["violations"]
        for node in v["nodes"][:3]
    ]


def test_heatmaps_range_csv_and_axe(browser, live_server, session, output_dir):
    clinic = make_clinic(session)
    f = seed_fortnight(session, "America/New_York", dt.date(2026, 10, 26))
    slug, name, email = f.location.slug, f.location.name, clinic.users["admin"].email
    session.commit()
    session.close()  # SQLite: no transaction (and write lock) left open for the live server
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, bypass_csp=True, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{live_server.url}/staff/sign-in")
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server.url}/staff/")
        # One link per location in the staff nav, named with it.
        page.get_by_role("link", name=re.compile(rf"^Utilisation\W+{name}$")).click()
        page.wait_for_url(f"**/staff/{slug}/utilisation")
        # Pick the fortnight with the range picker.
        page.get_by_label("From").fill("2026-10-26")
        page.get_by_label("To").fill("2026-11-08")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**from=2026-10-26&to=2026-11-08")
        chairs = page.get_by_role("table", name="Booked share of open chair time")
        nurses = page.get_by_role("table", name="Infusion load as a share of nurse capacity")
        assert chairs.get_by_role("columnheader", name="Sunday").count() == 1
        assert nurses.get_by_role("rowheader", name="01:00").count() == 1
        # Every coloured cell also says its figure in text.
        cells = chairs.locator("td").all_inner_texts()
        assert cells and all(text.strip() for text in cells)
        assert any("%" in text for text in cells)
        assert page.locator("#rates").inner_text().count("%") == 2
        with page.expect_download() as info:
            page.get_by_role("link", name="Download CSV").click()
        csv_text = Path(info.value.path()).read_text()
        assert csv_text.splitlines()[0].startswith("weekday,hour,open_chair_minutes")
        assert len(csv_text.splitlines()) == 1 + 168
        page.screenshot(path=str(output_dir / "staff-utilisation.png"), full_page=True)
        assert _axe(page) == []
        assert errors == []
    finally:
        context.close()
