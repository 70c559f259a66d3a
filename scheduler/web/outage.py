"""A database that cannot be reached: `503` with `Retry-After`, and a log that stays readable.

While the database is down every request fails the same way; a traceback for each would bury
the log (over a thousand in a few seconds). Instead each kind of failure is logged once, then at
most once per `DB_OUTAGE_LOG_SECONDS` with the count of requests refused meanwhile. Nothing needs
restarting afterwards: the pool checks each connection before use (`pool_pre_ping`) and opens new
ones once the server answers again.
"""

from __future__ import annotations

import threading
import time

from flask import current_app, make_response, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from scheduler.web.common import json_error

MESSAGE = "The service is briefly unavailable. Please try again in a few seconds."


def is_database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (not a bad statement)."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _kind(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    inner = f" ({type(orig).__module__}.{type(orig).__name__})" if orig is not None else ""
    return f"{type(exc).__name__}{inner}"


class OutageLog:
    """Per process: one line per failure kind, then one per interval with a count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def record(self, kind: str, interval: float) -> tuple[bool, int]:
        """(log now?, requests refused since the last line of this kind)."""
        at = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and at - last < interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return False, 0
            self._last[kind] = at
            return True, self._suppressed.pop(kind, 0)


def unavailable(exc: BaseException) -> ResponseReturnValue:
    """Answer a request that failed because the database is unreachable."""
    app = current_app
    log = app.extensions.setdefault("chairside_outage_log", OutageLog())
    kind = _kind(exc)
    log_now, since = log.record(kind, float(app.config.get("DB_OUTAGE_LOG_SECONDS", 60)))
    if log_now:
        # No traceback and no exception text: the kind says what happened, and the text of a
        # driver error can carry a statement's values.
        app.logger.error(
            "database unavailable: %s; answering 503%s",
            kind,
            f" ({since} more refused since the last line)" if since else "",
        )
    retry = str(int(app.config.get("DB_UNAVAILABLE_RETRY_AFTER", 5)))
    headers = {"Retry-After": retry, "Cache-Control": "no-store"}
    if request.path.startswith("/api/"):
        response = make_response(json_error(503, "unavailable", MESSAGE))
    else:
        response = make_response(render_template("unavailable.html", message=MESSAGE), 503)
    response.headers.update(headers)
    return response
