"""The utilisation page for staff (a weekday x hour heatmap for chairs and nurses, with the
rates) and the CSV both it and the API serve."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, render_template, request
from flask.typing import ResponseReturnValue

from scheduler.extensions import db
from scheduler.models import Location
from scheduler.services import reports
from scheduler.web.common import now
from scheduler.web.staff_common import install_pages, login, page_location, parse_date

bp = Blueprint("staff_reports", __name__, url_prefix="/staff")
install_pages(bp)

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CSV_FIELDS = [f.name for f in dataclasses.fields(reports.Cell)]
DEFAULT_WEEKS = 4


def csv_text(report: reports.Utilisation) -> str:
    """The cells as CSV, one row per weekday (0 = Monday) and local hour, as in the JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for cell in report.cells:
        writer.writerow([getattr(cell, name) for name in CSV_FIELDS])
    return out.getvalue()


def csv_response(report: reports.Utilisation, slug: str) -> Response:
    name = f"utilisation-{slug}-{report.first.isoformat()}-{report.last.isoformat()}.csv"
    return Response(
        csv_text(report),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@dataclass(frozen=True)
class HeatCell:
    text: str  # what the cell says (the colour only repeats it)
    detail: str
    level: str  # CSS class: heat0..heat5, over, none


@dataclass(frozen=True)
class HeatRow:
    hour: str
    cells: list[HeatCell]


def _heat(used: int, available: int, unit: str, nothing: str) -> HeatCell:
    if available == 0:
        if used == 0:
            return HeatCell("–", nothing, "none")
        return HeatCell(f"{used} min", f"{used} {unit}, {nothing}", "over")
    share = used / available
    level = "over" if share > 1 else f"heat{min(5, int(share * 5 + 0.9999))}"
    return HeatCell(f"{round(share * 100)}%", f"{used} of {available} {unit}", level)


def heatmap(report: reports.Utilisation, kind: str) -> list[HeatRow]:
    """Rows of local hours (those with anything to show) by weekday columns."""
    by_key = {(c.weekday, c.hour): c for c in report.cells}
    rows: list[HeatRow] = []
    for hour in range(24):
        cells = []
        for weekday in range(7):
            c = by_key[(weekday, hour)]
            if kind == "chairs":
                cells.append(
                    _heat(c.booked_chair_minutes, c.open_chair_minutes, "chair-min", "closed")
                )
            else:
                cells.append(
                    _heat(
                        c.nurse_load_minutes,
                        c.nurse_capacity_minutes,
                        "patient-min",
                        "no nurse on shift",
                    )
                )
        if any(cell.level != "none" for cell in cells):
            rows.append(HeatRow(f"{hour:02d}:00", cells))
    return rows


def _range(location: Location) -> tuple[dt.date, dt.date]:
    """The dates asked for; by default the last four whole weeks before today."""
    today = now().astimezone(ZoneInfo(location.timezone)).date()
    last = parse_date(request.args.get("to"), "to") or today - dt.timedelta(days=1)
    first = parse_date(request.args.get("from"), "from") or last - dt.timedelta(
        days=7 * DEFAULT_WEEKS - 1
    )
    return first, last


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


@bp.route("/<slug>/utilisation")
@login
def utilisation(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    first, last = _range(location)
    report = reports.utilisation(db.session(), location, first, last, now=now())
    return render_template(
        "staff/utilisation.html",
        location=location,
        report=report,
        weekdays=WEEKDAYS,
        chairs=heatmap(report, "chairs"),
        nurses=heatmap(report, "nurses"),
        no_show_rate=_percent(report.no_show_rate),
        late_cancel_rate=_percent(report.late_cancel_rate),
    )


@bp.route("/<slug>/utilisation.csv")
@login
def utilisation_csv(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    first, last = _range(location)
    report = reports.utilisation(db.session(), location, first, last, now=now())
    return csv_response(report, location.slug)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


__all__ = ["bp", "csv_text", "init_app"]
