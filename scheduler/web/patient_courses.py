"""Patient pages of a treatment course: the plan from a first time, the details, booking every
session at once, and the course's own page (by its token: every session, move one, cancel the
rest). Registered on the patient blueprints; the rules are in `services.courses`."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from flask import abort, flash, get_flashed_messages, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from scheduler.extensions import db, limiter
from scheduler.models import Course, CourseTemplate, Location, Service
from scheduler.services import booking, course_view, courses, day_of, idempotency
from scheduler.services.errors import DomainError, InvalidInput, NotCleared, NotFound
from scheduler.web.common import now, settings
from scheduler.web.inputs import marks_form_problems, refused_characters, without_controls
from scheduler.web.patient import (
    DETAIL_FIELDS,
    FormSubmission,
    _bad_request,
    _consultation_first,
    _field_errors,
    _location_or_404,
    _patient_details,
    _service_or_404,
    bp,
    clock_time,
    display_phone,
    local_start,
    long_day,
    manage_bp,
    parse_start,
    posted_details,
    refused_summary,
    when,
    zone_note,
)
from scheduler.web.security import booking_limit, browse_limit

SUBMISSION_SCOPE = "patient-course-form"


def _course(location: Location, service: Service, slug: str) -> CourseTemplate:
    try:
        return course_view.offered(db.session(), location, service.id, slug)
    except NotFound:
        abort(404)


def _days_url(location: Location, service: Service, template: CourseTemplate) -> str:
    return url_for(
        "patient.days", location=location.slug, service=service.slug, course=template.slug
    )


def _times_url(
    location: Location, service: Service, template: CourseTemplate, first: dt.datetime
) -> str:
    day = first.astimezone(ZoneInfo(location.timezone)).date()
    return url_for(
        "patient.times",
        location=location.slug,
        service=service.slug,
        day=day.isoformat(),
        course=template.slug,
    )


def _session_list(
    starts: list[dt.datetime],
    location: Location,
    template: CourseTemplate,
    moved: list[str | None],
) -> list[dict[str, Any]]:
    """The sessions as the plan and the details page list them."""
    tz = ZoneInfo(location.timezone)
    service, after = template.service, template.review_after
    out = []
    for i, start in enumerate(starts):
        leave = start + dt.timedelta(minutes=service.duration_minutes + service.recovery_minutes)
        out.append(
            {
                "number": i + 1,
                "value": local_start(start, tz),
                "when": when(start, tz),
                "day": long_day(start.astimezone(tz).date()),
                "leave": clock_time(leave.astimezone(tz)),
                "moved": moved[i] if i < len(moved) else None,
                "held": after is not None and i + 1 > after,
            }
        )
    return out


@bp.route("/book/<location>/<service>/course/<course>")
@limiter.limit(browse_limit)
def course_plan(location: str, service: str, course: str) -> ResponseReturnValue:
    """The plan from the chosen first time: every session's date and time, any moved one with
    the reason; the patient confirms it (a GET form to the details, carrying the starts)."""
    loc = _location_or_404(location)
    svc = _service_or_404(loc, service)
    template = _course(loc, svc, course)
    tz = ZoneInfo(loc.timezone)
    first = parse_start(request.args.get("start"), tz)
    if first is None:
        return _bad_request(
            "That is not a time we offer. Please choose a time from the list.",
            _days_url(loc, svc, template),
        )
    problem, status, sessions = "", 200, []
    try:
        plan = courses.plan(
            db.session(), loc.slug, template.slug, first, now=now(), settings=settings()
        )
        sessions = _session_list(
            [x.start for x in plan.sessions], loc, template, [x.moved for x in plan.sessions]
        )
    except DomainError as exc:  # no_plan (409), a time in the past (422)
        db.session.rollback()
        problem, status = exc.message, exc.http_status
    return render_template(
        "patient/course_plan.html",
        location=loc,
        service=svc,
        template=template,
        description=courses.describe(template),
        first_label=when(first, tz),
        sessions=sessions,
        problem=problem,
        zone_note=zone_note(loc, first.astimezone(tz).date()),
        back_url=_times_url(loc, svc, template, first),
        days_url=_days_url(loc, svc, template),
        step=4,
    ), status


def _starts(values: list[str], tz: ZoneInfo) -> list[dt.datetime] | None:
    starts = [parse_start(v, tz) for v in values[: courses.MAX_SESSIONS]]
    if not starts or any(s is None for s in starts):
        return None
    return [s for s in starts if s is not None]


def _details_page(
    loc: Location,
    svc: Service,
    template: CourseTemplate,
    starts: list[dt.datetime],
    form: dict[str, str],
    errors: dict[str, str],
    problem: str,
    status: int,
    submission: str,
    session_errors: dict[int, str] | None = None,
) -> ResponseReturnValue:
    sessions = _session_list(starts, loc, template, [])
    for row in sessions:
        row["error"] = (session_errors or {}).get(row["number"], "")
    late = any(booking.inside_change_window(svc, start, now()) for start in starts)
    return render_template(
        "patient/course_details.html",
        location=loc,
        service=svc,
        template=template,
        sessions=sessions,
        form={name: form.get(name, "") for name in (*DETAIL_FIELDS, "sms_consent")},
        errors=errors,
        problem=problem,
        submission=submission,
        late=late,
        phone=display_phone(loc.phone) if loc.phone else "",
        phone_uri=f"tel:{loc.phone}" if loc.phone else "",
        plan_url=url_for(
            "patient.course_plan",
            location=loc.slug,
            service=svc.slug,
            course=template.slug,
            start=local_start(starts[0], ZoneInfo(loc.timezone)),
        ),
        days_url=_days_url(loc, svc, template),
        step=5,
    ), status


def _session_errors(exc: DomainError) -> dict[int, str]:
    """`starts[i]` (0-based) in a refusal's fields, as session numbers."""
    out = {}
    for name, detail in exc.fields.items():
        if name.startswith("starts[") and name.endswith("]"):
            try:
                out[int(name[7:-1]) + 1] = detail
            except ValueError:
                continue
    return out


@bp.route("/book/<location>/<service>/course/<course>/details", methods=["GET", "POST"])
@marks_form_problems
@limiter.limit(browse_limit, methods=["GET"])
@limiter.limit(booking_limit, methods=["POST"])
def course_details(location: str, service: str, course: str) -> ResponseReturnValue:
    loc = _location_or_404(location)
    svc = _service_or_404(loc, service)
    template = _course(loc, svc, course)
    tz = ZoneInfo(loc.timezone)
    source = request.form if request.method == "POST" else request.args
    starts = _starts(source.getlist("starts"), tz)
    if starts is None:
        return _bad_request(
            "That plan is not complete. Please choose the first time again.",
            _days_url(loc, svc, template),
        )
    if request.method == "GET":
        return _details_page(loc, svc, template, starts, {}, {}, "", 200, secrets.token_urlsafe(18))
    form = posted_details()
    submission = without_controls(request.form.get("submission", ""))[:64]
    submission = submission or secrets.token_urlsafe(18)
    if (refused := refused_characters()) is not None:
        # Before the submission is looked up: nothing is booked, the form shows again.
        errors = _field_errors(refused)
        status = refused.http_status
        return _details_page(
            loc, svc, template, starts, form, errors, refused.message, status, submission
        )
    digest = idempotency.request_hash(
        {"starts": [s.isoformat() for s in starts], **form, "at": loc.slug, "course": course}
    )
    form_sent = FormSubmission(SUBMISSION_SCOPE, submission, digest)
    again = form_sent.first_answer()
    if again is not None:
        return again
    try:
        booked = courses.book_course(
            db.session(),
            courses.CourseRequest(
                location=loc.slug,
                course=template.slug,
                starts=starts,
                patient=_patient_details(form),
                note=form["note"],
                escort=day_of.Escort(form["escort_name"], form["escort_phone"]),
                require_escort=True,
            ),
            now=now(),
            settings=settings(),
        )
        form_sent.remember(booked.manage_token)
        db.session.commit()
    except NotCleared:
        db.session.rollback()
        return _consultation_first(loc, svc)
    except NotFound:
        db.session.rollback()
        abort(404)
    except DomainError as exc:
        # A session refused (409 naming it), spacing broken (422 starts), or the details.
        db.session.rollback()
        errors = _field_errors(exc) if isinstance(exc, InvalidInput) else {}
        errors.pop("start", None)
        status = exc.http_status if 400 <= exc.http_status < 500 else 409
        return _details_page(
            loc,
            svc,
            template,
            starts,
            form,
            errors,
            exc.message,
            status,
            submission,
            _session_errors(exc),
        )
    flash("booked", "event")
    return redirect(url_for("manage.show", token=booked.manage_token), 303)


# --- the course's own page (/a/<course token>) ----------------------------------------------------


def _context(course: Course) -> dict[str, Any]:
    tz = ZoneInfo(course.location.timezone)
    rows = course_view.session_rows(course, now())
    preview = course_view.rest_preview(course, now())
    service = course.template.service
    return {
        "course": course,
        "template": course.template,
        "location": course.location,
        "service": service,
        "rows": rows,
        "when": lambda instant: when(instant, tz),
        "progress": courses.progress_label(course),
        "held_after": course.template.review_after if course.review_state == "pending" else None,
        "can_cancel_rest": bool(preview.cancel),
        "preview": preview,
        "late_hours": service.late_cancel_hours,
        "email": (rows[0].appointment.patient.email if rows else ""),
        "phone": display_phone(course.location.phone) if course.location.phone else "",
        "phone_uri": f"tel:{course.location.phone}" if course.location.phone else "",
        "manage_url": settings().manage_url(course.manage_token),
        "token": course.manage_token,
    }


def course_page(course: Course) -> ResponseReturnValue:
    events = get_flashed_messages(category_filter=["event"])
    return render_template(
        "patient/course.html", event=events[-1] if events else "", **_context(course)
    )


def _course_by_token(token: str) -> Course:
    found = courses.find_by_token(db.session(), token)
    if found is None:
        abort(404)
    return found


@manage_bp.route("/<token>/cancel-rest", methods=["GET", "POST"])
@marks_form_problems
def cancel_rest(token: str) -> ResponseReturnValue:
    """Cancel every future session outside the late-cancel window, after a confirmation."""
    course = _course_by_token(token)
    if (refused := refused_characters()) is not None:
        return render_template(
            "patient/course_cancel.html", problem=refused_summary(refused), **_context(course)
        ), refused.http_status
    if request.method == "POST":
        try:
            courses.cancel_rest(db.session(), course, now=now(), settings=settings())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            course = _course_by_token(token)
            return render_template(
                "patient/course_cancel.html", problem=exc.message, **_context(course)
            ), exc.http_status
        flash("cancelled_rest", "event")
        return redirect(url_for("manage.show", token=token), 303)
    context = _context(course)
    if not context["can_cancel_rest"]:
        return redirect(url_for("manage.show", token=token), 303)
    return render_template("patient/course_cancel.html", problem="", **context)
