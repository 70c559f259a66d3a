"""The chair calendar's grid and the day summary, computed without Flask, on both databases."""

from __future__ import annotations

import datetime as dt

import pytest

from scheduler.services import booking, calendar_view
from scheduler.services.calendar_view import Box, _assign_lanes
from scheduler.services.settings import ClinicSettings
from tests.factories import make_location, make_service
from tests.web.staff_support import DAY, at, book


def test_rows_and_columns_of_a_day(session, clock):
    loc = make_location(session, chairs=2, rooms=1)  # open 09:00-17:00
    svc = make_service(session, [loc])  # 40 min, 10 prep, 10 recovery
    appt = book(session, loc, svc, at(DAY, 9, 15), clock.now, resource_id=loc.resources[1].id)
    grid = calendar_view.day_grid(session, loc, DAY, clock.now)
    assert grid.rows == 8 * 12
    assert [c.title for c in grid.columns] == ["Chair 1", "Chair 2", "Room 1"]
    assert grid.hours[0] == (1, "09:00") and grid.hours[-1] == (85, "16:00")
    (box,) = grid.columns[1].boxes
    assert box.appointment is appt
    # 09:05 prep, 09:15-09:55 visit, recovery until 10:05.
    assert (box.row_start, box.main_start, box.main_end, box.row_end) == (2, 4, 12, 14)
    assert grid.columns[1].index == 3
    assert grid.now_row is None  # the day after "now"


def test_the_window_stretches_to_fit_an_early_visit(session, clock):
    loc = make_location(session, chairs=1, rooms=0, hours=((dt.time(7), dt.time(17)),))
    svc = make_service(session, [loc], prep=0, recovery=0)
    book(session, loc, svc, at(DAY, 7), clock.now)
    loc.hours[DAY.weekday()].opens = dt.time(9)  # opening hours changed after booking
    session.flush()
    grid = calendar_view.day_grid(session, loc, DAY, clock.now)
    assert grid.hours[0] == (1, "07:00")
    assert grid.columns[0].boxes[0].row_start == 1
    # 07:00-09:00 is outside the (new) opening hours: shaded as closed.
    assert grid.columns[0].closed[0] == (1, 25)


def test_lunch_break_is_shaded_closed(session, clock):
    loc = make_location(
        session,
        chairs=1,
        rooms=0,
        hours=((dt.time(8), dt.time(12, 30)), (dt.time(13), dt.time(18))),
    )
    grid = calendar_view.day_grid(session, loc, DAY, clock.now)
    assert grid.rows == 10 * 12
    assert grid.columns[0].closed == [(55, 61)]


@pytest.mark.parametrize(
    ("day", "labels", "rows"),
    [
        # Fall back: 01:00 happens twice, the 00:00-06:00 window lasts seven hours.
        (dt.date(2026, 11, 1), ["00:00", "01:00", "01:00", "02:00", "03:00", "04:00", "05:00"], 84),
        # Spring forward: 02:00 never happens, the window lasts five hours.
        (dt.date(2027, 3, 14), ["00:00", "01:00", "03:00", "04:00", "05:00"], 60),
    ],
)
def test_dst_days_have_real_length_and_honest_labels(session, day, labels, rows):
    loc = make_location(session, chairs=1, rooms=0, hours=((dt.time(0), dt.time(6)),))
    svc = make_service(session, [loc], prep=0, recovery=0, step=60, notice_minutes=0)
    earlier = dt.datetime.combine(day - dt.timedelta(days=2), dt.time(0), tzinfo=dt.UTC)
    appt = book(session, loc, svc, at(day, 4), earlier)
    grid = calendar_view.day_grid(session, loc, day, earlier)
    assert [label for _, label in grid.hours] == labels
    assert grid.rows == rows
    # The box sits where 04:00 local really is, counted in elapsed time from midnight.
    elapsed = (appt.start_at - at(day, 0)).total_seconds() / 3600
    assert grid.columns[0].boxes[0].main_start == 1 + int(elapsed * 12)


def test_a_no_show_and_the_booking_that_took_its_chair_sit_side_by_side(session, clock):
    loc = make_location(session, chairs=1, rooms=0)
    svc = make_service(session, [loc])
    first = book(session, loc, svc, at(DAY, 10), clock.now, n=1)
    # 10:05, nobody came: a no-show, and a walk-in takes the chair at 10:15.
    no_show_at = at(DAY, 10, 5)
    booking.set_status(session, first, "no_show", now=no_show_at, settings=ClinicSettings())
    book(session, loc, svc, at(DAY, 10, 15), no_show_at, n=2)
    later = book(session, loc, svc, at(DAY, 14), clock.now, n=3)
    grid = calendar_view.day_grid(session, loc, DAY, clock.now)
    boxes = {b.appointment.id: b for b in grid.columns[0].boxes}
    assert {(b.lane, b.lanes) for b in boxes.values() if b.appointment is not later} == {
        (0, 2),
        (1, 2),
    }
    assert (boxes[later.id].lane, boxes[later.id].lanes) == (0, 1)


def test_lanes_reuse_a_free_lane():
    def box(a: int, b: int) -> Box:
        return Box("block", a, b, a, b)

    boxes = [box(1, 10), box(5, 15), box(11, 20), box(30, 40)]
    _assign_lanes(boxes)
    assert [(b.lane, b.lanes) for b in boxes] == [(0, 2), (1, 2), (0, 2), (0, 1)]


def test_blocks_are_clipped_to_the_window(session, clock):
    loc = make_location(session, chairs=1, rooms=0)
    booking.create_block(
        session, loc.resources[0], at(DAY, 0), at(DAY + dt.timedelta(days=3), 0), now=clock.now
    )
    grid = calendar_view.day_grid(session, loc, DAY, clock.now)
    (box,) = grid.columns[0].boxes
    assert (box.kind, box.row_start, box.row_end) == ("block", 1, grid.rows + 1)
    assert grid.hours[0][1] == "09:00"


def test_now_line_today(session, clock):
    loc = make_location(session, chairs=2, rooms=0)
    clock.now = at(dt.date(2026, 11, 30), 10, 42)
    grid = calendar_view.day_grid(session, loc, dt.date(2026, 11, 30), clock.now)
    assert (grid.now_row, grid.now_offset, grid.now_columns) == (1 + 20, 2, (2, 4))


def test_week_grid_puts_each_visit_in_its_day(session, clock):
    loc = make_location(session, chairs=1, rooms=0)
    svc = make_service(session, [loc])
    wednesday = DAY + dt.timedelta(days=1)
    book(session, loc, svc, at(wednesday, 11), clock.now)
    grid = calendar_view.week_grid(session, loc, loc.resources[0], DAY, clock.now)
    assert [c.day for c in grid.columns][0] == dt.date(2026, 11, 30)
    assert [len(c.boxes) for c in grid.columns] == [0, 0, 1, 0, 0, 0, 0]
    assert grid.columns[2].index == 4
    # Monday 30 Nov at 08:00 is "now": before opening, so no line is drawn.
    assert grid.now_row is None


def test_day_summary_counts_and_chairs_in_use(session, clock):
    loc = make_location(session, chairs=4, rooms=1)
    svc = make_service(session, [loc])
    consult = make_service(
        session, [loc], kind="consultation", resource_kind="room", prep=0, recovery=0
    )
    a = book(session, loc, svc, at(DAY, 9, 15), clock.now, n=1)
    book(session, loc, svc, at(DAY, 9, 15), clock.now, n=2)
    c = book(session, loc, svc, at(DAY, 11), clock.now, n=3)
    book(session, loc, consult, at(DAY, 9), clock.now, n=4)
    booking.set_status(session, a, "no_show", now=at(DAY, 9, 30), settings=ClinicSettings())
    booking.cancel(session, c, now=clock.now, settings=ClinicSettings(), by_staff=True)
    s = calendar_view.day_summary(session, loc, DAY)
    assert s.total == 3
    assert s.by_status == {
        "booked": 2,
        "checked_in": 0,
        "completed": 0,
        "cancelled": 1,
        "no_show": 1,
    }
    assert [x.patient.name for x in s.no_shows] == ["Pat Patient 1"]
    use = {h.label: (h.in_use, h.total, h.percent) for h in s.hours}
    # Only the second infusion holds a chair (09:05-10:05); rooms are not chairs.
    assert use["09"] == (1, 4, 25) and use["10"] == (1, 4, 25) and use["11"] == (0, 4, 0)


def test_grid_stylesheet_has_a_class_for_every_position():
    css = calendar_view.grid_css(max_columns=3)
    assert ".rs1{grid-row-start:1}" in css
    assert f".re{calendar_view.MAX_ROWS + 1}{{" in css
    assert ".cols3{" in css and ".lane1of2{" in css and ".pct100{height:100%}" in css
