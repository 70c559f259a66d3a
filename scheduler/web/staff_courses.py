"""The staff portal's course pages: course templates under the settings (admins, and managers
for their services), a patient's course with its sessions and progress, and the review decision
(continue or stop) at the course's review point."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from scheduler.extensions import db
from scheduler.models import Course, CourseTemplate, Service, StaffUser
from scheduler.services import course_view, courses, settings_admin
from scheduler.services.errors import DomainError
from scheduler.web.auth import current_staff
from scheduler.web.common import now, settings
from scheduler.web.inputs import (
    marks_form_problems,
    query_id,
)
from scheduler.web.staff_common import (
    forbidden,
    form_value,
    install_pages,
    login,
    refuse_characters,
    staff_audit,
)
from scheduler.web.staff_settings import require_settings_role

bp = Blueprint("staff_courses", __name__, url_prefix="/staff")
install_pages(bp)

TEMPLATE_FIELDS = (
    "slug",
    "name",
    "service",
    "sessions",
    "min_gap_hours",
    "max_gap_hours",
    "within_days",
    "weekdays",
    "review_after",
)
WEEKDAY_CHOICES = (
    ("", "Any day"),
    ("consecutive_weekdays", "Consecutive weekdays (Mon–Fri)"),
    ("mon,wed,fri", "Mon, Wed, Fri"),
    ("tue,thu", "Tue, Thu"),
    ("mon,thu", "Mon, Thu"),
)


# --- settings: course templates -------------------------------------------------------------------


def _editable_services(staff: StaffUser) -> list[Service]:
    services = db.session.scalars(select(Service).order_by(Service.name))
    return [s for s in services if settings_admin.can_edit_service(staff, s)]


def _render_template_form(
    template: CourseTemplate | None,
    values: Mapping[str, Any],
    error: DomainError | None,
    status: int,
) -> ResponseReturnValue:
    choices = list(WEEKDAY_CHOICES)
    current = values.get("weekdays") or ""
    if current and current not in dict(choices):
        choices.append((current, current))
    return (
        render_template(
            "staff/settings_course.html",
            template=template,
            values=values,
            services=_editable_services(current_staff()),
            weekday_choices=choices,
            error=error,
        ),
        status,
    )


def _template_values(template: CourseTemplate) -> dict[str, Any]:
    values: dict[str, Any] = {k: getattr(template, k) for k in TEMPLATE_FIELDS if k != "service"}
    values["service"] = template.service.slug
    values["active"] = template.active
    return values


def _posted_template() -> dict[str, Any]:
    values: dict[str, Any] = {k: form_value(k, 200) for k in TEMPLATE_FIELDS}
    values["active"] = request.form.get("active") == "on"
    return values


def _template_or_403(staff: StaffUser, slug: str) -> CourseTemplate:
    found = db.session.scalars(select(CourseTemplate).where(CourseTemplate.slug == slug)).first()
    if found is None or not settings_admin.can_edit_service(staff, found.service):
        forbidden()
    return found


def _check_service(staff: StaffUser, values: Mapping[str, Any]) -> None:
    """A manager may only give a template a service they may edit."""
    service = db.session.scalars(select(Service).where(Service.slug == values["service"])).first()
    if service is not None and not settings_admin.can_edit_service(staff, service):
        forbidden()


@bp.route("/settings/courses")
@login
def course_templates() -> ResponseReturnValue:
    staff = require_settings_role()
    mine = {s.id for s in _editable_services(staff)}
    rows = [t for t in courses.all_templates(db.session()) if t.service_id in mine]
    return render_template("staff/settings_courses.html", templates=rows, describe=courses.describe)


@bp.route("/settings/courses/new", methods=["GET", "POST"])
@marks_form_problems
@login
def course_template_new() -> ResponseReturnValue:
    staff = require_settings_role()
    if request.method == "GET":
        return _render_template_form(None, {"active": True}, None, 200)
    values = _posted_template()
    try:
        refuse_characters()
        _check_service(staff, values)
        template = courses.save_template(db.session(), None, values)
    except DomainError as exc:
        db.session.rollback()
        return _render_template_form(None, values, exc, exc.http_status)
    staff_audit("course_template.created", f"course template {template.slug}", details=values)
    db.session.commit()
    flash("Course created.")
    return redirect(url_for("staff_courses.course_template", slug=template.slug), 303)


@bp.route("/settings/courses/<slug>", methods=["GET", "POST"])
@marks_form_problems
@login
def course_template(slug: str) -> ResponseReturnValue:
    staff = require_settings_role()
    template = _template_or_403(staff, slug)
    if request.method == "GET":
        return _render_template_form(template, _template_values(template), None, 200)
    values = _posted_template()
    try:
        refuse_characters()
        _check_service(staff, values)
        courses.save_template(db.session(), template, values)
    except DomainError as exc:
        db.session.rollback()
        template = _template_or_403(staff, slug)
        return _render_template_form(template, values, exc, exc.http_status)
    staff_audit("course_template.updated", f"course template {template.slug}", details=values)
    db.session.commit()
    flash("Saved.")
    return redirect(url_for("staff_courses.course_template", slug=template.slug), 303)


# --- a patient's course and its review ------------------------------------------------------------


def _course(course_id: int) -> Course:
    course = db.session.get(Course, course_id)
    if course is None or not current_staff().can_access(course.location_id):
        forbidden()  # unknown and another location's look alike
    return course


def _render_course(
    course: Course, error: DomainError | None = None, status: int = 200
) -> ResponseReturnValue:
    staff = current_staff()
    tz = ZoneInfo(course.location.timezone)
    return (
        render_template(
            "staff/course.html",
            course=course,
            location=course.location,
            tz=tz,
            rows=course_view.session_rows(course, now()),
            progress=courses.progress_label(course),
            next_held=courses.next_held_start(course),
            may_review=courses.may_review(staff) and course.review_state == "pending",
            describe=courses.describe(course.template),
            error=error,
        ),
        status,
    )


@bp.route("/courses/<int:course_id>")
@login
def course(course_id: int) -> ResponseReturnValue:
    return _render_course(_course(course_id))


@bp.route("/courses/<int:course_id>/review", methods=["POST"])
@marks_form_problems
@login
def course_review(course_id: int) -> ResponseReturnValue:
    course = _course(course_id)
    staff = current_staff()
    if not courses.may_review(staff):
        forbidden()
    decision = form_value("decision", 20)
    try:
        refuse_characters()
        courses.review(db.session(), course, decision, now=now(), settings=settings(), staff=staff)
    except DomainError as exc:
        db.session.rollback()
        return _render_course(_course(course_id), exc, exc.http_status)
    staff_audit(
        f"course.review_{decision}",
        f"course {course.id}",
        actor=staff,
        location_id=course.location_id,
        patient_id=course.patient_id,
        details={"course": course.id, "decision": decision},
    )
    db.session.commit()
    flash(
        "Review recorded: the course continues."
        if decision == "continue"
        else "Review recorded: the course is stopped and its held sessions cancelled."
    )
    visit = query_id(request.form.get("appointment"))
    # From the visit page, back to it (only a visit of this course).
    if visit is not None and any(a.id == visit for a in courses.sessions(course)):
        return redirect(url_for("staff.appointment", appointment_id=visit), 303)
    return redirect(url_for("staff_courses.course", course_id=course.id), 303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
