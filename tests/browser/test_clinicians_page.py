"""The clinicians page in real Chromium: reached from the rota, a refused add names its field, an
add and an edit are saved, a deactivation that a booked visit needs is refused with the visit
listed; every state passes axe-core. Screenshots: tests/output/rota-clinicians-list.png,
rota-clinicians-refused.png."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.browser import test_rota
from tests.test_staffing_support import rota
from tests.web.staff_support import DAY, at, book, make_clinic

pytestmark = pytest.mark.browser
desk = test_rota.desk  # the fixture: a desktop page


@pytest.fixture
def floor(session: Any, clock: Any) -> dict[str, Any]:
    clinic = make_clinic(session)
    (doc,), _ = rota(session, clinic.sf, nurses=1, hours=(dt.time(8), dt.time(18)))
    book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, 1, "Ada Lovelace")
    values = {"manager": clinic.users["manager"].email, "doc": doc.name}
    session.commit()  # then leave the ORM objects alone (SQLite's write lock)
    return values


def test_manage_clinicians_from_the_rota(desk, floor, axe_source):
    page, found = desk.page, {}
    desk.sign_in(floor["manager"])
    desk.go(f"/staff/sf/rota?date={DAY}")
    page.get_by_role("link", name="Clinicians").click()
    page.get_by_role("heading", name="Clinicians", exact=True).wait_for()
    assert page.locator("#clinicians tbody tr").count() == 2
    found["list"] = desk.axe(axe_source)

    form = page.locator("#clinician-add")
    form.get_by_label("Name").fill("   ")  # passes the browser's check, not the server's
    form.get_by_label("Role").select_option(label="Nurse")
    form.get_by_role("button", name="Add clinician").click()
    page.locator("div.error[role=alert]").wait_for()
    assert form.locator(".field-error").inner_text() == "required"
    found["list (refused add)"] = desk.axe(axe_source)

    form.get_by_label("Name").fill("Nina New")
    form.get_by_label("Title (optional, e.g. MD, RN)").fill("RN")
    form.get_by_label("Staff user (optional)").select_option(label="Nurse User")
    form.get_by_role("button", name="Add clinician").click()
    page.get_by_text("Nina New added.").wait_for()
    row = page.locator('#clinicians tr:has-text("Nina New")')
    assert "Nurse User" in row.inner_text() and "active" in row.inner_text()
    desk.shot("clinicians-list")

    # The prescriber the 10:00 infusion needs cannot be deactivated.
    page.get_by_role("link", name=floor["doc"]).click()
    edit = page.locator("#clinician-edit")
    edit.get_by_label("Title (optional)").fill("MD")
    edit.get_by_label("Active (on the rota; counts for staffing)").uncheck()
    edit.get_by_role("button", name="Save").click()
    refused = page.locator("#refused")
    refused.wait_for()
    assert "Booked visits need" in refused.inner_text()
    assert "Tue 01 Dec 10:00–10:40 Ada Lovelace" in refused.inner_text()
    found["edit (refused)"] = desk.axe(axe_source)
    desk.shot("clinicians-refused")

    # The title alone is saved.
    edit.get_by_label("Active (on the rota; counts for staffing)").check()
    edit.get_by_role("button", name="Save").click()
    page.get_by_text("Saved.").wait_for()
    assert edit.get_by_label("Title (optional)").input_value() == "MD"
    found["edit"] = desk.axe(axe_source)
    problems = {k: v for k, v in found.items() if v}
    assert problems == {}, json.dumps(problems, indent=1)
