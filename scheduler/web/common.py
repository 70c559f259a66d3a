"""Small helpers every blueprint shares: the clock, clinic settings, JSON errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue

from scheduler.services.settings import ClinicSettings


def now() -> dt.datetime:
    """The app's clock (tests inject a fixed one through config CLOCK)."""
    clock = current_app.config.get("CLOCK")
    return clock() if clock else dt.datetime.now(dt.UTC)


def settings() -> ClinicSettings:
    cached = current_app.extensions.get("chairside_settings")
    if cached is None:
        cached = ClinicSettings.from_config(current_app.config)
        current_app.extensions["chairside_settings"] = cached
    return cached


def json_error(
    status: int,
    code: str,
    message: str,
    fields: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> ResponseReturnValue:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    if extra:
        body.update(extra)
    return jsonify({"error": body}), status
