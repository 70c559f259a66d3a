"""Security headers for every response, and the rate limits of the patient pages and the API.

Every response gets a Content-Security-Policy without inline script, `nosniff`, a frame ban and a
same-origin referrer policy. URLs that carry a secret token (`/a/...`, the API's
`/api/v1/manage/...`, calendar `/feeds/...`, the waitlist's `/waitlist/...`) get `Referrer-Policy: no-referrer` and `Cache-Control: no-store` so the
token never leaves in a Referer header nor sits in a shared cache. A view that needs a different
policy sets the header itself: headers already on the response are left alone.

Rate limits count in Flask-Limiter's storage (`RATELIMIT_STORAGE_URI`): in memory by default,
which counts per process, and Redis (`redis://...`) wherever several web processes run, so that
every process counts against the same limit. A refused request is a `429` with `Retry-After`.
"""

from __future__ import annotations

import hashlib
import time

from flask import Blueprint, Flask, Response, current_app, request
from flask_limiter.util import get_remote_address

from scheduler.extensions import limiter

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

TOKEN_PATH_PREFIXES = ("/a/", "/api/v1/manage/", "/feeds/", "/waitlist/", "/api/v1/waitlist/")

# Defaults for the limits (per client address); each can be overridden in the app's config.
DEFAULT_LIMITS = {
    # Every request to a page whose URL carries a manage token (GET and POST).
    "PATIENT_TOKEN_RATELIMIT": "30 per minute;300 per hour",
    # Submitting a booking (POST of the details form).
    "PATIENT_BOOKING_RATELIMIT": "10 per minute;50 per hour",
    # Browsing the booking steps (locations, services, days, times).
    "PATIENT_BROWSE_RATELIMIT": "120 per minute",
    # JSON API, per client address: anything but a read on a public endpoint (booking, cancel,
    # reschedule), all such endpoints counted together.
    "API_BOOKING_RATELIMIT": "10 per minute;50 per hour",
    # JSON API, per client address: reads (GET) on public endpoints.
    "API_READ_RATELIMIT": "120 per minute",
    # JSON API, per staff token (per address without one): every staff endpoint. Refused tokens
    # (401) also count per address against API_READ_RATELIMIT.
    "API_STAFF_RATELIMIT": "600 per minute",
}


def token_page_limit() -> str:
    return str(current_app.config["PATIENT_TOKEN_RATELIMIT"])


def booking_limit() -> str:
    return str(current_app.config["PATIENT_BOOKING_RATELIMIT"])


def browse_limit() -> str:
    return str(current_app.config["PATIENT_BROWSE_RATELIMIT"])


# --- the JSON API -------------------------------------------------------------------------------

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def mark_staff_only(view: object) -> None:
    """Flag an API view as staff-only: it counts against the per-token limit."""
    view.staff_api = True  # type: ignore[attr-defined]


def _is_staff_endpoint() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "staff_api", False))


def _staff_key() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return "address:" + get_remote_address()
    # The store never sees the token itself.
    return "token:" + hashlib.sha256(token.encode()).hexdigest()


API_LIMIT_MESSAGE = "Too many requests. Try again after the number of seconds in Retry-After."


def limit_api(blueprint: Blueprint) -> None:
    """Apply the API's three limits to a blueprint of /api/v1 (call once, at import)."""
    limiter.shared_limit(
        lambda: str(current_app.config["API_BOOKING_RATELIMIT"]),
        scope="api-booking",
        error_message=API_LIMIT_MESSAGE,
        key_func=get_remote_address,
        exempt_when=lambda: _is_staff_endpoint() or request.method in READ_METHODS,
    )(blueprint)
    limiter.shared_limit(
        lambda: str(current_app.config["API_READ_RATELIMIT"]),
        scope="api-read",
        error_message=API_LIMIT_MESSAGE,
        key_func=get_remote_address,
        exempt_when=lambda: _is_staff_endpoint() or request.method not in READ_METHODS,
    )(blueprint)
    limiter.shared_limit(
        lambda: str(current_app.config["API_STAFF_RATELIMIT"]),
        scope="api-staff",
        error_message=API_LIMIT_MESSAGE,
        key_func=_staff_key,
        exempt_when=lambda: not _is_staff_endpoint(),
    )(blueprint)
    # Made-up tokens each get a budget of their own above, so refusals (401) also count per
    # address, against the read limit: guessing tokens stops there.
    limiter.shared_limit(
        lambda: str(current_app.config["API_READ_RATELIMIT"]),
        scope="api-staff-refused",
        error_message=API_LIMIT_MESSAGE,
        key_func=get_remote_address,
        exempt_when=lambda: not _is_staff_endpoint(),
        deduct_when=lambda response: response.status_code == 401,
    )(blueprint)


def _retry_after(response: Response) -> Response:
    """Every 429 says when to come back, whichever handler rendered it."""
    if response.status_code == 429 and "Retry-After" not in response.headers:
        current = limiter.current_limit
        wait = int(current.reset_at - time.time()) if current is not None else 60
        response.headers["Retry-After"] = str(max(1, wait))
    return response


def is_token_path(path: str) -> bool:
    return path.startswith(TOKEN_PATH_PREFIXES)


def _headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    if is_token_path(request.path):
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cache-Control", "no-store")
    else:
        headers.setdefault("Referrer-Policy", "same-origin")
    return response


def init_app(app: Flask) -> None:
    for key, value in DEFAULT_LIMITS.items():
        app.config.setdefault(key, value)
    app.after_request(_headers)
    app.after_request(_retry_after)
