"""The clinicians page (managers and admins): list, add, edit, link to a staff user, deactivate.
Clinicians float between locations, so the page is not per location; a deactivation that booked
visits need is refused in place, listing those visits (only those at the user's locations by
name: the others are counted). Every rule is a call into services/staffing.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from scheduler.extensions import db
from scheduler.models import Clinician
from scheduler.services import rota_view, staffing
from scheduler.services.errors import DomainError, InvalidInput
from scheduler.web.auth import current_staff
from scheduler.web.common import now
from scheduler.web.inputs import marks_form_problems, query_id
from scheduler.web.staff_common import (
    form_value,
    install_pages,
    login,
    refuse_characters,
    staff_audit,
    visible_locations,
)
from scheduler.web.staff_rota import ROLE_NAMES
from scheduler.web.staff_settings import require_settings_role

bp = Blueprint("staff_clinicians", __name__, url_prefix="/staff/settings/clinicians")
install_pages(bp)


def _posted_staff_user() -> int | None:
    raw = form_value("staff_user", 20)
    if not raw:
        return None
    staff_user = query_id(raw)
    if staff_user is None:
        raise InvalidInput("Some fields need correcting.", {"staff_user": "unknown staff user"})
    return staff_user


def _render_list(
    error: DomainError | None = None, values: Mapping[str, str] | None = None, status: int = 200
) -> ResponseReturnValue:
    session = db.session()
    return (
        render_template(
            "staff/settings_clinicians.html",
            clinicians=staffing.list_clinicians(session),
            staff_users=staffing.linkable_staff(session),
            role_names=ROLE_NAMES,
            error=error,
            values=values or {},
        ),
        status,
    )


@bp.route("", methods=["GET", "POST"])
@marks_form_problems
@login
def clinicians() -> ResponseReturnValue:
    require_settings_role()
    if request.method == "GET":
        return _render_list()
    values = {k: form_value(k, 200) for k in ("name", "role", "title", "staff_user")}
    try:
        refuse_characters()
        clinician = staffing.create_clinician(
            db.session(),
            name=values["name"],
            role=values["role"],
            title=values["title"],
            staff_user_id=_posted_staff_user(),
        )
    except DomainError as exc:
        db.session.rollback()
        return _render_list(exc, values, exc.http_status)
    staff_audit(
        "clinician.created",
        f"clinician {clinician.id} ({clinician.name})",
        details={
            "name": clinician.name,
            "role": clinician.role,
            "staff_user": clinician.staff_user_id,
        },
    )
    db.session.commit()
    flash(f"{clinician.name} added.")
    return redirect(url_for("staff_clinicians.clinicians"), 303)


def _render_edit(
    clinician: Clinician,
    values: Mapping[str, Any],
    error: DomainError | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    session = db.session()
    ids = error.appointments if error is not None else None
    mine = [x.id for x in visible_locations(current_staff())]
    refused = rota_view.visits(session, ids, location_id=mine)
    return (
        render_template(
            "staff/settings_clinician.html",
            clinician=clinician,
            values=values,
            staff_users=staffing.linkable_staff(session),
            role_names=ROLE_NAMES,
            error=error,
            refused=refused,
            elsewhere=len(ids or ()) - len(refused),
        ),
        status,
    )


@bp.route("/<int:clinician_id>", methods=["GET", "POST"])
@marks_form_problems
@login
def clinician_edit(clinician_id: int) -> ResponseReturnValue:
    require_settings_role()
    clinician = db.session.get(Clinician, clinician_id)
    if clinician is None:
        abort(404)
    if request.method == "GET":
        values = {
            "name": clinician.name,
            "title": clinician.title,
            "staff_user": str(clinician.staff_user_id or ""),
            "active": clinician.active,
        }
        return _render_edit(clinician, values)
    name, title = form_value("name", 200), form_value("title", 200)
    active = request.form.get("active") == "on"
    values = {
        "name": name,
        "title": title,
        "active": active,
        "staff_user": form_value("staff_user"),
    }
    try:
        refuse_characters()
        change = staffing.ClinicianChange(
            name=name, title=title, active=active, link=True, staff_user_id=_posted_staff_user()
        )
        edit = staffing.update_clinician(db.session(), clinician, change, now=now())
    except DomainError as exc:
        db.session.rollback()
        db.session.refresh(clinician)
        return _render_edit(clinician, values, exc, exc.http_status)
    if edit.changed:
        staff_audit(
            "clinician.updated",
            f"clinician {clinician.id} ({clinician.name})",
            details=edit.changed,
        )
        staffing.record_handed_on(db.session(), edit, actor=current_staff(), at=now())
    db.session.commit()
    flash("Saved." if edit.changed else "Nothing changed.")
    return redirect(url_for("staff_clinicians.clinician_edit", clinician_id=clinician.id), 303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
