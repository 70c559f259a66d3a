"""Time helpers: the injectable clock, and the one place local wall time becomes an instant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

UTC = dt.UTC
Clock = Callable[[], dt.datetime]


def system_now() -> dt.datetime:
    return dt.datetime.now(UTC)


def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`; raises KeyError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise KeyError(name) from exc


def is_valid_zone(name: str) -> bool:
    return name in available_timezones()


class NonexistentLocalTime(ValueError):
    """The wall time is skipped by a spring-forward transition."""


def local_to_utc(day: dt.date, wall: dt.time, tz: ZoneInfo) -> dt.datetime:
    """Local wall time to a UTC instant.

    Nonexistent times (spring forward) raise NonexistentLocalTime; ambiguous ones (fall back)
    resolve to the first occurrence (fold=0), the earlier instant.
    """
    local = dt.datetime.combine(day, wall).replace(tzinfo=tz, fold=0)
    instant = local.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise NonexistentLocalTime(f"{day} {wall} does not exist in {tz.key}")
    return instant


def is_ambiguous(day: dt.date, wall: dt.time, tz: ZoneInfo) -> bool:
    """True for a wall time that happens twice (the repeated hour at fall back)."""
    naive = dt.datetime.combine(day, wall)
    return (
        naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset()
    )


# The dates the scheduler accepts from anyone (API, pages, query strings): far enough either way
# for birthdays and long plans, near enough that a day's arithmetic never leaves Python's range.
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2200, 12, 31)
RANGE_MESSAGE = f"must be between {EARLIEST_DATE} and {LATEST_DATE}"  # a date field out of range


def in_supported_range(day: dt.date) -> bool:
    return EARLIEST_DATE <= day <= LATEST_DATE
