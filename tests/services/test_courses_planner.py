"""The course planner's rules as edge tables, without a database: gaps, window, weekday
patterns, closures, DST, backtracking, and the check of a client's starts.

Free starts come from the availability engine's pure functions (`availability.free_slots`), as
`courses.plan` gets them from `location_slots`.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from scheduler.services import availability, courses
from scheduler.services.courses import NoPlan, TemplateRules, check_starts, plan_sessions
from scheduler.services.errors import InvalidInput

LA = ZoneInfo("America/Los_Angeles")
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # Mon 30 Nov 2026, 08:00 in LA
ALL_DAY = {d: [(dt.time(9), dt.time(17))] for d in range(7)}
ROUND_CLOCK = {d: [(dt.time(0), dt.time(0))] for d in range(7)}

INDUCTION = TemplateRules(
    sessions=6,
    min_gap=dt.timedelta(hours=44),
    max_gap=dt.timedelta(days=7),
    within_days=21,
    duration=dt.timedelta(minutes=40),
)
MWF = TemplateRules(
    sessions=6,
    min_gap=dt.timedelta(hours=44),
    max_gap=dt.timedelta(hours=96),
    within_days=14,
    weekdays=frozenset({0, 2, 4}),
)
CRPS = TemplateRules(
    sessions=5,
    min_gap=dt.timedelta(hours=20),
    max_gap=dt.timedelta(hours=96),
    within_days=10,
    weekdays=courses.WORKDAYS,
    consecutive_weekdays=True,
    duration=dt.timedelta(hours=4),
)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=LA).astimezone(UTC)


def free(
    first: dt.date,
    days: int,
    *,
    hours=ALL_DAY,
    closed=(),
    busy=(),
    chairs: int = 1,
    duration: int = 40,
) -> list[dt.datetime]:
    """The engine's free starts for `chairs` chairs, all busy over each interval in `busy`."""
    rules = availability.Rules(
        duration=dt.timedelta(minutes=duration),
        prep=dt.timedelta(0),
        recovery=dt.timedelta(0),
        step=dt.timedelta(minutes=15),
        earliest=NOW,
        latest=NOW + dt.timedelta(days=400),
    )
    ids = list(range(1, chairs + 1))
    slots = availability.free_slots(
        tz=LA,
        first_day=first,
        days=days,
        hours=hours,
        closed_days=set(closed),
        resource_ids=ids,
        busy={rid: list(busy) for rid in ids},
        rules=rules,
    )
    return [s.start for s in slots]


def local(instant: dt.datetime) -> tuple[dt.date, dt.time]:
    value = instant.astimezone(LA)
    return value.date(), value.time()


def days_of(plan) -> list[str]:
    return [f"{s.start.astimezone(LA):%a %d %H:%M}" for s in plan]


def test_induction_every_session_at_the_same_local_time_every_second_day():
    first = at(dt.date(2026, 12, 1), 10)
    plan = plan_sessions(INDUCTION, first, tz=LA, free_starts=free(dt.date(2026, 12, 1), 21))
    assert days_of(plan) == [
        "Tue 01 10:00",
        "Thu 03 10:00",
        "Sat 05 10:00",
        "Mon 07 10:00",
        "Wed 09 10:00",
        "Fri 11 10:00",
    ]
    assert all(s.moved is None for s in plan)
    assert all(s.end - s.start == dt.timedelta(minutes=40) for s in plan)


def test_a_closure_moves_one_session_and_says_why():
    day = dt.date(2026, 12, 1)
    closed = {dt.date(2026, 12, 3)}
    plan = plan_sessions(
        INDUCTION, at(day, 10), tz=LA, free_starts=free(day, 21, closed=closed), closed_days=closed
    )
    assert days_of(plan)[:3] == ["Tue 01 10:00", "Fri 04 10:00", "Sun 06 10:00"]
    assert plan[1].moved == "The clinic is closed on Thu 3 Dec: moved to Fri 4 Dec at 10:00."
    assert plan[2].moved is None  # back at the same time, two days on


def test_a_full_hour_moves_the_session_to_the_nearest_free_start_that_keeps_the_gap():
    day = dt.date(2026, 12, 1)
    busy = [(at(dt.date(2026, 12, 3), 10), at(dt.date(2026, 12, 3), 11))]
    plan = plan_sessions(INDUCTION, at(day, 10), tz=LA, free_starts=free(day, 21, busy=busy))
    # 09:15 ends at 09:55, 47 h 15 min after Tue 10:00: nearer 10:00 than 11:00.
    assert days_of(plan)[1] == "Thu 03 09:15"
    assert plan[1].moved == "Nothing is free at 10:00 on Thu 3 Dec: moved to Thu 3 Dec at 09:15."
    gaps = [b.start - a.start for a, b in zip(plan, plan[1:], strict=False)]
    assert all(dt.timedelta(hours=44) <= g <= dt.timedelta(days=7) for g in gaps)


def test_mon_wed_fri_pattern():
    day = dt.date(2026, 12, 7)
    plan = plan_sessions(MWF, at(day, 9), tz=LA, free_starts=free(day, 14))
    assert days_of(plan) == [
        "Mon 07 09:00",
        "Wed 09 09:00",
        "Fri 11 09:00",
        "Mon 14 09:00",
        "Wed 16 09:00",
        "Fri 18 09:00",
    ]


def test_crps_consecutive_weekdays_skip_the_weekend_and_a_closed_monday():
    day = dt.date(2026, 12, 2)  # a Wednesday
    hours = {d: [(dt.time(8), dt.time(18))] for d in range(7)}
    starts = free(day, 10, hours=hours, duration=240)
    plan = plan_sessions(CRPS, at(day, 8), tz=LA, free_starts=starts)
    assert days_of(plan) == [
        "Wed 02 08:00",
        "Thu 03 08:00",
        "Fri 04 08:00",
        "Mon 07 08:00",
        "Tue 08 08:00",
    ]
    closed = {dt.date(2026, 12, 7)}
    starts = free(day, 10, hours=hours, duration=240, closed=closed)
    plan = plan_sessions(CRPS, at(day, 8), tz=LA, free_starts=starts, closed_days=closed)
    assert days_of(plan)[3:] == ["Tue 08 08:00", "Wed 09 08:00"]
    assert plan[3].moved == "The clinic is closed on Mon 7 Dec: moved to Tue 8 Dec at 08:00."


def test_same_local_time_across_spring_forward():
    day = dt.date(2027, 3, 11)  # Thursday; clocks go forward on Sunday 14 March
    plan = plan_sessions(INDUCTION, at(day, 10), tz=LA, free_starts=free(day, 21))
    assert {local(s.start)[1] for s in plan} == {dt.time(10)}
    assert {s.start.astimezone(LA).utcoffset() for s in plan} == {
        dt.timedelta(hours=-8),
        dt.timedelta(hours=-7),
    }
    assert all(s.moved is None for s in plan)


def test_a_wall_time_the_clocks_skip_moves_to_the_nearest_wall_time_and_says_so():
    day = dt.date(2027, 3, 12)  # Friday 02:30; Sunday 02:30 does not exist
    plan = plan_sessions(
        INDUCTION, at(day, 2, 30), tz=LA, free_starts=free(day, 21, hours=ROUND_CLOCK)
    )
    assert days_of(plan)[1] == "Sun 14 03:00"
    assert plan[1].moved == (
        "02:30 does not exist on Sun 14 Mar (the clocks go forward): moved to Sun 14 Mar at 03:00."
    )
    assert plan[1].start - plan[0].start == dt.timedelta(hours=47, minutes=30)
    assert days_of(plan)[2] == "Tue 16 02:30" and plan[2].moved is None


def test_the_repeated_hour_at_fall_back_is_not_offered_and_the_move_is_explained():
    day = dt.date(2027, 11, 5)  # Friday 01:30; Sunday 7 Nov 01:30 happens twice
    plan = plan_sessions(
        INDUCTION, at(day, 1, 30), tz=LA, free_starts=free(day, 21, hours=ROUND_CLOCK)
    )
    assert plan[1].moved is not None
    assert plan[1].moved.startswith("01:30 happens twice on Sun 7 Nov (the clocks go back)")
    assert plan[1].start - plan[0].start >= dt.timedelta(hours=44)


def test_backtracks_when_the_nearest_start_leaves_no_room_for_the_next():
    rules = TemplateRules(
        sessions=3,
        min_gap=dt.timedelta(hours=24),
        max_gap=dt.timedelta(hours=30),
        within_days=3,
    )
    tue, wed, thu = dt.date(2026, 12, 1), dt.date(2026, 12, 2), dt.date(2026, 12, 3)
    starts = [at(tue, 10), at(wed, 10, 15), at(wed, 15), at(thu, 16, 30)]
    plan = plan_sessions(rules, at(tue, 10), tz=LA, free_starts=starts)
    assert days_of(plan) == ["Tue 01 10:00", "Wed 02 15:00", "Thu 03 16:30"]


@pytest.mark.parametrize(
    ("first", "free_days", "closed", "field_message"),
    [
        (at(dt.date(2026, 12, 1), 10, 5), 21, (), "not a free time"),
        (at(dt.date(2026, 12, 1), 10), 1, (), "no plan fits from this start"),
    ],
    ids=["first-not-free", "nothing-after-the-first-day"],
)
def test_no_plan(first, free_days, closed, field_message):
    with pytest.raises(NoPlan) as caught:
        plan_sessions(INDUCTION, first, tz=LA, free_starts=free(dt.date(2026, 12, 1), free_days))
    assert caught.value.code == "no_plan" and caught.value.http_status == 409
    assert caught.value.fields == {"first_start": field_message}


def test_no_plan_on_a_weekday_outside_the_pattern():
    tuesday = dt.date(2026, 12, 8)
    with pytest.raises(NoPlan) as caught:
        plan_sessions(MWF, at(tuesday, 9), tz=LA, free_starts=free(tuesday, 14))
    assert caught.value.fields == {"first_start": "not on one of the course's weekdays"}


def test_a_hopeless_search_gives_up_within_its_budget():
    rules = TemplateRules(
        sessions=8, min_gap=dt.timedelta(hours=1), max_gap=dt.timedelta(hours=2), within_days=1
    )
    day = dt.date(2026, 12, 1)
    # Starts every 15 minutes from 09:00 to 12:00 only: 8 sessions an hour apart cannot fit.
    starts = [at(day, 9) + dt.timedelta(minutes=15 * i) for i in range(13)]
    with pytest.raises(NoPlan):
        plan_sessions(rules, starts[0], tz=LA, free_starts=starts)


GOOD = [at(dt.date(2026, 12, d), 10) for d in (1, 3, 5, 7, 9, 11)]


@pytest.mark.parametrize(
    ("starts", "bad"),
    [
        (GOOD[:5], "starts"),
        ([GOOD[0], GOOD[1] - dt.timedelta(hours=5), *GOOD[2:]], "starts[1]"),
        ([*GOOD[:5], GOOD[4] + dt.timedelta(days=8)], "starts[5]"),
        ([*GOOD[:5], at(dt.date(2026, 12, 22), 10)], "starts[5]"),
        ([GOOD[1], GOOD[0], *GOOD[2:]], "starts[1]"),
    ],
    ids=["count", "too-close", "too-far", "outside-window", "out-of-order"],
)
def test_check_starts_names_the_session(starts, bad):
    with pytest.raises(InvalidInput) as caught:
        check_starts(INDUCTION, starts, tz="America/Los_Angeles")
    assert "starts" in caught.value.fields and bad in caught.value.fields


def test_check_starts_keeps_the_weekday_pattern():
    starts = [at(dt.date(2026, 12, d), 9) for d in (7, 9, 11, 14, 16, 18)]
    check_starts(MWF, starts, tz="America/Los_Angeles")
    starts[2] = at(dt.date(2026, 12, 12), 9)  # a Saturday
    with pytest.raises(InvalidInput) as caught:
        check_starts(MWF, starts, tz="America/Los_Angeles")
    assert caught.value.fields["starts[2]"] == "is not on one of the course's weekdays"
    check_starts(INDUCTION, GOOD, tz="America/Los_Angeles")
