"""JSON API v1: treatment courses (templates offered, plans, booking a whole course, review).

Registered on the API blueprint through `web/api.py::route`. A course's manage token is served
by the manage endpoints in `web/api.py` (they tell a course's token from an appointment's).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import g, jsonify
from flask.typing import ResponseReturnValue

from scheduler.extensions import db
from scheduler.services import booking, courses
from scheduler.services.errors import Forbidden, InvalidInput, NotFound
from scheduler.web import schemas as s
from scheduler.web.api import (
    Idempotent,
    _body_fields,
    _local,
    api_audit,
    course_out,
    parse_body,
    route,
    staff_required,
)
from scheduler.web.common import now, settings

MAX_ID = 2**31 - 1


def template_out(template: Any) -> dict[str, Any]:
    return s.CourseTemplateOut(
        slug=template.slug,
        name=template.name,
        service=template.service.slug,
        sessions=template.sessions,
        min_gap_hours=template.min_gap_hours,
        max_gap_hours=template.max_gap_hours,
        within_days=template.within_days,
        review_after=template.review_after,
        weekdays=template.weekdays,
        description=courses.describe(template),
    ).model_dump()


@route(
    "/locations/<location>/courses",
    summary="Treatment courses offered at a location",
    response=list[s.CourseTemplateOut],
    errors=(404,),
)
def location_courses(location: str) -> ResponseReturnValue:
    loc = booking.get_location(db.session(), location)
    return jsonify([template_out(t) for t in courses.list_templates(db.session(), loc)])


@route(
    "/courses/plan",
    "POST",
    summary="Plan a course from its first start: every session at the same local time where "
    "it can, else the nearest start that keeps the rules (`moved` says why)",
    body=s.CoursePlanIn,
    response=s.CoursePlanOut,
    errors=(404, 409, 422),
)
def plan_course() -> ResponseReturnValue:
    body = parse_body(s.CoursePlanIn)
    plan = courses.plan(
        db.session(), body.location, body.course, body.first_start, now=now(), settings=settings()
    )
    tz = ZoneInfo(plan.location.timezone)
    return jsonify(
        s.CoursePlanOut(
            location=plan.location.slug,
            course=plan.template.slug,
            timezone=plan.location.timezone,
            sessions=[
                s.PlannedSessionOut(start=_local(x.start, tz), end=_local(x.end, tz), moved=x.moved)
                for x in plan.sessions
            ],
        ).model_dump()
    )


@route(
    "/courses",
    "POST",
    summary="Book every session of a course, all or nothing",
    body=s.CourseIn,
    response=s.CourseOut,
    status=201,
    errors=(404, 409, 422),
    headers=("Idempotency-Key",),
)
def create_course() -> ResponseReturnValue:
    retry, replay = Idempotent.begin("courses")
    if replay is not None:
        return replay
    body = parse_body(s.CourseIn)
    course_request = courses.CourseRequest(
        location=body.location,
        course=body.course,
        starts=body.starts,
        patient=body.patient.details(body.sms_consent),
        note=body.note,
        escort=body.escort.escort() if body.escort else None,
    )
    try:
        course = courses.book_course(db.session(), course_request, now=now(), settings=settings())
    except InvalidInput as exc:
        raise InvalidInput(exc.message, _body_fields(exc.fields)) from exc
    response = jsonify(course_out(course))
    response.status_code = 201
    return retry.finish(response)


def _staff_course(course_id: int) -> Any:
    if course_id > MAX_ID:
        raise NotFound("No such course.")
    course = courses.get_course(db.session(), course_id)
    if not g.staff.can_access(course.location_id):
        raise Forbidden("You do not have access to this location.")
    return course


@route(
    "/courses/<int:course_id>",
    summary="A course with every session and its progress (staff)",
    response=s.CourseOut,
    auth=True,
    errors=(401, 403, 404),
)
@staff_required
def get_course(course_id: int) -> ResponseReturnValue:
    return jsonify(course_out(_staff_course(course_id)))


@route(
    "/courses/<int:course_id>/review",
    "POST",
    summary="Record the review decision: continue releases the held sessions, stop cancels "
    "them (CANCEL invites, one SMS)",
    body=s.ReviewIn,
    response=s.CourseOut,
    auth=True,
    errors=(401, 403, 404, 409, 422),
)
@staff_required
def review_course(course_id: int) -> ResponseReturnValue:
    course = _staff_course(course_id)
    if not courses.may_review(g.staff):
        raise Forbidden("A prescriber, a manager or an admin records the review.")
    body = parse_body(s.ReviewIn)
    courses.review(
        db.session(), course, body.decision, now=now(), settings=settings(), staff=g.staff
    )
    api_audit(
        f"course.review_{body.decision}",
        f"course {course.id}",
        location_id=course.location_id,
        patient_id=course.patient_id,
        details={"course": course.id, "decision": body.decision},
    )
    db.session.commit()
    return jsonify(course_out(course))
