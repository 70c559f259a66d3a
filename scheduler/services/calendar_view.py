"""The chair calendar as data: grid rows and columns for a day or a chair's week, a day summary.

Everything is positioned server-side on a grid of 5-minute rows counted from each column's
window start (a local wall-clock hour turned into an instant), so the page needs no script and
no inline style: templates turn rows and columns into CSS classes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from scheduler.models import (
    Appointment,
    AppointmentStatus,
    Closure,
    Location,
    Resource,
    ResourceBlock,
    end_of_day,
)
from scheduler.services import day_of

UTC = dt.UTC
ROW_MINUTES = 5
MAX_ROWS = 320  # a 25-hour day of 5-minute rows fits; the stylesheet has classes up to here
MAX_LANES = 4
DEFAULT_HOURS = (8, 18)
SHOWN_STATUSES = (
    AppointmentStatus.BOOKED,
    AppointmentStatus.CHECKED_IN,
    AppointmentStatus.COMPLETED,
    AppointmentStatus.NO_SHOW,
)


@dataclass
class Box:
    """Something drawn in a column: an appointment (with its prep and recovery) or a block."""

    kind: str  # "appointment" | "block"
    row_start: int
    row_end: int
    main_start: int  # appointments: first row of the visit itself (after prep)
    main_end: int  # appointments: first row after the visit (recovery follows)
    lane: int = 0
    lanes: int = 1
    appointment: Appointment | None = None
    block: ResourceBlock | None = None
    label_time: str = ""
    occupied_start: dt.datetime | None = None
    occupied_end: dt.datetime | None = None


@dataclass
class Column:
    key: str  # resource id (day view) or ISO date (week view)
    title: str
    subtitle: str
    index: int  # grid column, 2.. (column 1 is the time gutter)
    window_start: dt.datetime  # UTC instant of row 1
    resource: Resource | None = None
    day: dt.date | None = None
    boxes: list[Box] = field(default_factory=list)
    closed: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Grid:
    tz: ZoneInfo
    rows: int
    hours: list[tuple[int, str]]  # (row, "09:00") for the gutter
    columns: list[Column]
    now_row: int | None = None
    now_offset: int = 0  # minutes into the now row (0..4)
    now_columns: tuple[int, int] | None = None  # grid columns the now line spans (start, end)
    closed_day: bool = False
    closure_reason: str = ""

    @property
    def count(self) -> int:
        return len(self.columns)


def local_day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def _hours_for(location: Location, days: Sequence[dt.date]) -> tuple[int, int]:
    """The first and last whole local hours the opening hours of `days` reach."""
    first, last = None, None
    weekdays = {d.weekday() for d in days}
    for row in location.hours:
        if row.weekday in weekdays:
            opens = row.opens.hour
            closes = row.closes.hour + (1 if (row.closes.minute or row.closes.second) else 0)
            closes = 24 if row.closes == dt.time(0) else closes  # closes at midnight
            first = opens if first is None else min(first, opens)
            last = closes if last is None else max(last, closes)
    if first is None or last is None:
        return DEFAULT_HOURS
    return first, last


def _extend(
    hours: tuple[int, int], tz: ZoneInfo, instants: Sequence[dt.datetime]
) -> tuple[int, int]:
    first, last = hours
    for instant in instants:
        local = instant.astimezone(tz)
        first = min(first, local.hour)
        last = max(last, local.hour + (1 if (local.minute or local.second) else 0))
    return max(0, first), min(24, max(last, first + 1))


def _row(window_start: dt.datetime, instant: dt.datetime, *, ceil: bool = False) -> int:
    minutes = (instant - window_start).total_seconds() / 60
    steps = math.ceil(minutes / ROW_MINUTES) if ceil else math.floor(minutes / ROW_MINUTES)
    return 1 + steps


def _clamp(value: int, rows: int) -> int:
    return max(1, min(rows + 1, value))


def _window_start(day: dt.date, hour: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=tz).astimezone(UTC)


def _assign_lanes(boxes: list[Box]) -> None:
    """Side by side when they overlap (a no-show and a later booking of the freed chair)."""
    boxes.sort(key=lambda b: (b.row_start, b.row_end))
    cluster: list[Box] = []
    cluster_end = 0
    lane_ends: list[int] = []

    def close() -> None:
        lanes = min(MAX_LANES, max(1, len(lane_ends)))
        for box in cluster:
            box.lanes = lanes
            box.lane = min(box.lane, lanes - 1)

    for box in boxes:
        if cluster and box.row_start >= cluster_end:
            close()
            cluster, lane_ends = [], []
        for i, end in enumerate(lane_ends):
            if end <= box.row_start:
                box.lane = i
                lane_ends[i] = box.row_end
                break
        else:
            box.lane = len(lane_ends)
            lane_ends.append(box.row_end)
        cluster.append(box)
        cluster_end = max(cluster_end, box.row_end)
    if cluster:
        close()


def _closed_bands(
    location: Location, day: dt.date, window_start: dt.datetime, rows: int, tz: ZoneInfo
) -> list[tuple[int, int]]:
    """Row ranges of the column that fall outside the day's opening hours."""
    opening = sorted(
        (row.opens, row.closes) for row in location.hours if row.weekday == day.weekday()
    )
    bands: list[tuple[int, int]] = []
    cursor = 1
    for opens, closes in opening:
        start = _clamp(_row(window_start, dt.datetime.combine(day, opens, tzinfo=tz)), rows)
        end = _clamp(
            _row(window_start, end_of_day(day, closes).replace(tzinfo=tz), ceil=True), rows
        )
        if start > cursor:
            bands.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < rows + 1:
        bands.append((cursor, rows + 1))
    return bands


def _appointment_box(appt: Appointment, window_start: dt.datetime, rows: int, tz: ZoneInfo) -> Box:
    row_start = _clamp(_row(window_start, appt.occupied_start), rows)
    row_end = _clamp(_row(window_start, appt.occupied_end, ceil=True), rows)
    main_start = _clamp(_row(window_start, appt.start_at), rows)
    main_end = _clamp(_row(window_start, appt.end_at, ceil=True), rows)
    main_start = max(row_start, min(main_start, row_end - 1))
    main_end = max(main_start + 1, min(main_end, row_end))
    return Box(
        kind="appointment",
        row_start=row_start,
        row_end=max(row_end, main_end),
        main_start=main_start,
        main_end=main_end,
        appointment=appt,
        label_time=(f"{appt.start_at.astimezone(tz):%H:%M}–{appt.end_at.astimezone(tz):%H:%M}"),
        occupied_start=appt.occupied_start,
        occupied_end=appt.occupied_end,
    )


def _block_box(block: ResourceBlock, window_start: dt.datetime, rows: int, tz: ZoneInfo) -> Box:
    row_start = _clamp(_row(window_start, block.start_at), rows)
    row_end = max(row_start + 1, _clamp(_row(window_start, block.end_at, ceil=True), rows))
    return Box(
        kind="block",
        row_start=row_start,
        row_end=row_end,
        main_start=row_start,
        main_end=row_end,
        block=block,
        label_time=f"{block.start_at.astimezone(tz):%H:%M}–{block.end_at.astimezone(tz):%H:%M}",
    )


def location_resources(session: Session, location: Location) -> list[Resource]:
    return list(
        session.scalars(
            select(Resource)
            .where(Resource.location_id == location.id)
            .order_by(Resource.position, Resource.id)
        )
    )


def _appointments(
    session: Session, resource_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> list[Appointment]:
    if not resource_ids:
        return []
    return list(
        session.scalars(
            select(Appointment)
            .options(selectinload(Appointment.patient), selectinload(Appointment.service))
            .where(
                Appointment.resource_id.in_(resource_ids),
                Appointment.status.in_([str(s) for s in SHOWN_STATUSES]),
                Appointment.occupied_start < end,
                Appointment.occupied_end > start,
            )
            .order_by(Appointment.start_at)
        )
    )


def _blocks(
    session: Session, resource_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> list[ResourceBlock]:
    if not resource_ids:
        return []
    return list(
        session.scalars(
            select(ResourceBlock)
            .where(
                ResourceBlock.resource_id.in_(resource_ids),
                ResourceBlock.start_at < end,
                ResourceBlock.end_at > start,
            )
            .order_by(ResourceBlock.start_at)
        )
    )


def closure_on(session: Session, location: Location, day: dt.date) -> Closure | None:
    return session.scalars(
        select(Closure).where(
            Closure.location_id == location.id, Closure.first_day <= day, Closure.last_day >= day
        )
    ).first()


def _now_marker(grid: Grid, now: dt.datetime) -> None:
    for column in grid.columns:
        minutes = int((now - column.window_start).total_seconds() // 60)
        if 0 <= minutes < grid.rows * ROW_MINUTES:
            grid.now_row = 1 + minutes // ROW_MINUTES
            grid.now_offset = minutes % ROW_MINUTES
            if column.day is not None and len(grid.columns) > 1 and column.resource is None:
                grid.now_columns = (column.index, column.index + 1)  # week view: today only
            else:
                grid.now_columns = (2, 2 + len(grid.columns))
            return


def day_grid(session: Session, location: Location, day: dt.date, now: dt.datetime) -> Grid:
    """One column per chair and room (inactive ones only when something is on them)."""
    tz = ZoneInfo(location.timezone)
    day_start, day_end = local_day_bounds(day, tz)
    resources = location_resources(session, location)
    ids = [r.id for r in resources]
    appts = _appointments(session, ids, day_start, day_end)
    blocks = _blocks(session, ids, day_start, day_end)
    used = {a.resource_id for a in appts} | {b.resource_id for b in blocks}
    shown = [r for r in resources if r.active or r.id in used]
    # Appointments stretch the window; blocks (often whole days) are clipped to it.
    instants: list[dt.datetime] = []
    for a in appts:
        last_minute = day_end - dt.timedelta(minutes=1)  # midnight ends the day, not starts it
        instants += [max(a.occupied_start, day_start), min(a.occupied_end, last_minute)]
    first, last = _extend(_hours_for(location, [day]), tz, instants)
    window_start = _window_start(day, first, tz)
    window_end = (
        day_end
        if last >= 24
        else dt.datetime.combine(day, dt.time(last), tzinfo=tz).astimezone(UTC)
    )
    rows = min(MAX_ROWS, max(1, _row(window_start, window_end, ceil=True) - 1))
    closure = closure_on(session, location, day)
    grid = Grid(
        tz=tz,
        rows=rows,
        hours=_hour_labels(window_start, window_end, tz),
        columns=[],
        closed_day=closure is not None,
        closure_reason=closure.reason if closure else "",
    )
    closed = [(1, rows + 1)] if closure else _closed_bands(location, day, window_start, rows, tz)
    for i, resource in enumerate(shown):
        column = Column(
            key=str(resource.id),
            title=resource.name,
            subtitle=resource.kind if resource.active else f"{resource.kind}, inactive",
            index=2 + i,
            window_start=window_start,
            resource=resource,
            day=None,
            closed=closed,
        )
        column.boxes = [
            _appointment_box(a, window_start, rows, tz)
            for a in appts
            if a.resource_id == resource.id
        ] + [_block_box(b, window_start, rows, tz) for b in blocks if b.resource_id == resource.id]
        _assign_lanes(column.boxes)
        grid.columns.append(column)
    _now_marker(grid, now)
    return grid


def week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def week_grid(
    session: Session, location: Location, resource: Resource, day: dt.date, now: dt.datetime
) -> Grid:
    """One chair's week (Monday to Sunday around `day`), one column per day."""
    tz = ZoneInfo(location.timezone)
    monday = week_start(day)
    days = [monday + dt.timedelta(days=i) for i in range(7)]
    start, _ = local_day_bounds(days[0], tz)
    _, end = local_day_bounds(days[-1], tz)
    appts = _appointments(session, [resource.id], start, end)
    blocks = _blocks(session, [resource.id], start, end)
    instants: list[dt.datetime] = []
    for a in appts:
        instants += [a.occupied_start, a.occupied_end]
    first, last = _extend(_hours_for(location, days), tz, instants)
    rows = min(MAX_ROWS, (last - first) * 60 // ROW_MINUTES)
    grid = Grid(
        tz=tz,
        rows=rows,
        hours=[((h - first) * 60 // ROW_MINUTES + 1, f"{h:02d}:00") for h in range(first, last)],
        columns=[],
    )
    for i, d in enumerate(days):
        window_start = _window_start(d, first, tz)
        d_start, d_end = local_day_bounds(d, tz)
        closure = closure_on(session, location, d)
        column = Column(
            key=d.isoformat(),
            title=f"{d:%a %d %b}",
            subtitle="closed" if closure else "",
            index=2 + i,
            window_start=window_start,
            day=d,
            closed=[(1, rows + 1)]
            if closure
            else _closed_bands(location, d, window_start, rows, tz),
        )
        column.boxes = [
            _appointment_box(a, window_start, rows, tz)
            for a in appts
            if a.occupied_start < d_end and a.occupied_end > d_start
        ] + [
            _block_box(b, window_start, rows, tz)
            for b in blocks
            if b.start_at < d_end and b.end_at > d_start
        ]
        _assign_lanes(column.boxes)
        grid.columns.append(column)
    _now_marker(grid, now)
    return grid


def _hour_labels(
    window_start: dt.datetime, window_end: dt.datetime, tz: ZoneInfo
) -> list[tuple[int, str]]:
    labels: list[tuple[int, str]] = []
    instant = window_start
    while instant < window_end:
        labels.append((_row(window_start, instant), f"{instant.astimezone(tz):%H:%M}"))
        instant += dt.timedelta(hours=1)
    return labels


# --- the day summary ------------------------------------------------------------------------------


@dataclass
class HourUse:
    label: str
    in_use: int
    total: int

    @property
    def percent(self) -> int:
        """Rounded to 5 so the stylesheet has a class for it."""
        if not self.total:
            return 0
        return int(round(self.in_use * 100 / self.total / 5) * 5)


@dataclass
class DaySummary:
    day: dt.date
    total: int
    by_status: dict[str, int]
    chairs: int
    hours: list[HourUse]
    no_shows: list[Appointment]
    cancelled: list[Appointment]
    blocks: int


def day_summary(session: Session, location: Location, day: dt.date) -> DaySummary:
    """Appointments starting on the local `day`, chairs in use per opening hour, no-shows."""
    tz = ZoneInfo(location.timezone)
    start, end = local_day_bounds(day, tz)
    appts = list(
        session.scalars(
            select(Appointment)
            .options(selectinload(Appointment.patient))
            .where(
                Appointment.location_id == location.id,
                Appointment.start_at >= start,
                Appointment.start_at < end,
            )
            .order_by(Appointment.start_at)
        )
    )
    counts = Counter(a.status for a in appts)
    chairs = [r for r in location_resources(session, location) if r.kind == "chair"]
    chair_ids = {r.id for r in chairs}
    held = [
        a
        for a in appts
        if a.resource_id in chair_ids
        and a.status
        in (AppointmentStatus.BOOKED, AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED)
    ]
    first, last = _extend(_hours_for(location, [day]), tz, [x for a in held for x in (a.start_at,)])
    hours: list[HourUse] = []
    for hour in range(first, last):
        h_start = dt.datetime.combine(day, dt.time(hour), tzinfo=tz).astimezone(UTC)
        h_end = h_start + dt.timedelta(hours=1)
        in_use = {
            a.resource_id for a in held if a.occupied_start < h_end and a.occupied_end > h_start
        }
        hours.append(HourUse(f"{hour:02d}", len(in_use), len([c for c in chairs if c.active])))
    blocks = _blocks(session, [r.id for r in chairs], start, end)
    return DaySummary(
        day=day,
        total=sum(counts[s] for s in counts if s != AppointmentStatus.CANCELLED),
        by_status={str(s): counts.get(s, 0) for s in AppointmentStatus},
        chairs=len(chairs),
        hours=hours,
        no_shows=[a for a in appts if a.status == AppointmentStatus.NO_SHOW],
        cancelled=[a for a in appts if a.status == AppointmentStatus.CANCELLED],
        blocks=len(blocks),
    )


# --- the stylesheet the grid classes come from ----------------------------------------------------


def grid_css(max_columns: int = 60) -> str:
    """Row, column, lane and bar classes; generated once so pages carry no inline style."""
    out: list[str] = []
    for n in range(1, MAX_ROWS + 2):
        out.append(f".rs{n}{{grid-row-start:{n}}}.re{n}{{grid-row-end:{n}}}")
    for n in range(1, MAX_ROWS + 1):
        out.append(f".rows{n}{{grid-template-rows:repeat({n},var(--row-h))}}")
    for n in range(1, max_columns + 3):
        out.append(f".cs{n}{{grid-column-start:{n}}}.ce{n}{{grid-column-end:{n}}}")
    for n in range(1, max_columns + 1):
        out.append(
            f".cols{n}{{grid-template-columns:var(--gutter) repeat({n},minmax(var(--col-min),1fr))}}"
        )
    for lanes in range(2, MAX_LANES + 1):
        for lane in range(lanes):
            left = round(100 * lane / lanes, 3)
            width = round(100 / lanes, 3)
            out.append(f".lane{lane}of{lanes}{{margin-left:{left}%;width:{width}%}}")
    for minute in range(ROW_MINUTES):
        out.append(f".off{minute}{{margin-top:calc(var(--row-h) * {minute} / {ROW_MINUTES})}}")
    for pct in range(0, 101, 5):
        out.append(f".pct{pct}{{height:{pct}%}}")
    return "\n".join(out) + "\n"


# --- the day sheet --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetRow:
    """One visit on the printed day sheet. `nurse` and `escort` stay None until appointments
    carry them (the staffing and escort work); the page shows those columns only when some row
    has a value."""

    appointment: Appointment
    start: dt.datetime
    end: dt.datetime
    patient: str
    phone: str
    service: str
    resource: str
    status: str
    note: str
    nurse: str | None = None
    escort: str | None = None


@dataclass(frozen=True)
class DaySheet:
    day: dt.date
    rows: list[SheetRow]

    @property
    def has_nurse(self) -> bool:
        return any(r.nurse is not None for r in self.rows)

    @property
    def has_escort(self) -> bool:
        return any(r.escort is not None for r in self.rows)


def _optional_text(appt: Appointment, *names: str) -> str | None:
    """The first of `names` the appointment has (a name, or an object with a `name`), else None.

    The hook for fields other work adds to visits (the nurse, the escort): no schema knowledge
    here beyond the attribute names."""
    for name in names:
        value = getattr(appt, name, None)
        if value is None:
            continue
        return str(getattr(value, "name", value))
    return None


def day_sheet(session: Session, location: Location, day: dt.date) -> DaySheet:
    """Every visit starting on the local `day` that still holds its chair, by time then chair."""
    tz = ZoneInfo(location.timezone)
    start, end = local_day_bounds(day, tz)
    appts = session.scalars(
        select(Appointment)
        .options(
            selectinload(Appointment.patient),
            selectinload(Appointment.service),
            selectinload(Appointment.resource),
        )
        .where(
            Appointment.location_id == location.id,
            Appointment.status.in_([str(s) for s in SHOWN_STATUSES]),
            Appointment.start_at >= start,
            Appointment.start_at < end,
        )
        .order_by(Appointment.start_at, Appointment.resource_id)
    )
    rows = [
        SheetRow(
            appointment=a,
            start=a.start_at,
            end=a.end_at,
            patient=a.patient.name,
            phone=a.patient.phone,
            service=a.service.name,
            resource=a.resource.name,
            status=str(a.status),
            note=a.note,
            nurse=_optional_text(a, "nurse"),  # a consultation's prescriber is no nurse
            escort=day_of.escort_label(a),
        )
        for a in appts
    ]
    return DaySheet(day=day, rows=rows)


# --- the week across every chair ------------------------------------------------------------------


@dataclass(frozen=True)
class WeekCell:
    day: dt.date
    appointments: list[Appointment]
    blocks: list[ResourceBlock]
    closed: bool


@dataclass(frozen=True)
class WeekRow:
    resource: Resource
    cells: list[WeekCell]


@dataclass(frozen=True)
class WeekOverview:
    """Monday to Sunday around a day: one row per chair or room, one cell per day (visits by
    local start day, blocks on every day they touch)."""

    days: list[dt.date]
    rows: list[WeekRow]
    closed_days: set[dt.date]


def week_overview(session: Session, location: Location, day: dt.date) -> WeekOverview:
    tz = ZoneInfo(location.timezone)
    monday = week_start(day)
    days = [monday + dt.timedelta(days=i) for i in range(7)]
    start, _ = local_day_bounds(days[0], tz)
    _, end = local_day_bounds(days[-1], tz)
    resources = location_resources(session, location)
    ids = [r.id for r in resources]
    appts = _appointments(session, ids, start, end)
    blocks = _blocks(session, ids, start, end)
    used = {a.resource_id for a in appts} | {b.resource_id for b in blocks}
    open_days = {d for d in days if any(h.weekday == d.weekday() for h in location.hours)}
    closed = {d for d in days if d not in open_days or closure_on(session, location, d)}
    rows: list[WeekRow] = []
    for resource in resources:
        if not (resource.active or resource.id in used):
            continue
        cells = []
        for d in days:
            d_start, d_end = local_day_bounds(d, tz)
            cells.append(
                WeekCell(
                    day=d,
                    appointments=[
                        a
                        for a in appts
                        if a.resource_id == resource.id and d_start <= a.start_at < d_end
                    ],
                    blocks=[
                        b
                        for b in blocks
                        if b.resource_id == resource.id
                        and b.start_at < d_end
                        and b.end_at > d_start
                    ],
                    closed=d in closed,
                )
            )
        rows.append(WeekRow(resource=resource, cells=cells))
    return WeekOverview(days=days, rows=rows, closed_days=closed)
