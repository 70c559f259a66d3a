"""Utilisation of a location over local dates: chairs and nurses per weekday x local hour, and
the no-show and late-cancel rates. Read-only.

Buckets. The range is the local dates first..last (inclusive) in the location's zone, from local
midnight to local midnight. It is cut into UTC steps of one hour from that first midnight (15
minutes in a zone whose offset changes by part of an hour, such as Lord Howe Island), and each
step is labelled with the local weekday (0 = Monday) and hour at its start. So a 25-hour day has
two steps labelled 01:00 that both count into hour 1, and a 23-hour day has none labelled with
the skipped hour. A cell adds up its steps over every week of the range.

Figures, in minutes, per cell:
- open_chair_minutes: for each chair (resource kind chair) active now, the opening hours of each
  local day that is not a closure day, minus that chair's blocks. A block counts only where it
  overlaps opening hours, and overlapping blocks on one chair count once.
- booked_chair_minutes: the occupied time (prep and recovery included) of active visits (booked,
  checked in, completed) on chairs, inside or outside opening hours; a chair deactivated since
  still counts for its past visits.
- nurse_capacity_minutes: patients_per_nurse x the minutes of nurse shifts (the rota's patterns
  expanded for the range, with leave and one-off shifts, see staffing.shift_intervals).
- nurse_load_minutes: the occupied time of active infusions (every service that is not a
  consultation): the patient-minutes the nurses are watching.

Booked and load minutes are summed in SQL by a sweep: each visit becomes two events (+1 at its
occupied start, -1 at its end, clipped to the range) grouped by the step they fall in, so the
work grows with the visits, not with visits x hours. On PostgreSQL the steps come from
generate_series, are labelled in the location's zone (AT TIME ZONE), a window adds up the running
count, and the result is grouped by local weekday and hour: 168 rows come back. SQLite has no
zones: it returns the events per step, and the running count and the labels are added here.
Opening hours and shifts are few and are added up here. Whole seconds, rounded to minutes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import TextClause, func, select, text
from sqlalchemy.orm import Session

from scheduler.models import (
    Appointment,
    AppointmentStatus,
    ClinicianRole,
    Location,
    Resource,
    ResourceKind,
    Service,
)
from scheduler.services import availability, booking, staffing
from scheduler.services.clock import RANGE_MESSAGE, in_supported_range
from scheduler.services.errors import InvalidInput

UTC = dt.UTC
MAX_DAYS = 93
# A visit occupies at most 12 h plus 4 h prep and 4 h recovery (settings_admin's limits): a
# visit meeting the range starts within a day of it, which lets the query use the start index.
REACH = dt.timedelta(days=1)
Interval = tuple[dt.datetime, dt.datetime]


@dataclass(frozen=True)
class Cell:
    weekday: int  # 0 = Monday
    hour: int  # local
    open_chair_minutes: int
    booked_chair_minutes: int
    nurse_capacity_minutes: int
    nurse_load_minutes: int


@dataclass(frozen=True)
class Utilisation:
    """The 168 cells (Monday 00:00 first) and the counts behind the two rates.

    - due: visits starting in the range before `now` that were not cancelled;
      no_shows: those of them marked no-show. no_show_rate = no_shows / due.
    - booked: every visit starting in the range, whatever became of it (cancelled too);
      late_cancels: the cancelled ones whose cancellation fell inside the late-cancel window
      (booking.inside_change_window, the rule that stops patients cancelling online: less than
      the service's late_cancel_hours before the start, or after it). late_cancel_rate =
      late_cancels / booked.
    A rate is None when nothing is counted below it.
    """

    timezone: str
    first: dt.date
    last: dt.date
    cells: tuple[Cell, ...]
    due: int
    no_shows: int
    booked: int
    late_cancels: int

    @property
    def no_show_rate(self) -> float | None:
        return self.no_shows / self.due if self.due else None

    @property
    def late_cancel_rate(self) -> float | None:
        return self.late_cancels / self.booked if self.booked else None


@dataclass(frozen=True)
class _Grid:
    start: dt.datetime  # local midnight of `first`, in UTC
    end: dt.datetime
    step: dt.timedelta
    labels: list[tuple[int, int]]  # (weekday, hour) of each step

    def add(self, totals: list[float], intervals: Iterable[Interval], weight: float = 1) -> None:
        """Add each interval's seconds (times `weight`) to the steps it meets."""
        step = self.step.total_seconds()
        for s, e in intervals:
            s, e = max(s, self.start), min(e, self.end)
            if s >= e:
                continue
            first = int((s - self.start).total_seconds() // step)
            last = int(-((self.start - e).total_seconds() // step))  # ceil
            for i in range(first, min(last, len(totals))):
                b_start = self.start + i * self.step
                seconds = (min(e, b_start + self.step) - max(s, b_start)).total_seconds()
                if seconds > 0:
                    totals[i] += seconds * weight


def _bounds(first: dt.date, last: dt.date) -> None:
    out = {
        name: RANGE_MESSAGE
        for name, day in (("from", first), ("to", last))
        if not in_supported_range(day)
    }
    if out:
        raise InvalidInput("That date is out of range.", out)
    if last < first:
        raise InvalidInput("The range ends before it starts.", {"to": "before from"})
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(
            f"At most {MAX_DAYS} days at a time.", {"to": f"at most {MAX_DAYS - 1} days after from"}
        )


def grid(first: dt.date, last: dt.date, tz: ZoneInfo) -> _Grid:
    """The range's steps and their local labels (see the module docstring)."""
    start = dt.datetime.combine(first, dt.time(0), tzinfo=tz).astimezone(UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=tz).astimezone(UTC)
    hour = dt.timedelta(hours=1)
    hours = int((end - start) / hour)
    base = start.astimezone(tz).utcoffset()
    labels: list[tuple[int, int]] = []
    aligned = (end - start) % hour == dt.timedelta(0)
    for i in range(hours if aligned else 0):
        local = (start + i * hour).astimezone(tz)
        if (local.utcoffset() - base) % hour:  # type: ignore[operator]
            aligned = False
            break
        labels.append((local.weekday(), local.hour))
    if aligned:
        return _Grid(start, end, hour, labels)
    quarter = dt.timedelta(minutes=15)
    labels = []
    for i in range(int((end - start) / quarter)):
        local = (start + i * quarter).astimezone(tz)
        labels.append((local.weekday(), local.hour))
    return _Grid(start, end, quarter, labels)


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """The overlaps of two sorted lists of disjoint intervals."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def opening_intervals(
    session: Session, location: Location, first: dt.date, last: dt.date
) -> list[Interval]:
    """The location's opening hours on the local dates first..last, closure days left out."""
    tz = ZoneInfo(location.timezone)
    hours = availability.opening_hours(location)
    closed = availability.closed_days(session, location.id, first, last)
    out: list[Interval] = []
    day = first
    while day <= last:
        if day not in closed:
            for opens, closes in hours.get(day.weekday(), []):
                out.append(availability._open_interval(day, opens, closes, tz))
        day += dt.timedelta(days=1)
    return _merge(out)


# The visits as seconds from the range's start, clipped to it, with what they count for.
_VISITS = """
    SELECT {greatest}({epoch_start} - :t0, 0) AS s,
           {least}({epoch_end} - :t0, :span) AS e,
           CASE WHEN r.kind = 'chair' THEN 1 ELSE 0 END AS chair,
           CASE WHEN s.kind <> 'consultation' THEN 1 ELSE 0 END AS infusion
    FROM appointments a
    JOIN resources r ON r.id = a.resource_id
    JOIN services s ON s.id = a.service_id
    WHERE a.location_id = :location_id AND a.active
      AND a.start_at >= :reach_start AND a.start_at < :reach_end
      AND a.occupied_start < :end AND a.occupied_end > :start
      AND (r.kind = 'chair' OR s.kind <> 'consultation')
"""
# A sweep in SQL over whole seconds (so x / :step is the step's number): each visit is two events (+1 at its start, -1 at its end) grouped by the step
# they fall in. A step's seconds are those running at its start times the step, plus each
# event's share of the step: delta x (end of step - event). Two rows per visit, not one per
# visit and hour.
_STEPS = """
    v AS ({visits}),
    ev AS (
        SELECT s AS x, 1 AS d, chair, infusion FROM v
        UNION ALL
        SELECT e AS x, -1 AS d, chair, infusion FROM v
    ),
    per AS (
        SELECT (x / :step) AS i,
               sum(d * chair) AS chair_d,
               sum(d * chair * (((x / :step) + 1) * :step - x)) AS chair_w,
               sum(d * infusion) AS infusion_d,
               sum(d * infusion * (((x / :step) + 1) * :step - x)) AS infusion_w
        FROM ev WHERE x < :span GROUP BY 1
    )
"""
# PostgreSQL: the steps themselves from generate_series, labelled in the location's zone, the
# running count by a window over them, grouped by local weekday and hour.
_PG_MINUTES = text(
    "WITH"
    + _STEPS.format(
        visits=_VISITS.format(
            greatest="greatest",
            least="least",
            # Whole seconds as int8 (date_part is double precision, extract numeric: slower).
            epoch_start="date_part('epoch', a.occupied_start)::int8",
            epoch_end="date_part('epoch', a.occupied_end)::int8",
        ),
    )
    + """,
    b AS (
        SELECT t, n - 1 AS i
        FROM generate_series(CAST(:start AS timestamptz), CAST(:end AS timestamptz) - :step_iv,
                             :step_iv) WITH ORDINALITY AS g(t, n)
    ),
    run AS (
        SELECT b.t,
               coalesce(sum(per.chair_d) OVER w, 0) - coalesce(per.chair_d, 0) AS chairs_at,
               coalesce(per.chair_w, 0) AS chair_w,
               coalesce(sum(per.infusion_d) OVER w, 0) - coalesce(per.infusion_d, 0) AS inf_at,
               coalesce(per.infusion_w, 0) AS infusion_w
        FROM b LEFT JOIN per ON per.i = b.i
        WINDOW w AS (ORDER BY b.i)
    )
    SELECT (extract(isodow FROM t AT TIME ZONE :tz) - 1)::int AS weekday,
           extract(hour FROM t AT TIME ZONE :tz)::int AS hour,
           sum(chairs_at * :step + chair_w) AS booked,
           sum(inf_at * :step + infusion_w) AS load
    FROM run GROUP BY 1, 2
    """
)
# SQLite (no zones): the events per step; the running count
# and the labels are added in Python.
_SQLITE_STEPS = text(
    "WITH"
    + _STEPS.format(
        visits=_VISITS.format(
            greatest="max",
            least="min",
            epoch_start="unixepoch(a.occupied_start)",
            epoch_end="unixepoch(a.occupied_end)",
        ),
    )
    + "SELECT i, chair_d, chair_w, infusion_d, infusion_w FROM per"
)


def _sqlite_text(instant: dt.datetime) -> str:
    # UTCDateTime's stored form on SQLite (naive UTC text), so the start index is used.
    return instant.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def visits_query(location: Location, g: _Grid, dialect: str) -> tuple[TextClause, dict[str, Any]]:
    """The booked/load statement for `dialect` and its parameters (also run by the benchmark)."""
    common: dict[str, Any] = {
        "t0": int(g.start.timestamp()),
        "span": int((g.end - g.start).total_seconds()),
        "step": int(g.step.total_seconds()),
        "location_id": location.id,
    }
    if dialect == "postgresql":
        return _PG_MINUTES, {
            **common,
            "tz": location.timezone,
            "step_iv": g.step,
            "start": g.start,
            "end": g.end,
            "reach_start": g.start - REACH,
            "reach_end": g.end + REACH,
        }
    return _SQLITE_STEPS, {
        **common,
        "start": _sqlite_text(g.start),
        "end": _sqlite_text(g.end),
        "reach_start": _sqlite_text(g.start - REACH),
        "reach_end": _sqlite_text(g.end + REACH),
    }


def _visit_seconds(
    session: Session, location: Location, g: _Grid
) -> dict[tuple[int, int], tuple[float, float]]:
    """(booked chair seconds, infusion seconds) per (weekday, hour), summed in SQL."""
    dialect = session.get_bind().dialect.name
    statement, params = visits_query(location, g, dialect)
    out: dict[tuple[int, int], tuple[float, float]] = {}
    if dialect == "postgresql":
        for weekday, hour, booked, load in session.execute(statement, params):
            out[(weekday, hour)] = (float(booked), float(load))
        return out
    per = {row[0]: row[1:] for row in session.execute(statement, params)}
    step = params["step"]
    chairs = infusions = 0
    for i, key in enumerate(g.labels):
        chair_d, chair_w, infusion_d, infusion_w = per.get(i, (0, 0, 0, 0))
        was = out.get(key, (0.0, 0.0))
        out[key] = (was[0] + chairs * step + chair_w, was[1] + infusions * step + infusion_w)
        chairs += chair_d
        infusions += infusion_d
    return out


def _rates(
    session: Session, location: Location, g: _Grid, now: dt.datetime
) -> tuple[int, int, int, int]:
    a = Appointment
    in_range = (a.location_id == location.id, a.start_at >= g.start, a.start_at < g.end)
    due = no_shows = booked = late = 0
    past = func.count().filter(a.start_at < now)
    for status, n, n_past in session.execute(
        select(a.status, func.count(), past).where(*in_range).group_by(a.status)
    ):
        booked += n
        if status != AppointmentStatus.CANCELLED:
            due += n_past
            if status == AppointmentStatus.NO_SHOW:
                no_shows += n_past
    cancelled = session.execute(
        select(a.start_at, a.cancelled_at, a.service_id).where(
            *in_range, a.status == AppointmentStatus.CANCELLED, a.cancelled_at.is_not(None)
        )
    )
    services: dict[int, Service] = {}
    for start_at, cancelled_at, service_id in cancelled:
        if service_id not in services:
            service = session.get(Service, service_id)
            assert service is not None  # a foreign key
            services[service_id] = service
        if cancelled_at is not None and booking.inside_change_window(
            services[service_id], start_at, cancelled_at
        ):
            late += 1
    return due, no_shows, booked, late


def utilisation(
    session: Session, location: Location, first: dt.date, last: dt.date, *, now: dt.datetime
) -> Utilisation:
    """The location's utilisation on the local dates first..last (inclusive, at most 93 days)."""
    _bounds(first, last)
    tz = ZoneInfo(location.timezone)
    g = grid(first, last, tz)
    n = len(g.labels)

    chairs = list(
        session.scalars(
            select(Resource.id).where(
                Resource.location_id == location.id,
                Resource.kind == ResourceKind.CHAIR,
                Resource.active.is_(True),
            )
        )
    )
    opening = opening_intervals(session, location, first, last)
    open_s = [0.0] * n
    g.add(open_s, opening, len(chairs))
    blocks = availability.block_intervals(session, chairs, g.start, g.end)
    for intervals in blocks.values():
        g.add(open_s, _intersect(_merge(intervals), opening), -1)

    capacity_s = [0.0] * n
    nurses = [
        (x.start, x.end)
        for x in staffing.shift_intervals(session, location, g.start, g.end)
        if x.role == ClinicianRole.NURSE
    ]
    g.add(capacity_s, nurses, location.patients_per_nurse)

    cells: dict[tuple[int, int], list[float]] = {
        (d, h): [0.0, 0.0, 0.0, 0.0] for d in range(7) for h in range(24)
    }
    for i, key in enumerate(g.labels):
        cells[key][0] += open_s[i]
        cells[key][2] += capacity_s[i]
    for key, (booked, load) in _visit_seconds(session, location, g).items():
        cells[key][1] += booked
        cells[key][3] += load

    due, no_shows, booked_n, late = _rates(session, location, g, now)
    return Utilisation(
        timezone=location.timezone,
        first=first,
        last=last,
        cells=tuple(
            Cell(d, h, *(round(v / 60) for v in values)) for (d, h), values in cells.items()
        ),
        due=due,
        no_shows=no_shows,
        booked=booked_n,
        late_cancels=late,
    )
