"""Patient pages of the waitlist: join it from the booking steps when nothing suits, see or leave
one's place (`/waitlist/{token}`), and claim a freed time offered by SMS
(`/waitlist/offers/{token}`: the link's path in the offer text).

Thin views over services/waitlist.py (join, leave, get_offer, claim). Every change is a POST
answered by a redirect; the token pages check the CSRF token themselves, as `/a/...` does, because
they send no Referer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from scheduler.extensions import csrf, db, limiter
from scheduler.models import (
    Appointment,
    CourseTemplate,
    Location,
    Service,
    WaitlistStatus,
    WaitlistTimes,
)
from scheduler.services import courses, day_of, patients, waitlist
from scheduler.services.clock import in_supported_range
from scheduler.services.errors import DomainError, InvalidInput, NotFound
from scheduler.services.patients import PatientDetails
from scheduler.web import patient
from scheduler.web.common import now, settings
from scheduler.web.inputs import CONTROL_CHARACTER, marks_form_problems, refused_characters
from scheduler.web.security import booking_limit, browse_limit, token_page_limit

join_bp = Blueprint("waitlist_join", __name__)
bp = Blueprint("waitlist", __name__, url_prefix="/waitlist")
# Token pages: no Referer leaves them, so CSRFProtect's referrer check is replaced by the same
# token check as the appointment pages.
csrf.exempt(bp)
limiter.limit(token_page_limit)(bp)
bp.before_request(patient._check_csrf)
bp.errorhandler(HTTPException)(patient._error_page)
join_bp.errorhandler(HTTPException)(patient._error_page)

FORM_FIELDS = (
    "course",
    "name",
    "phone",
    "email",
    "date_of_birth",
    "earliest",
    "latest",
    "times",
    "escort_name",
    "escort_phone",
)
DEFAULT_WEEKS = 2
LABELS = {
    **patient.FIELD_LABELS,
    "earliest": "earliest date",
    "latest": "latest date",
    "times": "time of day",
    "course": "what you are waiting for",
    "sms_consent": "text message consent",
    "escort_name": "escort's name",
    "escort_phone": "escort's mobile number",
}
MESSAGES = {
    "earliest": "Enter the first day you could come, like 2026-12-01.",
    "latest": "Enter the last day you could come, like 2026-12-15.",
    "times": "Choose mornings, afternoons or any time.",
    "course": "Choose a single visit or one of the courses.",
    "sms_consent": "Tick the box: we offer freed times by text message only.",
}
TIMES = (
    (WaitlistTimes.ANY.value, "Any time"),
    (WaitlistTimes.MORNING.value, "Mornings (starting before 12:00 noon)"),
    (WaitlistTimes.AFTERNOON.value, "Afternoons (starting from 12:00 noon)"),
)


def _date(raw: str) -> dt.date | None:
    try:
        day = dt.date.fromisoformat(raw.strip())
    except ValueError:
        return None
    return day if in_supported_range(day) else None


def _messages(fields: dict[str, str]) -> dict[str, str]:
    """The service's field problems in the patient's words, in form order."""
    fields = dict(fields)
    for raw, name in patient.ESCORT_FIELDS.items():  # the service names them by API path
        if raw in fields:
            fields.setdefault(name, "required" if raw == "escort" else fields[raw])
    errors: dict[str, str] = {}
    for name in (*FORM_FIELDS, "sms_consent"):
        detail = fields.get(name)
        if detail is None:
            continue
        if detail == CONTROL_CHARACTER:
            errors[name] = patient.CONTROL_HINT
        elif name in MESSAGES and detail in ("required", "not a date"):
            errors[name] = MESSAGES[name]
        elif detail == "required" and name in LABELS:
            errors[name] = f"Enter your {LABELS[name]}."
        elif name in patient.FIELD_HINTS:
            errors[name] = patient.FIELD_HINTS[name]
        elif name in ("earliest", "latest"):
            errors[name] = f"The {LABELS[name]} is {detail}."
        else:
            errors[name] = detail[:1].upper() + detail[1:] + ("" if detail.endswith(".") else ".")
    return errors


def _courses(location: Location, service: Service) -> list[CourseTemplate]:
    """The courses of `service` offered at `location` (a patient may wait to start one)."""
    return [
        template
        for template in courses.list_templates(db.session(), location)
        if template.service_id == service.id
    ]


def _check(
    form: dict[str, str],
    location: Location,
    offered: list[CourseTemplate],
    *,
    escort_required: bool = False,
) -> dict[str, str]:
    """The booking form's rules for the details (name, birth date, mobile, e-mail), readable
    dates, a course among those offered (or none) and the consent to texts; the service checks
    the rest (range, horizon)."""
    fields: dict[str, str] = {}
    if form["course"] and form["course"] not in {t.slug for t in offered}:
        fields["course"] = "required"
    today = patient._today(location)
    dob = patient.form_birth_date(form["date_of_birth"])
    try:
        patients.validate_details(
            PatientDetails(form["name"], form["phone"], form["email"], True, dob),
            require_email=True,
            today=today,
            min_age_years=settings().patient_min_age_years,
            birth_date_required=True,
        )
    except InvalidInput as exc:
        fields.update(exc.fields)
    if form["date_of_birth"].strip() and dob is None:
        fields["date_of_birth"] = patient.BIRTH_DATE_HINT
    for name in ("earliest", "latest"):
        if not form[name].strip():
            fields[name] = "required"
        elif _date(form[name]) is None:
            fields[name] = "not a date"
    if form["times"] not in {value for value, _ in TIMES}:
        fields["times"] = "required"
    if not form["sms_consent"]:
        fields["sms_consent"] = "required"
    if escort_required:
        try:
            day_of.validate_escort(
                day_of.Escort(form["escort_name"], form["escort_phone"]), required=True
            )
        except InvalidInput as exc:
            fields.update(exc.fields)
    return fields


def _join_page(
    location: Location,
    service: Service,
    form: dict[str, str],
    errors: dict[str, str],
    problem: str,
    status: int,
) -> ResponseReturnValue:
    today = patient._today(location)
    return (
        render_template(
            "patient/waitlist_join.html",
            location=location,
            service=service,
            form=form,
            errors=errors,
            problem=problem,
            times=TIMES,
            courses=[(t.slug, t.name, courses.describe(t)) for t in _courses(location, service)],
            labels=LABELS,
            offer_minutes=settings().waitlist_offer_minutes,
            min_date=today.isoformat(),
            max_date=patient._last_day(location, service).isoformat(),
            back_url=url_for(
                "patient.days",
                location=location.slug,
                service=service.slug,
                month=(_date(form["earliest"]) or today).strftime("%Y-%m"),
            ),
            step=None,
        ),
        status,
    )


@join_bp.route("/book/<location>/<service>/waitlist", methods=["GET", "POST"])
@marks_form_problems
@limiter.limit(browse_limit, methods=["GET"])
@limiter.limit(booking_limit, methods=["POST"])
def join(location: str, service: str) -> ResponseReturnValue:
    loc = patient._location_or_404(location)
    svc = patient._service_or_404(loc, service)
    if request.method == "GET":
        today, last = patient._today(loc), patient._last_day(loc, svc)
        asked = _date(request.args.get("day", "")) or today
        first = min(max(asked, today), last)
        until = min(first + dt.timedelta(weeks=DEFAULT_WEEKS), last)
        form = dict.fromkeys((*FORM_FIELDS, "sms_consent"), "")
        form.update(
            earliest=first.isoformat(), latest=until.isoformat(), times=WaitlistTimes.ANY.value
        )
        return _join_page(loc, svc, form, {}, "", 200)

    form = {name: value[:2000] for name, value in patient.posted_details(FORM_FIELDS).items()}
    if (refused := refused_characters()) is not None:
        # Nothing joins: the form shows again as typed, the field named.
        return _join_page(
            loc, svc, form, _messages(refused.fields), refused.message, refused.http_status
        )
    fields = _check(form, loc, _courses(loc, svc), escort_required=svc.escort_required)
    if fields:
        return _join_page(loc, svc, form, _messages(fields), "Some details need correcting.", 422)
    earliest, latest, dob = (
        _date(form["earliest"]),
        _date(form["latest"]),
        patient.form_birth_date(form["date_of_birth"]),
    )
    assert earliest is not None and latest is not None and dob is not None
    try:
        entry = waitlist.join(
            db.session(),
            waitlist.JoinRequest(
                location=loc.slug,
                service=None if form["course"] else svc.slug,
                course=form["course"] or None,
                patient=PatientDetails(form["name"], form["phone"], form["email"], True, dob),
                earliest=earliest,
                latest=latest,
                times=form["times"],
                source="online",
                escort=day_of.Escort(form["escort_name"], form["escort_phone"]),
                require_escort=True,
            ),
            now=now(),
            settings=settings(),
        )
        db.session.commit()
    except NotFound:
        db.session.rollback()
        abort(404)
    except DomainError as exc:
        db.session.rollback()
        return _join_page(loc, svc, form, _messages(exc.fields), exc.message, exc.http_status)
    flash("joined", "event")
    return redirect(url_for("waitlist.entry", token=entry.manage_token), 303)


# --- one's place on the list (/waitlist/<token>) ----------------------------------------------------


def _entry_context(token: str) -> dict[str, Any]:
    try:
        entry = waitlist.get_entry(db.session(), token)
    except NotFound:
        abort(404)
    return {
        "entry": entry,
        "location": entry.location,
        "service": entry.service,
        "earliest_label": patient.long_day(entry.earliest),
        "latest_label": patient.long_day(entry.latest),
        "times_label": dict(TIMES).get(entry.times, entry.times),
        "active": entry.status == WaitlistStatus.ACTIVE,
        "booked": entry.status == WaitlistStatus.BOOKED,
        "offer_minutes": settings().waitlist_offer_minutes,
        "phone_label": patient.display_phone(entry.patient.phone),
        "token": token,
        "step": None,
    }


@bp.route("/<token>")
def entry(token: str) -> ResponseReturnValue:
    context = _entry_context(token)
    events = get_flashed_messages(category_filter=["event"])
    return render_template(
        "patient/waitlist_entry.html", event=events[-1] if events else "", **context
    )


@bp.route("/<token>/leave", methods=["GET", "POST"])
@marks_form_problems
def leave(token: str) -> ResponseReturnValue:
    context = _entry_context(token)
    if (refused := refused_characters()) is not None:
        return render_template(
            "patient/waitlist_leave.html", problem=patient.refused_summary(refused), **context
        ), refused.http_status
    if request.method == "GET":
        if not context["active"]:
            return redirect(url_for("waitlist.entry", token=token), 303)
        return render_template("patient/waitlist_leave.html", **context)
    waitlist.leave(db.session(), token, now=now())
    db.session.commit()
    flash("left", "event")
    return redirect(url_for("waitlist.entry", token=token), 303)


# --- an offer (/waitlist/offers/<token>) ------------------------------------------------------------


def _offer_page(
    view: waitlist.OfferView, template: str, status: int, **extra: Any
) -> ResponseReturnValue:
    tz = ZoneInfo(view.location.timezone)
    expires = view.offer.expires_at
    return (
        render_template(
            template,
            view=view,
            location=view.location,
            service=view.service,
            start_label=patient.when(view.start, tz),
            day_label=patient.long_day(view.start.astimezone(tz).date()),
            leave_label=patient.leave_time(view.end, view.service.recovery_minutes, tz),
            duration_minutes=view.service.duration_minutes,
            expires_label=patient.when(expires, tz) if expires else "",
            map_url=patient.map_url(view.location.address) if view.location.address else "",
            entry_url=url_for("waitlist.entry", token=view.entry.manage_token),
            offer_minutes=settings().waitlist_offer_minutes,
            plan_labels=[
                {"when": patient.when(visit.start, tz), "moved": visit.moved} for visit in view.plan
            ],
            step=None,
            **extra,
        ),
        status,
    )


def _view(token: str) -> waitlist.OfferView:
    try:
        return waitlist.get_offer(db.session(), token, now=now(), settings=settings())
    except NotFound:
        abort(404)


def _booked_url(appointment: Appointment) -> str:
    """Where a claimed offer leads: the course's page for a course's first session, else the
    visit's page (both at /a/<token>)."""
    course = courses.course_of(appointment)
    token = course.manage_token if course is not None else appointment.manage_token
    return url_for("manage.show", token=token)


def _appointment_url(appointment_id: int | None) -> str | None:
    appt = db.session.get(Appointment, appointment_id) if appointment_id else None
    return _booked_url(appt) if appt else None


@bp.route("/offers/<token>", methods=["GET", "POST"])
@marks_form_problems
def offer(token: str) -> ResponseReturnValue:
    view = _view(token)
    refused = refused_characters()
    if refused is not None and view.claimable:
        problem = patient.refused_summary(refused)  # nothing is booked: the offer shows again
        return _offer_page(
            view, "patient/waitlist_offer.html", refused.http_status, problem=problem
        )
    if request.method == "GET" or refused is not None:
        if view.claimed and (url := _appointment_url(view.appointment_id)):
            return redirect(url, 303)
        if view.already_booked:
            return _offer_page(view, "patient/waitlist_already_booked.html", 200)
        if view.expired:
            return _offer_page(view, "patient/waitlist_expired.html", 200)
        if view.taken:
            return _offer_page(view, "patient/waitlist_taken.html", 200)
        return _offer_page(view, "patient/waitlist_offer.html", 200)
    try:
        appointment = waitlist.claim(db.session(), token, now=now(), settings=settings())
        db.session.commit()
    except waitlist.AlreadyBooked:
        db.session.rollback()
        return _offer_page(_view(token), "patient/waitlist_already_booked.html", 409)
    except waitlist.OfferTaken:
        db.session.rollback()
        return _offer_page(_view(token), "patient/waitlist_taken.html", 409)
    except waitlist.OfferExpired:
        db.session.rollback()
        return _offer_page(_view(token), "patient/waitlist_expired.html", 409)
    except NotFound:
        db.session.rollback()
        abort(404)
    except DomainError as exc:
        # The booking's own rules (spacing, clearance, another visit then): said plainly.
        db.session.rollback()
        return _offer_page(
            _view(token), "patient/waitlist_refused.html", exc.http_status, problem=exc.message
        )
    flash("booked", "event")
    return redirect(_booked_url(appointment), 303)


@bp.route("/<path:anything>", methods=["GET", "POST"])
@marks_form_problems  # not found, whatever was posted
def unknown(anything: str) -> ResponseReturnValue:
    abort(404)


def init_app(app: Flask) -> None:
    app.register_blueprint(join_bp)
    app.register_blueprint(bp)
