"""The staff portal's account and settings pages: own API tokens; locations (hours, closures,
chairs and rooms), services and staff accounts, for admins and (their own locations) managers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from scheduler.extensions import db
from scheduler.models import (
    ApiToken,
    Closure,
    Location,
    Resource,
    Service,
    StaffRole,
    StaffUser,
)
from scheduler.services import calendar_view, settings_admin
from scheduler.services import staff as staff_service
from scheduler.services.errors import DomainError, InvalidInput
from scheduler.web.auth import current_staff, hasher
from scheduler.web.common import now
from scheduler.web.inputs import marks_form_problems, query_ids, refused_characters
from scheduler.web.staff_common import (
    ROLE_LABELS,
    PageError,
    Refusal,
    can_edit_settings,
    forbidden,
    form_value,
    install_pages,
    login,
    owned,
    page_location,
    parse_date,
    refusal,
    refuse_characters,
    staff_audit,
    visible_locations,
)

bp = Blueprint("staff_settings", __name__, url_prefix="/staff")
install_pages(bp)


def _settings_location(slug: str) -> Location:
    location = page_location(slug)
    if not can_edit_settings(current_staff(), location):
        forbidden()
    return location


def _require_admin() -> StaffUser:
    staff = current_staff()
    if staff.role != StaffRole.ADMIN:
        forbidden()
    return staff


def require_settings_role() -> StaffUser:
    staff = current_staff()
    if staff.role not in (StaffRole.ADMIN, StaffRole.MANAGER):
        forbidden()
    return staff


# --- account: own API tokens ----------------------------------------------------------------------


def _render_tokens(
    owner: StaffUser,
    new_token: str | None = None,
    status: int = 200,
    error: DomainError | None = None,
) -> ResponseReturnValue:
    tokens = sorted(owner.tokens, key=lambda t: t.created_at, reverse=True)
    return (
        render_template(
            "staff/account.html",
            owner=owner,
            tokens=tokens,
            new_token=new_token,
            me=current_staff(),
            tz=dt.UTC,
            token_error=error,
            token_label=form_value("label", 100) if error else "",
        ),
        status,
    )


def _token_owner(staff_id: int | None) -> StaffUser:
    me = current_staff()
    if staff_id is None or staff_id == me.id:
        return me
    _require_admin()
    owner = db.session.get(StaffUser, staff_id)
    if owner is None:
        abort(404)
    return owner


@bp.route("/account")
@login
def account() -> ResponseReturnValue:
    return _render_tokens(current_staff())


@bp.route("/account/tokens", methods=["POST"])
@bp.route("/settings/staff/<int:staff_id>/tokens", methods=["POST"])
@marks_form_problems
@login
def token_issue(staff_id: int | None = None) -> ResponseReturnValue:
    owner = _token_owner(staff_id)
    if (refused := refused_characters()) is not None:
        return _render_tokens(owner, status=refused.http_status, error=refused)
    label = form_value("label", 100)
    plain = staff_service.issue_token(db.session(), owner, now(), label=label)
    staff_audit("token.issued", f"staff {owner.id} ({owner.name})", details={"label": label})
    db.session.commit()
    # Shown once, in this response only; only its hash is kept.
    return _render_tokens(owner, new_token=plain, status=201)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@marks_form_problems
@login
def token_revoke(token_id: int) -> ResponseReturnValue:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        abort(404)
    owner = _token_owner(token.staff_id)
    if (refused := refused_characters()) is not None:
        return _render_tokens(owner, status=refused.http_status, error=refused)
    if token.revoked_at is None:
        token.revoked_at = now()
        staff_audit(
            "token.revoked", f"staff {owner.id} ({owner.name})", details={"label": token.label}
        )
        db.session.commit()
    flash("The token is revoked.")
    if owner.id == current_staff().id:
        return redirect(url_for("staff_settings.account"), 303)
    return redirect(url_for("staff_settings.settings_staff_edit", staff_id=owner.id), 303)


# --- settings -------------------------------------------------------------------------------------


@bp.route("/settings")
@login
def settings_home() -> ResponseReturnValue:
    staff = require_settings_role()
    locations = [x for x in visible_locations(staff) if can_edit_settings(staff, x)]
    services = list(db.session.scalars(select(Service).order_by(Service.name)))
    editable = [s for s in services if settings_admin.can_edit_service(staff, s)]
    users = (
        list(db.session.scalars(select(StaffUser).order_by(StaffUser.name)))
        if staff.role == StaffRole.ADMIN
        else []
    )
    return render_template(
        "staff/settings.html",
        staff=staff,
        locations=locations,
        services=editable,
        users=users,
    )


def _render_location_settings(
    location: Location, refused: Refusal | None = None, status: int = 200
) -> ResponseReturnValue:
    """The location's settings page; after a refusal (`refused`), the form it came from shows
    again with what was typed and the fields named, the others what is stored."""
    refused = refused or Refusal()
    return (
        render_template(
            "staff/settings_location.html",
            location=location,
            hours=settings_admin.hours_text(location),
            closures=sorted(location.closures, key=lambda c: c.first_day),
            resources=calendar_view.location_resources(db.session(), location),
            error=refused.error,
            refusal=refused,
            is_admin=current_staff().role == StaffRole.ADMIN,
        ),
        status,
    )


def _settings_post(
    location: Location,
    form: str,
    action: str,
    target: str,
    change: Callable[[], Mapping[str, Any]],
) -> ResponseReturnValue:
    """Run a change posted by the settings page's form `form` (its HTML id); a refusal shows
    the page again with that form as typed."""
    try:
        refuse_characters()
        details = change()
    except DomainError as exc:
        db.session.rollback()
        db.session.refresh(location)
        return _render_location_settings(location, refusal(form, exc), exc.http_status)
    staff_audit(action, target, location_id=location.id, details=details)
    db.session.commit()
    flash("Saved.")
    return redirect(url_for("staff_settings.settings_location", slug=location.slug), 303)


@bp.route("/settings/locations/new", methods=["GET", "POST"])
@marks_form_problems
@login
def settings_location_new() -> ResponseReturnValue:
    _require_admin()
    if request.method == "GET":
        return render_template("staff/settings_location_new.html", values={}, error=None)
    values = {k: form_value(k) for k in ("slug", "name", "timezone", "address", "phone")}
    try:
        refuse_characters()
        location = settings_admin.create_location(db.session(), **values)
    except DomainError as exc:
        db.session.rollback()
        return render_template(
            "staff/settings_location_new.html", values=values, error=exc
        ), exc.http_status
    staff_audit(
        "location.created", f"location {location.slug}", location_id=location.id, details=values
    )
    db.session.commit()
    return redirect(url_for("staff_settings.settings_location", slug=location.slug), 303)


@bp.route("/settings/locations/<slug>", methods=["GET", "POST"])
@marks_form_problems
@login
def settings_location(slug: str) -> ResponseReturnValue:
    location = _settings_location(slug)
    if request.method == "GET":
        return _render_location_settings(location)
    values = {k: form_value(k) for k in ("name", "timezone", "address", "phone")}
    active = None
    if current_staff().role == StaffRole.ADMIN:
        active = request.form.get("active") == "on"
    return _settings_post(
        location,
        "location-details",
        "location.updated",
        f"location {location.slug}",
        lambda: settings_admin.update_location(db.session(), location, active=active, **values),
    )


@bp.route("/settings/locations/<slug>/hours", methods=["POST"])
@marks_form_problems
@login
def settings_hours(slug: str) -> ResponseReturnValue:
    location = _settings_location(slug)
    texts = {day: form_value(f"day{day}", 200) for day in range(7)}
    return _settings_post(
        location,
        "hours",
        "location.hours",
        f"location {location.slug}",
        lambda: settings_admin.set_hours(db.session(), location, texts),
    )


@bp.route("/settings/locations/<slug>/closures", methods=["POST"])
@marks_form_problems
@login
def settings_closure_add(slug: str) -> ResponseReturnValue:
    location = _settings_location(slug)

    def change() -> Mapping[str, Any]:
        try:
            first = parse_date(form_value("first_day"), "first_day")
            last = parse_date(form_value("last_day"), "last_day") or first
        except PageError as exc:
            raise InvalidInput(exc.message, exc.fields) from exc
        return settings_admin.add_closure(
            db.session(), location, first, last, form_value("reason", 200)
        )

    return _settings_post(
        location, "closure", "location.closure_added", f"location {location.slug}", change
    )


@bp.route("/settings/locations/<slug>/closures/<int:closure_id>/delete", methods=["POST"])
@marks_form_problems
@login
def settings_closure_delete(slug: str, closure_id: int) -> ResponseReturnValue:
    location = _settings_location(slug)
    closure = owned(Closure, closure_id, location)
    return _settings_post(
        location,
        f"closure{closure.id}",
        "location.closure_removed",
        f"location {location.slug}",
        lambda: settings_admin.delete_closure(db.session(), closure),
    )


@bp.route("/settings/locations/<slug>/resources", methods=["POST"])
@marks_form_problems
@login
def settings_resource_add(slug: str) -> ResponseReturnValue:
    location = _settings_location(slug)
    return _settings_post(
        location,
        "add-resource",
        "resource.created",
        f"location {location.slug}",
        lambda: settings_admin.add_resource(
            db.session(),
            location,
            kind=form_value("kind", 16),
            name=form_value("name", 100),
            position=form_value("position", 6),
        ),
    )


@bp.route("/settings/locations/<slug>/resources/<int:resource_id>", methods=["POST"])
@marks_form_problems
@login
def settings_resource_edit(slug: str, resource_id: int) -> ResponseReturnValue:
    location = _settings_location(slug)
    resource = owned(Resource, resource_id, location)
    return _settings_post(
        location,
        f"res{resource.id}",
        "resource.updated",
        f"{location.slug} resource {resource.id}",
        lambda: settings_admin.update_resource(
            db.session(),
            resource,
            name=form_value("name", 100),
            position=form_value("position", 6),
            active=request.form.get("active") == "on",
            now=now(),
        ),
    )


SERVICE_FIELDS = (
    "slug",
    "name",
    "kind",
    "resource_kind",
    "description",
    "what_to_bring",
    "duration_minutes",
    "prep_minutes",
    "recovery_minutes",
    "slot_step_minutes",
    "min_notice_minutes",
    "horizon_days",
    "late_cancel_hours",
    "public_title",
    "fasting_hours",
    "arrive_early_minutes",
)
SERVICE_FLAGS = ("escort_required", "no_driving")


def _render_service(
    service: Service | None, values: Mapping[str, Any], error: DomainError | None, status: int
) -> ResponseReturnValue:
    staff = current_staff()
    locations = [x for x in visible_locations(staff) if can_edit_settings(staff, x)]
    return (
        render_template(
            "staff/settings_service.html",
            service=service,
            values=values,
            locations=locations,
            error=error,
        ),
        status,
    )


def _service_values(service: Service) -> dict[str, Any]:
    values: dict[str, Any] = {k: getattr(service, k) for k in SERVICE_FIELDS}
    values["active"] = service.active
    for flag in SERVICE_FLAGS:
        values[flag] = getattr(service, flag)
    values["locations"] = {x.id for x in service.locations}
    return values


def _posted_service() -> dict[str, Any]:
    values: dict[str, Any] = {k: form_value(k, 2000) for k in SERVICE_FIELDS}
    values["active"] = request.form.get("active") == "on"
    for flag in SERVICE_FLAGS:
        values[flag] = request.form.get(flag) == "on"
    values["locations"] = query_ids(request.form.getlist("locations"))
    return values


@bp.route("/settings/services/new", methods=["GET", "POST"])
@marks_form_problems
@login
def settings_service_new() -> ResponseReturnValue:
    staff = require_settings_role()
    if request.method == "GET":
        return _render_service(None, {"active": True, "locations": set()}, None, 200)
    values = _posted_service()
    try:
        refuse_characters()
        service = settings_admin.save_service(db.session(), staff, None, values)
    except DomainError as exc:
        db.session.rollback()
        return _render_service(None, values, exc, exc.http_status)
    staff_audit("service.created", f"service {service.slug}", details=_audit_values(values))
    db.session.commit()
    flash("Service created.")
    return redirect(url_for("staff_settings.settings_service", slug=service.slug), 303)


def _audit_values(values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    out["locations"] = sorted(values.get("locations", ()))
    out.pop("description", None)
    out.pop("what_to_bring", None)
    return out


@bp.route("/settings/services/<slug>", methods=["GET", "POST"])
@marks_form_problems
@login
def settings_service(slug: str) -> ResponseReturnValue:
    staff = require_settings_role()
    service = db.session.scalars(select(Service).where(Service.slug == slug)).first()
    if service is None or not settings_admin.can_edit_service(staff, service):
        forbidden()
    if request.method == "GET":
        return _render_service(service, _service_values(service), None, 200)
    values = _posted_service()
    try:
        refuse_characters()
        settings_admin.save_service(db.session(), staff, service, values)
    except DomainError as exc:
        db.session.rollback()
        return _render_service(service, values, exc, exc.http_status)
    staff_audit("service.updated", f"service {service.slug}", details=_audit_values(values))
    db.session.commit()
    flash("Saved.")
    return redirect(url_for("staff_settings.settings_service", slug=service.slug), 303)


def _render_staff_edit(
    user: StaffUser | None, values: Mapping[str, Any], error: DomainError | None, status: int
) -> ResponseReturnValue:
    return (
        render_template(
            "staff/settings_staff.html",
            user=user,
            values=values,
            locations=list(db.session.scalars(select(Location).order_by(Location.name))),
            error=error,
            roles=list(ROLE_LABELS.items()),
            tokens=sorted(user.tokens, key=lambda t: t.created_at, reverse=True) if user else [],
        ),
        status,
    )


def _posted_staff() -> dict[str, Any]:
    return {
        "email": form_value("email", 320),
        "name": form_value("name", 200),
        "role": form_value("role", 16),
        "active": request.form.get("active") == "on",
        "locations": query_ids(request.form.getlist("locations")),
        # Never echoed back into the page nor logged.
        "password": request.form.get("password", "")[:1000],
    }


@bp.route("/settings/staff/new", methods=["GET", "POST"])
@marks_form_problems
@login
def settings_staff_new() -> ResponseReturnValue:
    _require_admin()
    if request.method == "GET":
        return _render_staff_edit(
            None, {"active": True, "locations": set(), "role": "front_desk"}, None, 200
        )
    values = _posted_staff()
    try:
        refuse_characters()
        user = settings_admin.save_staff(db.session(), None, values, hasher(), now=now())
    except DomainError as exc:
        db.session.rollback()
        values.pop("password")
        return _render_staff_edit(None, values, exc, exc.http_status)
    staff_audit("staff.created", f"staff {user.id} ({user.name})", details=_staff_audit(values))
    db.session.commit()
    flash("Staff user created.")
    return redirect(url_for("staff_settings.settings_staff_edit", staff_id=user.id), 303)


def _staff_audit(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in values.items() if k != "password"}
    out["locations"] = sorted(values.get("locations", ()))
    if values.get("password"):
        out["password_changed"] = True
    return out


@bp.route("/settings/staff/<int:staff_id>", methods=["GET", "POST"])
@marks_form_problems
@login
def settings_staff_edit(staff_id: int) -> ResponseReturnValue:
    me = _require_admin()
    user = db.session.get(StaffUser, staff_id)
    if user is None:
        abort(404)
    if request.method == "GET":
        values = {
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "active": user.active,
            "locations": {x.id for x in user.locations},
        }
        return _render_staff_edit(user, values, None, 200)
    values = _posted_staff()
    try:
        refuse_characters()
        if user.id == me.id and (not values["active"] or values["role"] != StaffRole.ADMIN):
            raise InvalidInput(
                "You cannot remove your own admin access.", {"role": "would lock you out"}
            )
        settings_admin.save_staff(db.session(), user, values, hasher(), now=now())
    except DomainError as exc:
        db.session.rollback()
        values.pop("password")
        return _render_staff_edit(user, values, exc, exc.http_status)
    staff_audit("staff.updated", f"staff {user.id} ({user.name})", details=_staff_audit(values))
    db.session.commit()
    flash("Saved.")
    return redirect(url_for("staff_settings.settings_staff_edit", staff_id=user.id), 303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
