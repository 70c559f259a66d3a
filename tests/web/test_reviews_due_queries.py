"""The "course reviews due" list on the staff home page and calendar costs a bounded number of
statements, however many courses are due: their next held sessions, patients and templates are
read together, not course by course."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from scheduler.services import courses
from tests.conftest import DEFAULT_NOW
from tests.web.staff_support import DAY, at, make_clinic, sign_in
from tests.web.test_course_badges_queries import statements
from tests.web.test_courses_api import INDUCTION, body

# Sessions 3 to 6 of each course wait for the review; session 3 is on DAY + 4 days, so every
# course booked below (10:00 to 13:00 on DAY) is due for review from this time on.
DUE = at(DAY + dt.timedelta(days=2), 14)


def book_course(client: Any, n: int, hour: int) -> None:
    """Course `n` for patient `n`, on its own template (`induction-n`), from `hour` on DAY."""
    starts = [at(DAY, hour) + dt.timedelta(days=2 * i) for i in range(6)]
    r = client.post("/api/v1/courses", json={**body(starts, n), "course": f"induction-{n}"})
    assert r.status_code == 201, r.get_json()


def page(client: Any, url: str) -> tuple[str, int]:
    with statements() as seen:
        r = client.get(url)
    assert r.status_code == 200
    return r.get_data(as_text=True), len(seen)


def due_lines(html: str) -> list[str]:
    section = re.search(r'<section class="reviews-due".*?</section>', html, re.S)
    assert section is not None, "no reviews-due list"
    return re.findall(r"<li>.*?</li>", section.group(0), re.S)


def test_reviews_due_list_reads_the_same_statements_for_one_course_or_four(
    app, client, session, clock
):
    make_clinic(session)
    for n in range(1, 5):
        template = {**INDUCTION, "slug": f"induction-{n}", "name": f"Induction {n}"}
        courses.save_template(session, None, template)
    session.commit()
    sign_in(client, "nurse@clinic.example")
    urls = ("/staff/", f"/staff/sf/calendar?date={DAY}")

    book_course(client, 1, 10)
    clock.now = DUE
    one = {url: page(client, url) for url in urls}
    for html, _ in one.values():
        (line,) = due_lines(html)
        assert "Pat Patient 1: Induction 1 (0 of 6)" in line and "next held session" in line

    clock.now = DEFAULT_NOW
    for n, hour in ((2, 11), (3, 12), (4, 13)):
        book_course(client, n, hour)
    clock.now = DUE
    for url in urls:
        html, count = page(client, url)
        lines = due_lines(html)
        assert len(lines) == 4
        for n, line in enumerate(lines, start=1):  # soonest first: course 1's session is first
            assert f"Pat Patient {n}: Induction {n} (0 of 6)" in line
            assert f"Sat 05 Dec {9 + n:02d}:00" in line
        assert count == one[url][1], f"{url}: {one[url][1]} statements, then {count}"
