"""Staff sign-in and sign-out (Flask-Login, Argon2), with a lockout after repeated failures."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import UserMixin, current_user, login_required, login_user, logout_user

from scheduler.extensions import db, limiter, login_manager
from scheduler.models import StaffUser
from scheduler.services import staff as staff_service
from scheduler.web.common import now

bp = Blueprint("auth", __name__, url_prefix="/staff")

_LOCAL_STAFF_PATH = re.compile(r"/staff(?:[/?#][\x21-\x5b\x5d-\x7e]*)?")
LOCKOUT_ATTEMPTS = 5
LOCKOUT_MINUTES = 15


class SignedIn(UserMixin):  # type: ignore[misc]
    """Flask-Login's view of a staff user.

    The session id carries a fingerprint of the password hash and of the session epoch:
    changing the password ends every other session of that user, and deactivation (which raises
    the epoch) ends them all for good, even if the account is activated again.
    """

    def __init__(self, staff: StaffUser) -> None:
        self.staff = staff

    def get_id(self) -> str:
        return f"{self.staff.id}:{_fingerprint(self.staff)}"

    @property
    def is_active(self) -> bool:
        return bool(self.staff.active)


def _fingerprint(staff: StaffUser) -> str:
    raw = f"{staff.id}|{staff.session_epoch}|{staff.password_hash}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def hasher() -> PasswordHasher:
    cached = current_app.extensions.get("chairside_hasher")
    if cached is None:
        cached = staff_service.password_hasher(current_app.config.get("ARGON2_PARAMS"))
        current_app.extensions["chairside_hasher"] = cached
    return cached


def _dummy_hash() -> str:
    """A hash to verify against when the e-mail is unknown, so timing does not tell."""
    cached = current_app.extensions.get("chairside_dummy_hash")
    if cached is None:
        cached = hasher().hash("not-a-real-password-for-timing")
        current_app.extensions["chairside_dummy_hash"] = cached
    return str(cached)


def current_staff() -> StaffUser:
    """The signed-in staff user (views behind login_required only)."""
    user = current_user._get_current_object()
    if not isinstance(user, SignedIn):
        abort(401)
    return user.staff


def staff_login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    wrapped: Callable[..., Any] = login_required(view)
    return wraps(view)(wrapped)


@login_manager.user_loader  # type: ignore[untyped-decorator]
def _load_user(user_id: str) -> SignedIn | None:
    raw_id, _, fingerprint = user_id.partition(":")
    if not raw_id.isdigit():
        return None
    staff = db.session.get(StaffUser, int(raw_id))
    if staff is None or not staff.active or fingerprint != _fingerprint(staff):
        return None
    return SignedIn(staff)


def _safe_next(target: str | None) -> str:
    """Only same-site paths under /staff (no host, backslash, space or control character, which
    could end the header or be read as another host); anything else goes to the staff home."""
    if target and _LOCAL_STAFF_PATH.fullmatch(target):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("staff.home")


def _lockout_settings() -> tuple[int, dt.timedelta]:
    attempts = int(current_app.config.get("STAFF_LOCKOUT_ATTEMPTS", LOCKOUT_ATTEMPTS))
    minutes = int(current_app.config.get("STAFF_LOCKOUT_MINUTES", LOCKOUT_MINUTES))
    return attempts, dt.timedelta(minutes=minutes)


@bp.route("/sign-in", methods=["GET", "POST"])
@limiter.limit("30 per minute", methods=["POST"])
def sign_in() -> ResponseReturnValue:
    if request.method == "GET":
        if isinstance(current_user._get_current_object(), SignedIn):
            return redirect(_safe_next(request.args.get("next")))
        return render_template("staff/sign_in.html", error=None, email="")
    email_raw = request.form.get("email", "")[:320]
    password = request.form.get("password", "")[:1000]
    at = now()
    # Failures are counted per typed address, known or not, and every refusal costs one hash:
    # neither the answers nor their timing tell which addresses belong to staff.
    paused_until = staff_service.locked_until(db.session(), email_raw, now=at)
    if paused_until is not None:
        current_app.logger.warning("staff sign-in refused: too many failures for that address")
        wait = max(1, int((paused_until - at).total_seconds()))
        return (
            render_template(
                "staff/sign_in.html",
                error="Too many failed attempts. Sign-in for this account is paused; try again later.",
                email=email_raw,
            ),
            429,
            {"Retry-After": str(wait)},
        )
    staff = staff_service.find_by_email(db.session(), email_raw)
    ok = False
    if staff is not None and staff.active and password:
        ok = staff_service.verify_password(hasher(), staff, password)
    else:
        staff_service.verify_password(
            hasher(), StaffUser(password_hash=_dummy_hash()), password or "-"
        )
    if not ok:
        attempts, pause = _lockout_settings()
        if staff_service.record_failure(
            db.session(), email_raw, now=at, attempts=attempts, pause=pause
        ):
            current_app.logger.warning("staff sign-in paused for an address after failures")
        db.session.commit()
        if staff is not None:
            current_app.logger.info("staff sign-in failed for account %s", staff.id)
        else:
            current_app.logger.info("staff sign-in failed for an unknown account")
        return _sign_in_error("The e-mail or password is not right.", email_raw, 401)
    assert staff is not None
    staff_service.clear_failures(db.session(), email_raw)
    db.session.commit()
    target = _safe_next(request.args.get("next"))
    session.clear()  # no session fixation: a fresh session for the signed-in user
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    login_user(SignedIn(staff))
    current_app.logger.info("staff account %s signed in", staff.id)
    return redirect(target)


def _sign_in_error(message: str, email: str, status: int) -> ResponseReturnValue:
    return render_template("staff/sign_in.html", error=message, email=email), status


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> ResponseReturnValue:
    logout_user()
    session.clear()
    return redirect(url_for("auth.sign_in"))


def _fresh_user() -> None:
    # Load the user (and the CSRF token) anew for every request, even when an outer app context
    # (tests, CLI) keeps `g` alive across requests: a deactivated account must not linger, and a
    # token cached before sign-in cleared the session would no longer match it.
    g.pop("_login_user", None)
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def init_app(app: Flask) -> None:
    app.before_request(_fresh_user)
    login_manager.login_view = "auth.sign_in"
    login_manager.login_message = "Please sign in to continue."
    login_manager.session_protection = "basic"
    app.register_blueprint(bp)
