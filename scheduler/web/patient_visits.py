""" "My visits": a patient enters their mobile number, gets a one-time code by SMS, enters it,
picks who they are on that phone (name + birth date) and sees their upcoming visits, each with
its own page to change or cancel. Every POST answers with a redirect (Back never re-sends)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Flask,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from scheduler import jobs
from scheduler.extensions import db, limiter
from scheduler.services import visit_codes
from scheduler.services.errors import DomainError, InvalidInput
from scheduler.services.sms import SmsError
from scheduler.web.common import now, settings
from scheduler.web.inputs import marks_form_problems, refused_characters, without_controls
from scheduler.web.patient import refused_summary, when
from scheduler.web.security import booking_limit

bp = Blueprint("my_visits", __name__, url_prefix="/my-visits")
log = logging.getLogger("scheduler.my_visits")
VERIFIED_MINUTES = 30


def _verified_phone() -> str | None:
    phone, at = session.get("mv_phone"), session.get("mv_verified_at")
    if not phone or not at:
        return None
    if now() - dt.datetime.fromisoformat(at) > dt.timedelta(minutes=VERIFIED_MINUTES):
        return None
    return str(phone)


def _page(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    return render_template(f"patient/{template}", step=None, **context), status


@bp.route("", methods=["GET", "POST"])
@marks_form_problems
@limiter.limit(booking_limit, methods=["POST"])
def start() -> ResponseReturnValue:
    if request.method == "GET":
        return _page("my_visits_phone.html", phone="", error="")
    raw = without_controls(request.form.get("phone", ""))[:40]
    if (refused := refused_characters()) is not None:
        # No code is asked for: the number shows again, the field named.
        error = refused_summary(refused)
        return _page("my_visits_phone.html", refused.http_status, phone=raw, error=error)
    try:
        asked = visit_codes.request_code(db.session(), raw, now=now())
    except DomainError as exc:
        db.session.rollback()
        return _page("my_visits_phone.html", exc.http_status, phone=raw, error=exc.message)
    db.session.commit()
    if asked.code is not None:
        body = f"{settings().clinic_name}: your code is {asked.code}. It expires in 10 minutes."
        try:
            jobs.sms_sender(current_app._get_current_object()).send(asked.phone, body)  # type: ignore[attr-defined]
        except SmsError as exc:
            log.warning("my visits: code not sent (%s)", type(exc).__name__)
    session["mv_phone"], session["mv_verified_at"] = asked.phone, None
    session.pop("mv_patient", None)
    return redirect(url_for("my_visits.code"), 303)


@bp.route("/code", methods=["GET", "POST"])
@marks_form_problems
@limiter.limit(booking_limit, methods=["POST"])
def code() -> ResponseReturnValue:
    phone = session.get("mv_phone")
    if not phone:
        return redirect(url_for("my_visits.start"), 303)
    if request.method == "GET":
        return _page("my_visits_code.html", error="")
    if (refused := refused_characters()) is not None:
        # Not a guess (it does not count against the code): the code shows again.
        typed = without_controls(request.form.get("code", ""))[:20]
        error = refused_summary(refused)
        return _page("my_visits_code.html", refused.http_status, error=error, code=typed)
    try:
        visit_codes.verify_code(db.session(), phone, request.form.get("code", "")[:20], now=now())
    except DomainError as exc:
        db.session.commit()  # a wrong code counts, even though this request failed
        return _page("my_visits_code.html", exc.http_status, error=exc.message)
    db.session.commit()
    session["mv_verified_at"] = now().isoformat()
    return redirect(url_for("my_visits.who"), 303)


@bp.route("/who", methods=["GET", "POST"])
@marks_form_problems
def who() -> ResponseReturnValue:
    phone = _verified_phone()
    if phone is None:
        return redirect(url_for("my_visits.start"), 303)
    people = visit_codes.people(db.session(), phone)
    if request.method == "GET":
        return _page("my_visits_who.html", people=people, error="")
    if (refused := refused_characters()) is not None:
        return _page(
            "my_visits_who.html",
            refused.http_status,
            people=people,
            error=refused_summary(refused),
            chosen=without_controls(request.form.get("patient", ""))[:12],
            date_of_birth=without_controls(request.form.get("date_of_birth", ""))[:20],
        )
    try:
        raw_id = request.form.get("patient", "")
        if not raw_id.isdigit():
            raise InvalidInput("Choose who you are.", {"patient": "required"})
        dob = dt.date.fromisoformat(request.form.get("date_of_birth", "").strip())
        patient = visit_codes.choose(db.session(), phone, int(raw_id), dob)
    except ValueError:
        return _page("my_visits_who.html", 422, people=people, error="Enter your date of birth.")
    except DomainError as exc:
        db.session.rollback()
        return _page("my_visits_who.html", exc.http_status, people=people, error=exc.message)
    session["mv_patient"] = patient.id
    return redirect(url_for("my_visits.visits"), 303)


@bp.route("/visits")
def visits() -> ResponseReturnValue:
    phone, patient_id = _verified_phone(), session.get("mv_patient")
    if phone is None or not patient_id:
        return redirect(url_for("my_visits.start"), 303)
    rows = [
        {
            "when": when(a.start_at, ZoneInfo(a.location.timezone)),
            "service": a.service.name,
            "location": a.location.name,
            "url": url_for("manage.show", token=a.manage_token),
        }
        for a in visit_codes.upcoming(db.session(), int(patient_id), now())
    ]
    return _page("my_visits_list.html", rows=rows)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
