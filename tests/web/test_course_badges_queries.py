"""Course badges on the calendars cost a bounded number of statements, however many courses a
day shows: the API calendar and the staff calendar read them through `course_view.badges`."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event

from scheduler.extensions import db
from scheduler.services import courses
from tests.web.staff_support import DAY, at, make_clinic, sign_in
from tests.web.test_courses_api import INDUCTION, body


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """The statements run inside the block, from an empty session (the test's requests share
    the test's session: what it already holds would not be read again)."""
    db.session.remove()
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def book_course(client: Any, n: int, hour: int) -> None:
    starts = [at(DAY, hour) + dt.timedelta(days=2 * i) for i in range(6)]
    r = client.post("/api/v1/courses", json=body(starts, n))
    assert r.status_code == 201, r.get_json()


def api_calendar(client: Any, token: str) -> tuple[dict[str, Any], int]:
    with statements() as seen:
        r = client.get(
            f"/api/v1/locations/sf/calendar?date={DAY}",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 200
    return r.get_json(), len(seen)


def staff_calendar(client: Any) -> tuple[str, int]:
    with statements() as seen:
        r = client.get(f"/staff/sf/calendar?date={DAY}")
    assert r.status_code == 200
    return r.get_data(as_text=True), len(seen)


def test_calendars_read_course_badges_in_the_same_statements_for_one_course_or_four(
    app, client, session
):
    clinic = make_clinic(session)
    courses.save_template(session, None, INDUCTION)
    session.commit()
    token = clinic.tokens["nurse"]
    book_course(client, 1, 10)
    sign_in(client, "nurse@clinic.example")
    api_calendar(client, token)  # the token's first use is written down once
    _, api_one = api_calendar(client, token)
    _, page_one = staff_calendar(client)

    for n, hour in ((2, 11), (3, 12), (4, 13)):
        book_course(client, n, hour)
    out, api_four = api_calendar(client, token)
    page, page_four = staff_calendar(client)

    visits = [a for r in out["resources"] for a in r["appointments"]]
    assert len(visits) == 4 and len({v["course"]["id"] for v in visits}) == 4
    assert all(v["course"]["session"] == 1 and v["course_progress"] == "0 of 6" for v in visits)
    assert len(re.findall(r'data-testid="course-badge">Session 1 of 6', page)) == 4
    assert api_four == api_one, f"API calendar: {api_one} statements, then {api_four}"
    assert page_four == page_one, f"staff calendar: {page_one} statements, then {page_four}"
