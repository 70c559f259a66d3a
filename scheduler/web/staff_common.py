"""What every staff page shares: access checks, form parsing, the audit entry, the sign-in guard,
and the error pages and cache rule each staff blueprint installs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from scheduler.extensions import db
from scheduler.models import Closure, Location, Resource, ResourceBlock, StaffRole, StaffUser
from scheduler.services import audit
from scheduler.services.clock import in_supported_range
from scheduler.services.errors import DomainError
from scheduler.web.auth import current_staff, staff_login_required
from scheduler.web.common import now
from scheduler.web.inputs import DATE_RANGE_MESSAGE, refused_characters, without_controls

STATUS_LABELS = {
    "booked": "Booked",
    "checked_in": "Checked in",
    "completed": "Completed",
    "no_show": "No-show",
    "cancelled": "Cancelled",
}
ROLE_LABELS = {
    "admin": "Admin",
    "manager": "Manager",
    "front_desk": "Front desk",
    "nurse": "Nurse",
    "prescriber": "Prescriber",
}


class PageError(Exception):
    """A form error to show on the page it came from, with its HTTP status."""

    def __init__(self, message: str, fields: Mapping[str, str] | None = None, status: int = 422):
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})
        self.status = status


# --- access ---------------------------------------------------------------------------------------


def forbidden() -> NoReturn:
    abort(403)


def page_location(slug: str) -> Location:
    """The location, if this user may see it; unknown and forbidden look alike (403)."""
    staff = current_staff()
    location = db.session.scalars(select(Location).where(Location.slug == slug)).first()
    if location is None or not staff.can_access(location.id):
        forbidden()
    return location


Owned = TypeVar("Owned", Closure, Resource, ResourceBlock)


def owned(model: type[Owned], row_id: int, location: Location) -> Owned:
    """The `model` row `row_id` if it belongs to `location`, else 404: the rows of another
    location do not exist under this one's URLs."""
    row = db.session.get(model, row_id)
    if row is None:
        abort(404)
    owner = row.resource.location_id if isinstance(row, ResourceBlock) else row.location_id
    if owner != location.id:
        abort(404)
    return row


def visible_locations(staff: StaffUser) -> list[Location]:
    query = select(Location).order_by(Location.name)
    rows = list(db.session.scalars(query))
    return [x for x in rows if staff.can_access(x.id)]


def can_edit_settings(staff: StaffUser, location: Location) -> bool:
    if staff.role == StaffRole.ADMIN:
        return staff.active
    return staff.role == StaffRole.MANAGER and staff.can_access(location.id)


# --- the audit entry ------------------------------------------------------------------------------


def staff_audit(
    action: str,
    target: str,
    *,
    actor: StaffUser | None = None,
    location_id: int | None = None,
    appointment_id: int | None = None,
    patient_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """The audit entry for a staff write through the pages: by the signed-in staff member (or
    `actor`), now; the caller commits."""
    audit.record(
        db.session(),
        actor=actor if actor is not None else current_staff(),
        action=action,
        at=now(),
        location_id=location_id,
        appointment_id=appointment_id,
        patient_id=patient_id,
        target=target,
        details=details,
    )


# --- parsing --------------------------------------------------------------------------------------


def parse_date(value: str | None, field: str = "date") -> dt.date | None:
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise PageError("Enter the date as YYYY-MM-DD.", {field: "not a date"}, 400) from exc
    if not in_supported_range(day):  # day and week bounds of a far-off year would overflow
        raise PageError("That date is out of range.", {field: DATE_RANGE_MESSAGE}, 400)
    return day


def form_value(name: str, limit: int = 500) -> str:
    """A posted field, trimmed; without control characters, so that a form shown again after
    `refused_characters` keeps what was typed (nothing read this way is stored then)."""
    return without_controls(request.form.get(name, "")).strip()[:limit]


_NEVER_SHOWN_AGAIN = ("csrf_token", "password")


def posted_values(limit: int = 2000) -> dict[str, str]:
    """Every posted field (never the CSRF token nor a password) as `form_value` reads it: what
    a refused form shows again in its boxes (a checkbox is posted only when ticked)."""
    return {k: form_value(k, limit) for k in request.form if k not in _NEVER_SHOWN_AGAIN}


@dataclass(frozen=True)
class Refusal:
    """A refused form on a page that holds several: which form it was (`form`, its HTML id),
    why (`error`) and what it held (`typed`, from `posted_values`). That form shows what was
    typed and its fields' errors; the page's other forms show what is stored. The empty
    Refusal (a page shown without a refusal) shows what is stored everywhere."""

    form: str = ""
    error: DomainError | PageError | None = None
    typed: Mapping[str, str] = field(default_factory=dict)

    def value(self, form: str, name: str, stored: object) -> object:
        return self.typed.get(name, "") if form == self.form else stored

    def checked(self, form: str, name: str, stored: bool) -> bool:
        return bool(self.typed.get(name)) if form == self.form else stored

    def error_of(self, form: str) -> DomainError | PageError | None:
        return self.error if form == self.form else None


def refusal(form: str, error: DomainError | PageError) -> Refusal:
    """The refusal of the posted form `form`, keeping what was typed."""
    return Refusal(form, error, posted_values())


def refuse_characters() -> None:
    """`refused_characters` raised: first in a view's `try`, whose DomainError branch already
    shows the form again."""
    if (error := refused_characters()) is not None:
        raise error


# --- the guard and the error pages ----------------------------------------------------------------


def login(view: Callable[..., Any]) -> Callable[..., Any]:
    return staff_login_required(view)


def install_pages(bp: Blueprint) -> None:
    """The cache rule and error pages of every staff blueprint."""

    @bp.after_request
    def _no_store(response: Response) -> Response:
        # Patient names and phone numbers: never in a shared or back-button cache.
        if not request.path.endswith("/grid.css"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @bp.errorhandler(403)
    def _forbidden_page(exc: HTTPException) -> ResponseReturnValue:
        message = "You do not have access to this page."
        return render_template("staff/error.html", message=message), 403

    @bp.errorhandler(404)
    def _not_found_page(exc: HTTPException) -> ResponseReturnValue:
        return render_template("staff/error.html", message="There is nothing here."), 404

    @bp.errorhandler(413)
    def _too_large_page(exc: HTTPException) -> ResponseReturnValue:
        message = "That form was too large to read."
        return render_template("staff/error.html", message=message), 413

    @bp.errorhandler(PageError)
    def _page_error(exc: PageError) -> ResponseReturnValue:
        db.session.rollback()
        page = render_template("staff/error.html", message=exc.message, fields=exc.fields)
        return page, exc.status

    @bp.errorhandler(DomainError)
    def _domain_error(exc: DomainError) -> ResponseReturnValue:
        db.session.rollback()
        page = render_template("staff/error.html", message=exc.message, fields=exc.fields)
        return page, exc.http_status
