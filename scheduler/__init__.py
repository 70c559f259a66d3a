"""Chairside: appointment scheduling for multi-location infusion clinics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from flask import Flask, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.middleware.proxy_fix import ProxyFix

from scheduler import logs, paths
from scheduler.db import is_deadlock, normalize_url  # importing it registers the SQLite rules
from scheduler.extensions import csrf, db, limiter, login_manager, migrate


def create_app(config: object | None = None) -> Flask:
    """The app factory: `config` is a config object; without one, Config() reads the environment."""
    from scheduler.config import INSTANCE, Config

    app = Flask(
        __name__,
        template_folder=str(paths.TEMPLATES),
        static_folder=str(paths.STATIC),
        static_url_path="/static",
        instance_path=str(INSTANCE),
    )
    logs.install()
    app.config.from_object(config if config is not None else Config())
    app.config["SQLALCHEMY_DATABASE_URI"] = normalize_url(app.config["SQLALCHEMY_DATABASE_URI"])

    db.init_app(app)
    migrate.init_app(app, db, directory=str(paths.MIGRATIONS))
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)
    hops = int(app.config.get("TRUSTED_PROXY_HOPS", 0))
    if hops:
        # Behind that many proxies, the client's address (rate limits) is the one they forwarded.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]

    _register_blueprints(app)
    _register_errors(app)

    from scheduler import cli

    cli.register(app)

    from scheduler import jobs

    jobs.init_app(app)
    return app


def _register_blueprints(app: Flask) -> None:
    """One module per audience under scheduler.web, each attaching itself with init_app."""
    from scheduler.web import (
        api,
        auth,
        feeds,
        inputs,
        mail,
        patient,
        patient_visits,
        patient_waitlist,
        reports,
        security,
        staff,
        staff_clinicians,
        staff_courses,
        staff_patients,
        staff_rota,
        staff_settings,
        staff_waitlist,
        webhooks,
    )

    inputs.init_app(app)  # first: its id converter applies to the rules registered below
    app.register_blueprint(api.bp)
    for module in (
        security,
        patient,
        auth,
        staff,
        staff_settings,
        staff_courses,
        staff_rota,
        staff_clinicians,
        staff_patients,
        patient_visits,
        patient_waitlist,
        staff_waitlist,
        reports,
        webhooks,
        feeds,
        mail,
    ):
        module.init_app(app)


def _register_errors(app: Flask) -> None:
    from scheduler.web import outage
    from scheduler.web.common import json_error

    def _path_exists(methods: Iterable[str]) -> bool:
        """Whether this request's path matches a rule for any of `methods`."""
        adapter = app.url_map.bind_to_environ(request.environ)
        for method in methods:
            try:
                adapter.match(method=method)
            except HTTPException:
                continue
            return True
        return False

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        if isinstance(exc, MethodNotAllowed) and not _path_exists(exc.valid_methods or ()):
            # Werkzeug answers 405 when another method's rule matched the path's shape even
            # though its converter refused the value (an id out of range): that is a 404.
            exc = NotFound()
        if request.path.startswith("/api/"):
            code = (exc.name or "error").lower().replace(" ", "_")
            return json_error(exc.code or 500, code, exc.description or exc.name or "Error")
        return exc

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        if isinstance(exc, OperationalError) and is_deadlock(exc):
            # PostgreSQL aborted this transaction to break a lock cycle with a concurrent one:
            # nothing was written, and the same request may simply be sent again.
            db.session.rollback()
            message = "Another change got there at the same moment. Please try again."
            if request.path.startswith("/api/"):
                return json_error(409, "conflict", message)
            return message, 409
        if outage.is_database_unavailable(exc):
            # The connection is gone; the session is discarded at the end of the request anyway.
            with contextlib.suppress(Exception):
                db.session.rollback()
            return outage.unavailable(exc)
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        if request.path.startswith("/api/"):
            return json_error(500, "internal", "Something went wrong on our side.")
        return "Something went wrong on our side.", 500
