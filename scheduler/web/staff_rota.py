"""The staff rota pages: a location's week of shifts (who works when), and the staffing pieces of
other pages: who is on shift and the nurse load on the day calendar, the visit's nurse, and the
staffing rules on the location's settings page. Managers and admins change the rota and the
rules; front desk and nurses read. Every rule is a call into services/staffing.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from scheduler.extensions import db
from scheduler.models import Appointment, ClinicianRole, Location, ServiceKind
from scheduler.services import rota_view, staffing
from scheduler.services.errors import DomainError, InvalidInput
from scheduler.web.auth import current_staff
from scheduler.web.common import now
from scheduler.web.inputs import marks_form_problems, query_id
from scheduler.web.staff import _instant as staff_page_instant
from scheduler.web.staff import _render_appointment
from scheduler.web.staff_common import (
    PageError,
    can_edit_settings,
    forbidden,
    form_value,
    install_pages,
    login,
    page_location,
    parse_date,
    posted_values,
    refusal,
    refuse_characters,
    staff_audit,
)
from scheduler.web.staff_settings import _render_location_settings

bp = Blueprint("staff_rota", __name__, url_prefix="/staff")
install_pages(bp)

ROLE_NAMES = {ClinicianRole.PRESCRIBER: "Prescriber", ClinicianRole.NURSE: "Nurse"}
STAFFING_LIMITS = ("patients_per_nurse", "starts_per_window", "start_window_minutes")


def _today(location: Location) -> dt.date:
    return now().astimezone(ZoneInfo(location.timezone)).date()


def _edit_location(slug: str) -> Location:
    location = page_location(slug)
    if not can_edit_settings(current_staff(), location):
        forbidden()
    return location


# --- form values ----------------------------------------------------------------------------------


def _form_date(name: str) -> dt.date:
    try:
        day = parse_date(form_value(name, 20), name)
    except PageError as exc:
        raise InvalidInput(exc.message, exc.fields) from exc
    if day is None:
        raise InvalidInput("Choose a date.", {name: "required"})
    return day


def _form_time(name: str) -> dt.time | None:
    """HH:MM; "24:00" is midnight at the end of the day (None)."""
    raw = form_value(name, 10)
    if raw in ("24:00", "24:00:00"):
        return None
    try:
        return dt.time.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("Enter times as HH:MM.", {name: "not a time"}) from None


def _form_int(name: str) -> int:
    raw = form_value(name, 20)
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidInput("Enter whole numbers.", {name: "a whole number"})
    return int(raw)


def _form_id(name: str, what: str) -> int:
    """A row id from the form (`query_id`: what the id columns can hold), else the form again
    naming the field."""
    value = query_id(form_value(name, 40))
    if value is None:
        raise InvalidInput(f"Choose a {what} from the list.", {name: f"unknown {what}"})
    return value


def _local_span(location: Location) -> tuple[dt.date, dt.datetime, dt.datetime]:
    """The posted date, start and end as UTC instants; an end at or before the start is the
    next morning (a night shift), 24:00 the end of the day."""
    tz = ZoneInfo(location.timezone)
    day = _form_date("date")
    starts = _form_time("starts")
    if starts is None:
        raise InvalidInput("A shift cannot start at 24:00.", {"starts": "00:00 to 23:59"})
    ends = _form_time("ends")
    end_day = day + dt.timedelta(days=1) if ends is None or ends <= starts else day
    start = _instant(day, starts, tz, "starts")
    end = _instant(end_day, ends or dt.time(0), tz, "ends")
    return day, start, end


def _instant(day: dt.date, wall: dt.time, tz: ZoneInfo, name: str) -> dt.datetime:
    """A local time on `day` as an instant (the staff pages' rule: one the clocks skip is
    refused naming the field, not silently moved by an hour), as a form refusal."""
    try:
        return staff_page_instant(day, wall, tz, name)
    except PageError as exc:
        raise InvalidInput(exc.message, exc.fields) from exc


# --- the rota page --------------------------------------------------------------------------------


def _render_rota(
    location: Location,
    day: dt.date,
    *,
    error: DomainError | None = None,
    where: str = "",
    shift_id: str = "",
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    staff = current_staff()
    session = db.session()
    return (
        render_template(
            "staff/rota.html",
            location=location,
            week=rota_view.rota_week(session, location, day),
            day=day,
            today=_today(location),
            can_edit=can_edit_settings(staff, location),
            clinicians=staffing.list_clinicians(session, active_only=True),
            role_names=ROLE_NAMES,
            error=error,
            where=where,
            error_shift=shift_id,
            refused=rota_view.visits(
                session, error.appointments if error else None, location_id=location.id
            ),
            values=values or {},
        ),
        status,
    )


@bp.route("/<slug>/rota")
@login
def rota(slug: str) -> ResponseReturnValue:
    location = page_location(slug)
    day = parse_date(request.args.get("date")) or _today(location)
    return _render_rota(location, day)


def _rota_post(
    location: Location,
    where: str,
    action: str,
    change: Callable[[], tuple[str, Mapping[str, Any], str]],
    *,
    shift_id: str = "",
) -> ResponseReturnValue:
    """Run a rota change; a refusal re-renders the week with the reason beside the form or the
    shift it concerns (and the visits it names); else audit, commit, flash, 303 to the week."""
    back = request.form.get("week", "")
    try:
        day = parse_date(back, "week") or _today(location)
    except PageError:
        day = _today(location)
    try:
        refuse_characters()
        target, details, message = change()
    except DomainError as exc:
        db.session.rollback()
        return _render_rota(
            location,
            day,
            error=exc,
            where=where,
            shift_id=shift_id,
            values=posted_values(),
            status=exc.http_status,
        )
    staff_audit(action, target, location_id=location.id, details=details)
    db.session.commit()
    flash(message)
    return redirect(url_for("staff_rota.rota", slug=location.slug, date=day.isoformat()), 303)


@bp.route("/<slug>/rota/shifts", methods=["POST"])
@marks_form_problems
@login
def shift_add(slug: str) -> ResponseReturnValue:
    location = _edit_location(slug)
    cover = request.form.get("kind") == "cover"
    where = "cover" if cover else "add"

    def change() -> tuple[str, Mapping[str, Any], str]:
        clinician_id = _form_id("clinician", "clinician")
        day, start, end = _local_span(location)
        note = form_value("note", 200) or ("Cover" if cover else "")
        if request.form.get("weekly") == "on" and not cover:
            starts = start.astimezone(ZoneInfo(location.timezone)).time()
            ends_local = end.astimezone(ZoneInfo(location.timezone)).time()
            pattern = staffing.add_pattern(
                db.session(),
                location,
                clinician_id,
                weekday=day.weekday(),
                starts=starts,
                ends=ends_local,
                now=now(),
                valid_from=day,
            )
            name = pattern.clinician.name
            details = {"clinician": name, "weekday": day.weekday(), "from": day.isoformat()}
            details |= {"starts": f"{starts:%H:%M}", "ends": f"{ends_local:%H:%M}"}
            return f"pattern {pattern.id}", details, f"{name} now works every {day:%A}."
        shift = staffing.add_shift(
            db.session(),
            location,
            clinician_id,
            start,
            end,
            note=note,
            now=now(),
            viewer=current_staff(),
        )
        label = f"{day:%a %d %b} " + rota_view.span(start, end, ZoneInfo(location.timezone))
        details = {"clinician": shift.name, "when": label, "note": note}
        return f"shift {shift.id}", details, f"Shift added: {shift.name}, {label}."

    return _rota_post(location, where, "shift.cover" if cover else "shift.created", change)


@bp.route("/<slug>/rota/shifts/<shift_id>/delete", methods=["POST"])
@marks_form_problems
@login
def shift_remove(slug: str, shift_id: str) -> ResponseReturnValue:
    location = _edit_location(slug)
    if len(shift_id) > 40:
        abort(404)

    def change() -> tuple[str, Mapping[str, Any], str]:
        reason = form_value("reason", 200)
        removed = staffing.delete_shift(db.session(), location, shift_id, now=now(), reason=reason)
        staffing.record_nurse_changes(
            db.session(), location, [removed], actor=current_staff(), at=now()
        )
        shift = removed.shift
        tz = ZoneInfo(location.timezone)
        label = f"{shift.start.astimezone(tz):%a %d %b} " + rota_view.span(
            shift.start, shift.end, tz
        )
        details = {"clinician": shift.name, "when": label}
        return f"shift {shift.id}", details, f"Shift removed: {shift.name}, {label}."

    return _rota_post(location, "shift", "shift.removed", change, shift_id=shift_id)


@bp.route("/<slug>/rota/leave", methods=["POST"])
@marks_form_problems
@login
def leave(slug: str) -> ResponseReturnValue:
    location = _edit_location(slug)

    def change() -> tuple[str, Mapping[str, Any], str]:
        clinician = staffing.get_clinician(db.session(), _form_id("clinician", "clinician"))
        day = _form_date("date")
        reason = form_value("reason", 200)
        removed = staffing.add_leave(
            db.session(), location, clinician, day, now=now(), reason=reason
        )
        if not removed:
            raise InvalidInput(
                f"{clinician.name} has no weekly shift here on {day:%a %d %b}.",
                {"date": "no weekly shift here that day"},
            )
        staffing.record_nurse_changes(
            db.session(), location, removed, actor=current_staff(), at=now()
        )
        details = {"clinician": clinician.name, "day": day.isoformat(), "shifts": len(removed)}
        return f"clinician {clinician.id}", details, f"{clinician.name} is on leave {day:%a %d %b}."

    return _rota_post(location, "leave", "shift.leave", change)


@bp.route("/<slug>/rota/copy", methods=["POST"])
@marks_form_problems
@login
def copy_week(slug: str) -> ResponseReturnValue:
    location = _edit_location(slug)

    def change() -> tuple[str, Mapping[str, Any], str]:
        source = _form_date("week")
        target = _form_date("target")
        monday = source - dt.timedelta(days=source.weekday())
        target_monday = target - dt.timedelta(days=target.weekday())
        created = staffing.copy_week(
            db.session(), location, monday, target_monday, now=now(), viewer=current_staff()
        )
        details = {
            "from": monday.isoformat(),
            "to": target_monday.isoformat(),
            "shifts": len(created),
        }
        message = f"Copied {len(created)} shifts to the week of {target_monday:%d %b}."
        return f"location {location.slug}", details, message

    return _rota_post(location, "copy", "shift.week_copied", change)


# --- a visit's nurse ------------------------------------------------------------------------------


@bp.route("/appointments/<int:appointment_id>/nurse", methods=["POST"])
@marks_form_problems
@login
def appointment_nurse(appointment_id: int) -> ResponseReturnValue:
    appt = db.session.get(Appointment, appointment_id)
    if appt is None:
        abort(404)
    page_location(appt.location.slug)
    raw = form_value("nurse", 20)
    before = appt.nurse.name if appt.nurse else None
    try:
        refuse_characters()
        nurse_id = _form_id("nurse", "nurse") if raw else None
        staffing.change_nurse(db.session(), appt, nurse_id)
    except DomainError as exc:
        db.session.rollback()
        return _render_appointment(appt, error=exc, status=exc.http_status)
    db.session.expire(appt, ["nurse"])
    after = appt.nurse.name if appt.nurse else None
    staff_audit(
        "appointment.nurse_changed",
        f"appointment {appt.id}",
        location_id=appt.location_id,
        appointment_id=appt.id,
        details={"from": before, "to": after},
    )
    db.session.commit()
    flash(f"Nurse: {after}." if after else "No nurse assigned.")
    return redirect(url_for("staff.appointment", appointment_id=appt.id), 303)


# --- the staffing rules on the location's settings page -------------------------------------------


@bp.route("/settings/locations/<slug>/staffing", methods=["POST"])
@marks_form_problems
@login
def settings_staffing(slug: str) -> ResponseReturnValue:
    location = _edit_location(slug)
    before = staffing.staffing_of(location)
    try:
        refuse_characters()
        changes: dict[str, Any] = {"rules": request.form.get("rules") == "on"}
        for name in STAFFING_LIMITS:
            changes[name] = _form_int(name)
        after = staffing.patch_staffing(db.session(), location, changes, now=now())
    except DomainError as exc:
        db.session.rollback()
        db.session.refresh(location)
        return _render_location_settings(location, refusal("staffing-form", exc), exc.http_status)
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    if changed:
        staff_audit(
            "staffing.changed",
            f"{location.name} staffing",
            location_id=location.id,
            details=changed,
        )
    db.session.commit()
    flash("Saved.")
    return redirect(url_for("staff_settings.settings_location", slug=location.slug), 303)


# --- what other staff pages draw from ------------------------------------------------------------


@bp.app_context_processor
def _staffing_pieces() -> dict[str, Any]:
    def nurse_choices(appt: Appointment) -> list[tuple[int, str]]:
        """Nurses on shift at the visit's location when it starts (and its current nurse)."""
        if appt.service.kind == ServiceKind.CONSULTATION:
            return []
        shifts = staffing.shift_intervals(
            db.session(), appt.location, appt.occupied_start, appt.occupied_end
        )
        choices = {
            s.clinician_id: s.name
            for s in shifts
            if s.role == ClinicianRole.NURSE and s.start <= appt.occupied_start
        }
        if appt.nurse is not None:
            choices.setdefault(appt.nurse.id, appt.nurse.name)
        return sorted(choices.items(), key=lambda x: x[1])

    def day_floor(location: Location, day: dt.date) -> rota_view.DayFloor:
        return rota_view.day_floor(db.session(), location, day)

    def refused_visits(error: Any, location: Location) -> list[rota_view.Visit]:
        """The visits a refusal names, of `location` only (the page's own)."""
        ids = getattr(error, "appointments", None)
        return rota_view.visits(db.session(), ids, location_id=location.id)

    return {
        "rota_day_floor": day_floor,
        "rota_nurse_choices": nurse_choices,
        "rota_refused_visits": refused_visits,
        "rota_role_names": ROLE_NAMES,
        "rota_staffing_of": staffing.staffing_of,
    }


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
