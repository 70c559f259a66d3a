"""Utilisation equals a minute-by-minute count over the same visits and shifts, on both databases,
across DST changes (and a zone whose clocks move by half an hour)."""

from __future__ import annotations

import datetime as dt

import pytest

from scheduler.services import reports
from scheduler.services.errors import InvalidInput
from tests.factories import make_location
from tests.reports_support import brute_force, seed_fortnight

CASES = [
    ("America/New_York", dt.date(2026, 10, 26)),  # fall back on Sunday 1 November
    ("America/New_York", dt.date(2026, 3, 2)),  # spring forward on Sunday 8 March
    ("Australia/Lord_Howe", dt.date(2026, 9, 28)),  # 02:00 -> 02:30 on Sunday 4 October
]


@pytest.mark.parametrize(
    ("zone", "first"), CASES, ids=["fall-back", "spring-forward", "half-hour-shift"]
)
def test_utilisation_equals_a_minute_by_minute_count(session, zone, first):
    f = seed_fortnight(session, zone, first)
    now = dt.datetime.combine(first + dt.timedelta(days=9), dt.time(12), tzinfo=dt.UTC)
    report = reports.utilisation(session, f.location, f.first, f.last, now=now)
    expected = brute_force(session, f, now)
    got = {
        (c.weekday, c.hour): {
            "open_chair_minutes": c.open_chair_minutes,
            "booked_chair_minutes": c.booked_chair_minutes,
            "nurse_capacity_minutes": c.nurse_capacity_minutes,
            "nurse_load_minutes": c.nurse_load_minutes,
        }
        for c in report.cells
    }
    want = {k: {name: v.get(name, 0) for name in got[k]} for k, v in expected["cells"].items()}
    assert len(report.cells) == 168
    mismatched = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert mismatched == {}
    # Something in every column, so the comparison could have failed.
    for name in (
        "open_chair_minutes",
        "booked_chair_minutes",
        "nurse_capacity_minutes",
        "nurse_load_minutes",
    ):
        assert sum(v[name] for v in got.values()) > 0, name
    assert (report.due, report.no_shows, report.booked, report.late_cancels) == (
        expected["due"],
        expected["no_shows"],
        expected["booked"],
        expected["late_cancels"],
    )
    assert report.no_shows > 0 and report.late_cancels > 0
    assert report.late_cancels < len([1 for _ in range(report.booked)])


def test_the_repeated_hour_counts_twice_and_the_skipped_hour_not_at_all(session):
    f = seed_fortnight(session, "America/New_York", dt.date(2026, 10, 26))
    fall = reports.utilisation(
        session, f.location, dt.date(2026, 11, 1), dt.date(2026, 11, 1), now=dt.datetime.now(dt.UTC)
    )
    sunday = {c.hour: c for c in fall.cells if c.weekday == 6}
    # Open round the clock on Sundays; 3 active chairs, one blocked from 01:00 (the first one).
    assert sunday[0].open_chair_minutes == 3 * 60
    assert sunday[1].open_chair_minutes == 2 * 2 * 60  # two 01:00 hours, both counted
    assert sunday[3].open_chair_minutes == 2 * 60
    spring = reports.utilisation(
        session, f.location, dt.date(2027, 3, 14), dt.date(2027, 3, 14), now=dt.datetime.now(dt.UTC)
    )
    sunday = {c.hour: c for c in spring.cells if c.weekday == 6}
    assert sunday[2].open_chair_minutes == 0
    assert sunday[2].nurse_capacity_minutes == 0
    assert sunday[3].open_chair_minutes == 3 * 60


@pytest.mark.parametrize(
    ("first", "last", "field"),
    [
        (dt.date(2026, 12, 2), dt.date(2026, 12, 1), "to"),
        (dt.date(2026, 1, 1), dt.date(2026, 4, 4), "to"),
        (dt.date(1899, 12, 31), dt.date(1900, 1, 2), "from"),
    ],
    ids=["backwards", "too-long", "too-early"],
)
def test_bad_ranges_are_refused_naming_the_field(session, first, last, field):
    location = make_location(session)
    with pytest.raises(InvalidInput) as exc:
        reports.utilisation(session, location, first, last, now=dt.datetime.now(dt.UTC))
    assert field in exc.value.fields
