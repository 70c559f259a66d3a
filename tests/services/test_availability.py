"""The availability engine as a pure function: no database, no Flask."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from scheduler.services.availability import Rules, free_slots, overlaps

LA = ZoneInfo("America/Los_Angeles")
UTC = dt.UTC
NINE_TO_FIVE = {d: [(dt.time(9), dt.time(17))] for d in range(7)}


def rules(
    duration: int = 60,
    prep: int = 0,
    recovery: int = 0,
    step: int = 15,
    earliest: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=UTC),
    latest: dt.datetime = dt.datetime(2100, 1, 1, tzinfo=UTC),
) -> Rules:
    return Rules(
        duration=dt.timedelta(minutes=duration),
        prep=dt.timedelta(minutes=prep),
        recovery=dt.timedelta(minutes=recovery),
        step=dt.timedelta(minutes=step),
        earliest=earliest,
        latest=latest,
    )


def local(day: dt.date, hour: int, minute: int = 0, tz: ZoneInfo = LA) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz).astimezone(UTC)


def slots(day: dt.date, busy=None, r: Rules | None = None, tz: ZoneInfo = LA, **kw):
    return free_slots(
        tz=tz,
        first_day=day,
        days=kw.pop("days", 1),
        hours=kw.pop("hours", NINE_TO_FIVE),
        closed_days=kw.pop("closed", set()),
        resource_ids=kw.pop("resources", [1]),
        busy=busy or {},
        rules=r or rules(),
        **kw,
    )


DAY = dt.date(2026, 12, 1)


def test_grid_runs_from_opening_until_the_last_start_that_fits():
    result = slots(DAY)
    assert result[0].start == local(DAY, 9)
    assert result[-1].start == local(DAY, 16)
    assert len(result) == 29  # 09:00 .. 16:00 every 15 minutes


def test_prep_and_recovery_must_fit_inside_opening_hours():
    result = slots(DAY, r=rules(duration=40, prep=10, recovery=10))
    # 09:10 is off the 15-minute grid, but its prep starts right at opening.
    assert [s.start for s in result[:2]] == [local(DAY, 9, 10), local(DAY, 9, 15)]
    # 16:15 + 40 + 10 = 17:05 > 17:00, so 16:00 is the last start.
    assert result[-1].start == local(DAY, 16)


@pytest.mark.parametrize(
    ("busy_from", "busy_to", "blocked_starts"),
    [
        # a busy hour 11:00-12:00 blocks the 60-minute starts that would overlap it
        ((11, 0), (12, 0), [(10, 15), (10, 30), (10, 45), (11, 0), (11, 15), (11, 30), (11, 45)]),
        # back to back at both edges is fine: 10:00 ends at 11:00, 12:00 starts at 12:00
    ],
)
def test_busy_interval_blocks_exactly_the_overlapping_starts(busy_from, busy_to, blocked_starts):
    busy = {1: [(local(DAY, *busy_from), local(DAY, *busy_to))]}
    starts = {s.start for s in slots(DAY, busy)}
    for hm in blocked_starts:
        assert local(DAY, *hm) not in starts
    assert local(DAY, 10) in starts
    assert local(DAY, 12) in starts


def test_buffers_count_against_busy_time():
    busy = {1: [(local(DAY, 11), local(DAY, 12))]}
    starts = {s.start for s in slots(DAY, busy, rules(duration=40, prep=10, recovery=10))}
    assert local(DAY, 10, 15) not in starts  # occupied 10:05-11:05
    assert local(DAY, 10, 0) in starts  # occupied 09:50-10:50
    assert local(DAY, 12, 0) not in starts  # prep 11:50 overlaps the busy hour
    assert local(DAY, 12, 15) in starts  # prep 12:05


def test_free_counts_resources_and_full_slots_are_left_out_unless_asked():
    busy = {1: [(local(DAY, 9), local(DAY, 17))]}
    result = slots(DAY, busy, resources=[1, 2])
    assert all(s.free == 1 for s in result)
    full = slots(DAY, {1: busy[1], 2: busy[1]}, resources=[1, 2])
    assert full == []
    assert len(slots(DAY, {1: busy[1], 2: busy[1]}, resources=[1, 2], include_full=True)) == 29


def test_overlapping_busy_intervals_are_merged():
    busy = {1: [(local(DAY, 9), local(DAY, 12)), (local(DAY, 10), local(DAY, 11))]}
    starts = {s.start for s in slots(DAY, busy)}
    assert local(DAY, 11, 30) not in starts
    assert local(DAY, 12) in starts


def test_several_intervals_a_day_leave_the_lunch_break_out():
    hours = {d: [(dt.time(8), dt.time(12, 30)), (dt.time(13), dt.time(18))] for d in range(7)}
    starts = {s.start for s in slots(DAY, hours=hours)}
    assert local(DAY, 11, 30) in starts
    assert local(DAY, 11, 45) not in starts  # would run into lunch
    assert local(DAY, 12, 30) not in starts
    assert local(DAY, 13) in starts


def test_closed_days_and_days_without_hours_offer_nothing():
    assert slots(DAY, closed={DAY}) == []
    assert slots(DAY, hours={}) == []


def test_minimum_notice_and_horizon_trim_the_window():
    r = rules(earliest=local(DAY, 12), latest=local(DAY, 14))
    starts = [s.start for s in slots(DAY, r=r)]
    assert starts[0] == local(DAY, 12)
    assert starts[-1] == local(DAY, 14)


@pytest.mark.parametrize(
    ("day", "offset_hours"),
    [
        (dt.date(2026, 3, 7), -8),  # Saturday before spring forward: PST
        (dt.date(2026, 3, 8), -7),  # the transition day itself: PDT from 03:00
        (dt.date(2026, 3, 9), -7),
        (dt.date(2026, 10, 31), -7),
        (dt.date(2026, 11, 1), -8),  # fall back day
        (dt.date(2026, 11, 2), -8),
    ],
)
def test_opening_stays_at_local_nine_across_us_dst_transitions(day, offset_hours):
    first = slots(day)[0].start
    assert first.astimezone(LA).time() == dt.time(9)
    assert first.astimezone(LA).utcoffset() == dt.timedelta(hours=offset_hours)
    assert first == dt.datetime.combine(day, dt.time(9 - offset_hours), tzinfo=UTC)


def test_nonexistent_local_times_are_never_offered_on_spring_forward():
    night = {6: [(dt.time(1), dt.time(4))]}  # 8 March 2026 is a Sunday
    result = slots(dt.date(2026, 3, 8), hours=night, r=rules(duration=15))
    walls = [s.start.astimezone(LA).strftime("%H:%M") for s in result]
    assert not any(w.startswith("02:") for w in walls)
    assert "01:45" in walls and "03:00" in walls
    assert len({s.start for s in result}) == len(result)


def test_ambiguous_fall_back_hour_is_not_offered():
    night = {6: [(dt.time(0), dt.time(3))]}  # 1 Nov 2026 is a Sunday
    result = slots(dt.date(2026, 11, 1), hours=night, r=rules(duration=15))
    walls = [s.start.astimezone(LA).strftime("%H:%M") for s in result]
    assert not any(w.startswith("01:") for w in walls)
    assert "00:45" in walls and "02:00" in walls


def test_half_hour_zone_opening_is_local():
    adelaide = ZoneInfo("Australia/Adelaide")
    first = slots(DAY, tz=adelaide)[0].start
    assert first.astimezone(adelaide).time() == dt.time(9)
    assert first.astimezone(adelaide).utcoffset() == dt.timedelta(hours=10, minutes=30)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((10, 11), (11, 12), False),  # back to back
        ((11, 12), (10, 11), False),
        ((10, 12), (11, 13), True),  # tail
        ((11, 13), (10, 12), True),  # head
        ((10, 13), (11, 12), True),  # containing
        ((11, 12), (10, 13), True),  # contained
        ((10, 11), (10, 11), True),  # identical
    ],
)
def test_overlap_predicate_is_half_open(a, b, expected):
    def at(h: int) -> dt.datetime:
        return local(DAY, h)

    assert overlaps(at(a[0]), at(a[1]), at(b[0]), at(b[1])) is expected


def test_start_window_room_matches_a_brute_force_count():
    import random

    from scheduler.services.availability import StartWindow

    rng = random.Random(11)
    base = local(DAY, 8)
    window = dt.timedelta(minutes=30)
    for _ in range(200):
        starts = sorted(base + dt.timedelta(minutes=5 * rng.randrange(0, 24)) for _ in range(6))
        index = StartWindow(starts, window)
        for minute in range(0, 130, 5):
            new = base + dt.timedelta(minutes=minute)
            fullest = max(
                sum(1 for x in starts if t <= x < t + window)
                for t in (new - window + dt.timedelta(minutes=m) for m in range(1, 31))
            )
            assert index.room(new, 3) == 3 - fullest, (starts, new)


def test_staffing_limits_take_the_smallest_of_chairs_nurses_and_starts():
    from scheduler.services.availability import Floor, Staffing

    staffing = Staffing(rules=True, patients_per_nurse=2, starts_per_window=5)
    floor = Floor(
        staffing=staffing,
        prescribers={7: [(local(DAY, 9), local(DAY, 13))]},
        nurses=[(local(DAY, 9), local(DAY, 17))],
        infusions=[(local(DAY, 9, 50), local(DAY, 10, 50))],
        starts=[local(DAY, 10)],
    )
    result = {s.start: s.free for s in slots(DAY, resources=[1, 2, 3], floor=floor)}
    assert result[local(DAY, 11)] == 2  # one nurse x 2, nobody in: the nurse limits
    assert result[local(DAY, 10)] == 1  # meets the 09:50-10:50 visit
    assert result[local(DAY, 12)] == 2  # ends 13:00, as the prescriber leaves
    assert local(DAY, 12, 15) not in result  # ends 13:15, after the prescriber leaves
    assert local(DAY, 13) not in result


def test_range_table_answers_every_slice_like_min_and_max():
    import numpy as np

    from scheduler.services.availability import _RangeTable

    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 7, 8, 9, 64, 100):
        values = rng.integers(-50, 50, n)
        lo, hi = np.array([(a, b) for a in range(n) for b in range(a + 1, n + 1)]).T
        least = _RangeTable(values, np.minimum).over(lo, hi)
        greatest = _RangeTable(values, np.maximum).over(lo, hi)
        assert least.tolist() == [values[a:b].min() for a, b in zip(lo, hi, strict=True)]
        assert greatest.tolist() == [values[a:b].max() for a, b in zip(lo, hi, strict=True)]


def test_steps_least_and_greatest_value_over_an_interval_match_a_brute_force_scan():
    import random

    from scheduler.services.availability import Steps

    rng = random.Random(17)
    for _ in range(300):
        weighted = []
        for _ in range(rng.randrange(0, 8)):
            start = rng.randrange(0, 100)
            weighted.append((start, start + rng.randrange(1, 40), rng.randrange(-3, 4)))
        steps = Steps(weighted)

        def value(t: int, weighted=weighted) -> int:
            return sum(w for s, e, w in weighted if s <= t < e)

        for _ in range(20):
            a = rng.randrange(-5, 150)
            b = a + rng.randrange(0, 50)
            seen = [value(t) for t in range(a, max(b, a + 1))]
            assert steps.at(a) == value(a)
            assert steps.min_over(a, b) == min(seen), (weighted, a, b)
            assert steps.max_over(a, b) == max(seen), (weighted, a, b)


def test_free_resources_match_a_brute_force_count_with_overlapping_busy_time():
    """Visits, blocks over them and touching intervals: each start's free count is the chairs
    whose busy time misses its whole occupied interval, counted one by one."""
    import random

    rng = random.Random(29)
    r = rules(duration=40, prep=10, recovery=15, step=5)
    for _ in range(120):
        resources = list(range(1, rng.randrange(2, 6)))
        busy = {
            rid: [
                (at, at + dt.timedelta(minutes=rng.randrange(5, 120)))
                for at in (
                    local(DAY, 9) + dt.timedelta(minutes=rng.randrange(-30, 480, 5))
                    for _ in range(rng.randrange(0, 6))
                )
            ]
            for rid in resources
        }
        found = {
            s.start: s.free
            for s in slots(DAY, busy=busy, r=r, resources=resources, include_full=True)
        }
        assert found
        for start, free in found.items():
            occupied = (start - r.prep, start + r.duration + r.recovery)
            expected = sum(
                all(not overlaps(*occupied, x, y) for x, y in busy[rid]) for rid in resources
            )
            assert free == expected, (busy, start)
