"""Security headers for every response, and the rate limits the patient pages apply.

Every response gets a Content-Security-Policy without inline script, `nosniff`, a frame ban and a
same-origin referrer policy. URLs that carry a secret token (`/a/...`, the API's
`/api/v1/manage/...`, calendar `/feeds/...`) get `Referrer-Policy: no-referrer` and `Cache-Control: no-store` so the
token never leaves in a Referer header nor sits in a shared cache. A view that needs a different
policy sets the header itself: headers already on the response are left alone.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

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

TOKEN_PATH_PREFIXES = ("/a/", "/api/v1/manage/", "/feeds/")

# Defaults for the limits (per client address); each can be overridden in the app's config.
DEFAULT_LIMITS = {
    # Every request to a page whose URL carries a manage token (GET and POST).
    "PATIENT_TOKEN_RATELIMIT": "30 per minute;300 per hour",
    # Submitting a booking (POST of the details form).
    "PATIENT_BOOKING_RATELIMIT": "10 per minute;50 per hour",
    # Browsing the booking steps (locations, services, days, times).
    "PATIENT_BROWSE_RATELIMIT": "120 per minute",
}


def token_page_limit() -> str:
    return str(current_app.config["PATIENT_TOKEN_RATELIMIT"])


def booking_limit() -> str:
    return str(current_app.config["PATIENT_BOOKING_RATELIMIT"])


def browse_limit() -> str:
    return str(current_app.config["PATIENT_BROWSE_RATELIMIT"])


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
