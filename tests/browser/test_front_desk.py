"""The front desk's day in real Chromium: every page passes axe-core, the calendar is a page to work
in (sticky headers, status changes in place, week across chairs, keyboard shortcuts), the day
sheet prints every visit, and staff booking offers free times to click.

Screenshots go to tests/output/desk-*.png for reviewers.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.services import booking
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests.browser.conftest import LiveServer
from tests.conftest import IN_CI
from tests.factories import make_service
from tests.web.staff_support import DAY, FIRST, LAST, PASSWORD, at, book, make_clinic

pytestmark = pytest.mark.browser


def _need(what: str, reason: str | None) -> None:
    if reason:
        if IN_CI:
            pytest.fail(f"{what} is required under CI: {reason}")
        pytest.skip(reason)


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
        # Only violations are collected: computing the passes too doubles the time per page.
        result = self.page.evaluate(
            "async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))"
        )
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
    # A service that needs a clearance, so that the patient record shows its clearance form.
    make_service(
        session, [clinic.sf], slug="esketamine", name="Esketamine", requires_clearance=True
    )
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
        "patient": visits[0].patient_id,
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
        f"/staff/sf/rota?date={DAY}",
        f"/staff/sf/utilisation?from={DAY}&to={DAY}",
        f"/staff/appointments/{v['visit']}",
        "/staff/patients",
        "/staff/patients?q=555-000",  # phone fragment: a results table
        "/staff/patients?q=Nobody+Here",  # no match
        f"/staff/patients/{v['patient']}",
        f"/staff/sf/book?date={DAY}",
        f"/staff/sf/book?date={DAY}&patient={v['patient']}",  # from the patient's record
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
        "/staff/patients/999999",
    ]


def test_every_staff_and_patient_page_passes_axe(desk, clinic_day, axe_source):
    page, found = desk.page, {}
    page.goto(f"{desk.base}/staff/sign-in")
    found["/staff/sign-in"] = desk.axe(axe_source)
    desk.sign_in(clinic_day["front_desk"])
    for path in [p for p in _staff_pages(clinic_day) if "/settings" not in p and "audit" not in p]:
        page.goto(desk.base + path)
        found[path] = desk.axe(axe_source)
    # The record after a refused merge (error summary and field message).
    page.goto(f"{desk.base}/staff/patients/{clinic_day['patient']}")
    page.locator("#merge-form").get_by_label("Duplicate's record number").fill("x")
    page.locator("#merge-form").get_by_role("button").click()
    page.locator("div.error[role=alert]").wait_for()
    found["/staff/patients/<id> (refused merge)"] = desk.axe(axe_source)
    page.context.clear_cookies()
    desk.sign_in(clinic_day["admin"])
    # An admin may record clearances: the record with its clearance form.
    page.goto(f"{desk.base}/staff/patients/{clinic_day['patient']}")
    page.locator("#clearance-form").wait_for()
    found["/staff/patients/<id> (clearance form)"] = desk.axe(axe_source)
    for path in [p for p in _staff_pages(clinic_day) if "/settings" in p or "audit" in p]:
        page.goto(desk.base + path)
        found[path] = desk.axe(axe_source)
    # The form again after a refused booking (error summary and field messages).
    page.goto(f"{desk.base}/staff/sf/book?date={DAY}&service=infusion")
    found["/staff/sf/book (free times)"] = desk.axe(axe_source)
    form = page.locator("#book")
    form.get_by_label("Time").fill("06:30")  # before opening: refused
    form.get_by_label("Patient name").fill("Pat Caller")
    form.get_by_label("Mobile phone").fill("(415) 555-0135")
    form.get_by_role("button", name="Book", exact=True).click()
    page.locator("#nearest").wait_for()
    found["/staff/sf/book (refused, nearest)"] = desk.axe(axe_source)
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


@pytest.fixture
def twenty(session: Any, clock: Any) -> dict[str, Any]:
    """SF with 20 visits on DAY: five on each of the four chairs, 08:15 to 14:30."""
    clinic = make_clinic(session)
    chairs = [r for r in clinic.sf.resources if r.kind == "chair"]
    names = []
    for i in range(20):
        chair, turn = chairs[i % 4], i // 4
        name = f"{FIRST[i]} {LAST[(i * 7) % 20]}"
        start = at(DAY, 8, 15) + dt.timedelta(minutes=75 * turn)
        book(
            session,
            clinic.sf,
            clinic.infusion,
            start,
            clock.now,
            n=i + 1,
            name=name,
            resource_id=chair.id,
        )
        names.append(name)
    values = {"email": clinic.users["front_desk"].email, "names": names}
    session.commit()
    return values


def _pdf_text(pdf: bytes, tmp_path: Path, *, layout: bool = True) -> str:
    """The PDF's text by poppler's pdftotext: laid out as printed (tables), or in reading order
    with whitespace folded (calendar boxes, whose names may wrap)."""
    _need("pdftotext", None if shutil.which("pdftotext") else "pdftotext missing (poppler-utils)")
    path = tmp_path / "printed.pdf"
    path.write_bytes(pdf)
    args = ["pdftotext", *(["-layout"] if layout else []), str(path), "-"]
    text = subprocess.run(args, capture_output=True, check=True).stdout.decode()
    return text if layout else " ".join(text.split())


def test_a_working_day_on_the_calendar_week_and_day_sheet(
    browser, live_server, output_dir, twenty, tmp_path, axe_source, clock
):
    desk = Desk(browser, live_server.url, output_dir, width=1280, height=720)
    page = desk.page
    try:
        desk.sign_in(twenty["email"])
        page.goto(f"{desk.base}/staff/sf/calendar?date={DAY}")
        # The page scrolls, not a box inside it; the chair names stay in view while it does.
        assert page.evaluate("() => document.scrollingElement.scrollHeight > innerHeight + 200")
        assert (
            page.locator(".cal-scroll").evaluate("e => getComputedStyle(e).overflowY") == "visible"
        )
        assert page.locator(".hour").first.evaluate("e => getComputedStyle(e).position") == "sticky"
        page.mouse.wheel(0, 700)
        page.wait_for_function("() => scrollY >= 600")
        head = page.locator(".cal-head").bounding_box()
        assert head is not None and abs(head["y"]) < 2
        desk.shot("calendar-day", full_page=False)
        # Narrower than the chairs: the page scrolls sideways and the times stay at the left.
        page.set_viewport_size({"width": 400, "height": 720})
        page.evaluate("() => window.scrollTo(300, scrollY)")
        page.wait_for_function("() => scrollX >= 50")
        hour = page.locator(".hour").nth(4).bounding_box()
        assert hour is not None and abs(hour["x"]) < 2
        page.set_viewport_size({"width": 1280, "height": 720})

        # Check in the 13:15 visit on Chair 1 from the calendar: back on the same view and place.
        name = twenty["names"][16]
        button = page.get_by_role("button", name=f"Check in {name}")
        button.scroll_into_view_if_needed()
        box = page.locator("a.appt", has_text=name)
        before = box.bounding_box()
        button.click()
        page.get_by_text(f"{name}: checked in.").wait_for()
        page.wait_for_load_state("load")
        assert f"/staff/sf/calendar?date={DAY}" in page.url
        after = box.bounding_box()  # the visit is where it was on the screen
        assert before and after and abs(after["y"] - before["y"]) < 12, (before, after)
        assert box.get_attribute("data-status") == "checked_in"
        # "Complete" waits for the visit's start (the clock is still the day before).
        assert page.get_by_role("button", name=f"Complete {name}").count() == 0

        # The calendar prints too: the whole day, without buttons or navigation.
        page.emulate_media(media="print")
        assert page.locator(".cal-nav").is_hidden() and page.locator("form.quick").first.is_hidden()
        pdf = page.pdf(format="Letter")
        (output_dir / "desk-calendar-print.pdf").write_bytes(pdf)
        text = _pdf_text(pdf, tmp_path, layout=False)
        assert [n for n in twenty["names"] if n not in text] == []
        assert "Check in" not in text and "Next day" not in text
        page.emulate_media(media="screen")

        # Keyboard: ? lists the shortcuts in a dialog, Escape closes it and focus comes back.
        page.locator("body").press("?")
        dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
        dialog.wait_for()
        assert page.evaluate("() => document.activeElement.closest('dialog') !== null")
        assert desk.axe(axe_source) == []
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        page.keyboard.press("j")
        page.wait_for_url(f"**date={DAY + dt.timedelta(days=1)}")
        page.keyboard.press("k")
        page.wait_for_url(f"**date={DAY}")
        page.keyboard.press("/")
        page.keyboard.type(twenty["names"][3].split()[0])
        assert page.locator("a.appt.match").count() >= 1
        page.keyboard.press("Escape")
        page.keyboard.press("t")
        page.wait_for_url(f"**date={DAY - dt.timedelta(days=1)}")  # the clock's today
        page.keyboard.press("b")
        page.wait_for_url("**/staff/sf/book*")

        # The week across every chair.
        page.goto(f"{desk.base}/staff/sf/calendar?date={DAY}&view=week")
        assert page.locator("#week-overview tbody tr").count() == 5  # 4 chairs and a room
        assert page.locator(".week-visit").count() == 20
        desk.shot("week-all-chairs")

        # The day sheet, printed: every visit is in the PDF's text, on A4 and on Letter.
        page.goto(f"{desk.base}/staff/sf/day-sheet?date={DAY}")
        assert page.locator("#day-sheet tbody tr").count() == 20
        desk.shot("day-sheet")
        page.emulate_media(media="print")
        assert page.locator(".staff-nav").is_hidden()
        for paper in ("A4", "Letter"):
            text = _pdf_text(page.pdf(format=paper, print_background=False), tmp_path)
            missing = [n for n in twenty["names"] if n not in text]
            assert missing == [], (paper, missing)
            assert "(415) 555-0001" in text and "Chair 4" in text
        (output_dir / "desk-day-sheet.pdf").write_bytes(page.pdf(format="A4"))
        page.emulate_media(media="screen")

        # Later that day: the "now" line is drawn and the calendar opens scrolled to it.
        clock.now = at(DAY, 14, 40)
        page.goto(f"{desk.base}/staff/sf/calendar?date={DAY}")
        line = page.locator(".nowline").bounding_box()
        assert line is not None and 0 < line["y"] < 720
        assert page.evaluate("() => scrollY") > 0
        assert page.get_by_role("button", name=f"Complete {name}").count() == 1
        desk.shot("calendar-now", full_page=False)
        assert desk.errors == []
    finally:
        desk.context.close()


def test_book_by_phone_from_a_clicked_free_time_without_email(desk, clinic_day, session):
    page = desk.page
    desk.sign_in(clinic_day["front_desk"])
    page.goto(f"{desk.base}/staff/sf/calendar?date={DAY}")
    page.get_by_role("link", name="Book a patient").click()
    form = page.locator("#book")
    finder = page.locator("#find-time")
    finder.get_by_label("Service").select_option(label="Infusion (40 minutes)")
    finder.get_by_label("Chair or room").select_option(label="Chair 2")
    finder.get_by_role("button", name="Show free times").click()
    page.locator("#free-times").wait_for()
    # The caller's details typed, then a time chosen: the form is filled in place, keeping them
    # (without script the link reloads the page with those four fields filled in).
    form.get_by_label("Patient name").fill("Phone Caller")
    form.get_by_label("Mobile phone").fill("(415) 555-0177")
    page.locator("#free-times").get_by_role("link", name=re.compile(r"^12:15, Chair 2")).click()
    assert form.get_by_label("Service").input_value() == "infusion"
    assert form.get_by_label("Date", exact=True).input_value() == DAY.isoformat()
    assert form.get_by_label("Time").input_value() == "12:15"
    assert form.get_by_label("Chair or room").locator("option:checked").inner_text() == "Chair 2"
    assert form.get_by_label("Patient name").input_value() == "Phone Caller"
    desk.shot("book-free-times")
    form.get_by_role("button", name="Book", exact=True).click()
    page.get_by_text("Booked Phone Caller in Chair 2 at Tue 01 Dec 12:15.").wait_for()
    box = page.locator("a.appt", has_text="Phone Caller")
    assert "12:15" in box.inner_text()
    session.expire_all()
    from scheduler.models import Appointment

    appt = session.scalars(select(Appointment).order_by(Appointment.id.desc())).first()
    assert appt.patient.name == "Phone Caller" and appt.patient.email == ""


def test_book_a_consultation_with_a_chosen_prescriber(desk, clinic_day, session, axe_source):
    from scheduler.models import Appointment, Location
    from tests.test_staffing_support import rota

    sf = session.scalars(select(Location).where(Location.slug == "sf")).one()
    (morning,), _ = rota(session, sf, nurses=0, hours=(dt.time(8), dt.time(12)))
    (all_day,), _ = rota(session, sf, nurses=2, hours=(dt.time(8), dt.time(18)))
    morning.name, all_day.name = "Dr Morning", "Dr Allday"
    session.commit()
    page = desk.page
    desk.sign_in(clinic_day["front_desk"])
    page.goto(f"{desk.base}/staff/sf/book?date={DAY}")
    finder, form = page.locator("#find-time"), page.locator("#book")
    finder.get_by_label("Service").select_option(label="Initial consultation")
    finder.get_by_label("Prescriber (consultations)").select_option(label="Dr Morning")
    finder.get_by_role("button", name="Show free times").click()
    times = page.locator("#free-times a.free-time")
    times.first.wait_for()
    assert max(t.split()[0] for t in times.all_inner_texts()) <= "11:00"  # her shift ends at 12
    form.get_by_label("Patient name").fill("Phone Caller")
    form.get_by_label("Mobile phone").fill("(415) 555-0178")
    page.locator("#free-times").get_by_role("link", name=re.compile(r"^10:00,")).click()
    chosen = form.get_by_label("Prescriber (consultations)").locator("option:checked")
    assert chosen.inner_text() == "Dr Morning"
    assert desk.axe(axe_source) == []
    desk.shot("book-chosen-prescriber")
    form.get_by_role("button", name="Book", exact=True).click()
    page.get_by_text(re.compile("Booked Phone Caller in .* with Dr Morning at")).wait_for()
    session.expire_all()
    appt = session.scalars(select(Appointment).order_by(Appointment.id.desc())).first()
    assert (appt.clinician_id, appt.clinician_chosen) == (morning.id, True)


def _visit_at(desk: Desk, name: str) -> tuple[str, str]:
    """(chair, "HH:MM") of a visit's box on the day calendar, read off the page's own grid."""
    box = desk.page.locator("a.appt", has_text=name)
    chair = desk.page.evaluate(
        """(el) => {
          const c = el.className.match(/\\bcs(\\d+)\\b/)[1];
          return [...document.querySelectorAll('.colhead')][Number(c) - 2].dataset.column;
        }""",
        box.element_handle(),
    )
    return chair, box.locator(".when").inner_text()[:5]


def _drag(desk: Desk, name: str, chair: str, hour: str, minutes: int) -> None:
    """Drag a visit's box by its top edge onto `chair` at `hour` + `minutes`, as a mouse would."""
    page = desk.page
    # The grid's 08:00 line near the top of the viewport (below the sticky chair names), so the
    # visit and its target are both on screen whatever the calendar shows above the grid.
    page.evaluate(
        """() => { window.scrollTo(0, 0);
        const top = document.querySelector('.hline[data-hour="08:00"]').getBoundingClientRect().top;
        window.scrollBy(0, top - 150); }"""
    )
    line = page.locator(f'.hline[data-hour="{hour}"]').bounding_box()
    column = page.locator(f'.colhead[data-column="{chair}"]').bounding_box()
    assert line and column
    y = line["y"] + minutes * 2 + 1  # rows of 5 minutes, 10 px each
    page.locator("a.appt", has_text=name).hover(position={"x": 10, "y": 1})
    page.mouse.down()
    page.mouse.move(column["x"] + 20, y, steps=8)
    page.mouse.up()


def test_move_a_visit_by_drag_and_by_keyboard_and_a_refused_drop_changes_nothing(
    desk, clinic_day, session, axe_source
):
    page = desk.page
    desk.sign_in(clinic_day["front_desk"])
    page.goto(f"{desk.base}/staff/sf/calendar?date={DAY}")
    assert _visit_at(desk, "Ada Lovelace") == ("Chair 1", "09:00")
    assert _visit_at(desk, "Alan Turing") == ("Chair 1", "10:00")

    _drag(desk, "Ada Lovelace", "Chair 3", "11:00", 30)
    page.get_by_text("Ada Lovelace moved to Chair 3 at Tue 01 Dec 11:30.").wait_for()
    assert _visit_at(desk, "Ada Lovelace") == ("Chair 3", "11:30")

    # A refused drop: Alan onto Ada's new place. Explained beside him; nothing changes.
    _drag(desk, "Alan Turing", "Chair 3", "11:00", 30)
    alert = page.locator(".move-error[role=alert]")
    alert.wait_for()
    assert "Not moved" in alert.inner_text() and "not free" in alert.inner_text()
    assert _visit_at(desk, "Alan Turing") == ("Chair 1", "10:00")
    desk.shot("move-refused", full_page=False)
    assert desk.axe(axe_source) == []  # the explanation beside the visit too
    alan = page.locator("a.appt", has_text="Alan Turing")

    # By keyboard: focus Alan, m, one chair right and two steps (30 min) down, Enter.
    alan.focus()
    page.keyboard.press("m")
    assert "Arrow keys move" in page.locator("#move-status").inner_text()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.locator(".ghost").inner_text() == "Chair 2 10:30"
    page.keyboard.press("Enter")
    page.get_by_text("Alan Turing moved to Chair 2 at Tue 01 Dec 10:30.").wait_for()
    assert _visit_at(desk, "Alan Turing") == ("Chair 2", "10:30")
    # Escape puts it back down where it was.
    page.locator("a.appt", has_text="Alan Turing").focus()
    page.keyboard.press("m")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Escape")
    assert page.locator(".ghost").count() == 0
    assert _visit_at(desk, "Alan Turing") == ("Chair 2", "10:30")
    assert desk.errors == []

    session.expire_all()
    from scheduler.models import Appointment, AuditEntry

    moved = {
        a.patient.name: (a.resource.name, a.start_at) for a in session.scalars(select(Appointment))
    }
    assert moved["Ada Lovelace"] == ("Chair 3", at(DAY, 11, 30))
    assert moved["Alan Turing"] == ("Chair 2", at(DAY, 10, 30))
    actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions.count("appointment.moved") == 2


def test_book_for_a_patient_found_by_phone_from_their_record(desk, clinic_day, session, clock):
    from scheduler.models import Appointment, Patient

    # A patient who booked by phone before, without an e-mail, with a visit next week.
    earlier = booking.book(
        session,
        booking.BookingRequest(
            location="sf",
            service="consult",
            start=at(DAY + dt.timedelta(days=7), 14),
            patient=PatientDetails("Ruth Caller", "+14155550188", "", True),
            source="staff",
            allow_short_notice=True,
            require_email=False,
        ),
        now=clock.now,
        settings=ClinicSettings(),
    )
    session.commit()
    ruth = earlier.patient_id
    appointments = {a.id for a in session.scalars(select(Appointment))}
    patient_count = len(session.scalars(select(Patient)).all())
    session.rollback()  # end the read: SQLite would keep the app's writes waiting

    page = desk.page
    desk.sign_in(clinic_day["front_desk"])
    page.goto(f"{desk.base}/staff/sf/calendar?date={DAY}")
    page.get_by_role("search", name="Quick patient search").get_by_label("Find a patient").fill(
        "555-0188"
    )
    page.keyboard.press("Enter")
    page.wait_for_url("**/staff/patients?q=555-0188")
    results = page.locator("#patient-results tbody tr")
    assert results.count() == 1 and "(415) 555-0188" in results.inner_text()
    results.get_by_role("link", name="Ruth Caller").click()
    page.wait_for_url(f"**/staff/patients/{ruth}")
    page.get_by_role("link", name="Book at San Francisco Mission").click()

    # The form starts with Ruth's details; looking up free times keeps them.
    form, finder = page.locator("#book"), page.locator("#find-time")
    assert form.get_by_label("Patient name").input_value() == "Ruth Caller"
    finder.get_by_label("Service").select_option(label="Infusion (40 minutes)")
    finder.get_by_label("Day").fill(DAY.isoformat())
    finder.get_by_label("Chair or room").select_option(label="Chair 2")
    finder.get_by_role("button", name="Show free times").click()
    page.locator("#free-times").wait_for()
    assert form.get_by_label("Patient name").input_value() == "Ruth Caller"
    page.locator("#free-times").get_by_role("link", name=re.compile(r"^12:15, Chair 2")).click()
    assert form.get_by_label("Service").input_value() == "infusion"
    assert form.get_by_label("Date", exact=True).input_value() == DAY.isoformat()
    assert form.get_by_label("Time").input_value() == "12:15"
    assert form.get_by_label("Chair or room").locator("option:checked").inner_text() == "Chair 2"
    assert form.get_by_label("Mobile phone").input_value().endswith("5550188")
    assert form.get_by_label(re.compile("^E-mail")).input_value() == ""
    assert form.get_by_label("Patient agrees to SMS reminders").is_checked()
    desk.shot("book-from-search")
    form.get_by_role("button", name="Book", exact=True).click()

    page.get_by_text("Booked Ruth Caller in Chair 2 at Tue 01 Dec 12:15.").wait_for()
    assert f"/staff/sf/calendar?date={DAY}" in page.url
    box = page.locator("a.appt", has_text="Ruth Caller")
    assert box.count() == 1 and "12:15" in box.inner_text()
    assert desk.errors == []
    # One new visit, for Ruth's own record: no second patient, no other booking.
    session.expire_all()
    new = [a for a in session.scalars(select(Appointment)) if a.id not in appointments]
    assert [(a.patient_id, a.resource.name, a.start_at) for a in new] == [
        (ruth, "Chair 2", at(DAY, 12, 15))
    ]
    assert len(session.scalars(select(Patient)).all()) == patient_count
    patient = session.get(Patient, ruth)
    assert patient.email == "" and patient.sms_consent
