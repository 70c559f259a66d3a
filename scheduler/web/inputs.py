"""Hostile input, refused once for every endpoint before any view runs.

- Text: a NUL, another control character or a lone surrogate in a query argument, a form
  field, a JSON string (or key) or the Idempotency-Key header is refused with a 4xx naming the
  field; tabs and line breaks stay allowed in form fields and JSON text. A path with one names
  nothing that exists: 404, as for any unknown slug or token.
- JSON: a body that does not parse is `400 bad_request`, and so is one nested deeper than
  MAX_JSON_DEPTH (it never reaches a recursive parser, validator or hash).
- Ids: the `int` URL converter only matches ids the integer columns can hold, so a larger one
  is a 404 like any unknown id; `query_id` does the same for ids in query strings and forms.
- Dates: `day_in_range` is the one check of the supported range (services.clock).
- Size: the body limit itself is Flask's MAX_CONTENT_LENGTH (413 before anything is read).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Flask, abort, current_app, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.routing import IntegerConverter, Map

from scheduler.services.clock import RANGE_MESSAGE, in_supported_range
from scheduler.services.errors import InvalidInput
from scheduler.web.common import json_error

MAX_ID = 2**31 - 1  # the id columns are 32-bit integers on PostgreSQL
MAX_JSON_DEPTH = 32
# Control characters (C0 and DEL) and UTF-16 surrogates that no UTF-8 text may carry.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# The same, but tabs and line breaks are fine in free text (notes, reasons, addresses).
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_HEADERS = ("Idempotency-Key",)  # request headers whose value is stored
CONTROL_CHARACTER = "contains a control character"  # the detail naming such a field


class RejectedInput(HTTPException):
    """Input refused before any view: `fields` names what was wrong; `error_code` is the JSON
    API's error code. Pages show it through their usual error page (a BadRequest)."""

    def __init__(
        self,
        message: str,
        fields: dict[str, str] | None = None,
        *,
        status: int = 400,
        error_code: str = "invalid",
    ) -> None:
        super().__init__(message)
        self.code = status
        self.fields = dict(fields or {})
        self.error_code = error_code


class RejectedRequest(RejectedInput, BadRequest):
    """A 400: pages that already show an error page for a bad request show this one too."""


def reject(
    message: str, fields: dict[str, str], *, status: int = 400, error_code: str = "invalid"
) -> RejectedInput:
    if status == 400:
        return RejectedRequest(message, fields, status=400, error_code=error_code)
    return RejectedInput(message, fields, status=status, error_code=error_code)


# --- ids ------------------------------------------------------------------------------------------


class IdConverter(IntegerConverter):
    """`<int:x>` for row ids: 1 .. MAX_ID, so an id no column can hold is simply not found."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def query_id(raw: str | None) -> int | None:
    """An id from a query string or form field: ASCII digits within the column's range, or None."""
    value = (raw or "").strip()
    if not value or not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


def query_ids(raws: list[str]) -> set[int]:
    return {x for x in map(query_id, raws) if x is not None}


# --- dates ----------------------------------------------------------------------------------------

DATE_RANGE_MESSAGE = RANGE_MESSAGE


def day_in_range(day: dt.date, field: str) -> dt.date:
    """`day`, or a 400 naming `field` when it is outside the supported range."""
    if not in_supported_range(day):
        raise reject("That date is out of range.", {field: DATE_RANGE_MESSAGE})
    return day


# --- the guard ------------------------------------------------------------------------------------


class GuardedJSON(DefaultJSONProvider):
    """Flask's JSON, but a body nested too deep for the parser is malformed (400), not a 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("nested too deep") from exc


def _text_problem(value: str, pattern: re.Pattern[str] = _CONTROL_IN_TEXT) -> bool:
    return pattern.search(value) is not None


def _check_json(payload: Any) -> None:
    """Walk the parsed body without recursion: depth first, then every string and key."""
    bad: dict[str, str] = {}
    stack: list[tuple[Any, str, int]] = [(payload, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise reject(
                "The JSON body is nested too deeply.",
                {"body": f"nested deeper than {MAX_JSON_DEPTH}"},
                error_code="bad_request",
            )
        if isinstance(value, str):
            if _text_problem(value):
                bad.setdefault(path or "body", CONTROL_CHARACTER)
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if _text_problem(str(key)):
                    bad.setdefault(path or "body", "has a key with a control character")
                    continue
                stack.append((item, name, depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, f"{path}[{index}]" if path else f"[{index}]", depth + 1))
    if bad:
        raise reject("Some fields contain characters that are not allowed.", bad, status=422)


def _bad_fields(
    pairs: Iterable[tuple[str, str]], pattern: re.Pattern[str], where: str
) -> dict[str, str]:
    """Each field (by name; `where` when the name itself is bad) with a control character."""
    bad: dict[str, str] = {}
    for key, value in pairs:
        if _text_problem(key, pattern):
            bad.setdefault(where, "has a field name with a control character")
        elif _text_problem(value, pattern):
            bad.setdefault(key, CONTROL_CHARACTER)
    return bad


V = TypeVar("V", bound=Callable[..., Any])
_FORM_PROBLEMS = "chairside.form_problems"  # per request (the app context may outlive one)


def marks_form_problems(view: V) -> V:
    """For a form view that marks a control character on its own form, keeping what was typed,
    rather than the generic error page: the guard lets such a form through and the view calls
    `form_problems()` first, before storing anything (through `refused_characters`); the
    route's outermost decorator after `route`."""
    view.marks_form_problems = True  # type: ignore[attr-defined]
    return view


def form_problems() -> dict[str, str]:
    """The posted form fields with a control character (a view under `marks_form_problems`)."""
    return dict(request.environ.get(_FORM_PROBLEMS) or {})


def refused_characters() -> InvalidInput | None:
    """The error naming each posted field with a control character, or None. A form view
    marked `marks_form_problems` asks this first and shows its form again with the error (the
    fields named, the input kept through `without_controls`) instead of the generic error
    page; the view stores nothing then."""
    problems = form_problems()
    if not problems:
        return None
    return InvalidInput("Some fields contain characters that are not allowed.", problems)


def without_controls(value: str) -> str:
    """A refused value as it is shown back on its form: without the characters refused."""
    return _CONTROL_IN_TEXT.sub("", value)


def _check_request() -> None:
    if _text_problem(request.path, _CONTROL):
        # No slug, token or id has one: the page does not exist (each surface's own 404).
        abort(404)
    fields = _bad_fields(request.args.items(multi=True), _CONTROL, "query")
    headers = ((name, request.headers.get(name, "")) for name in _HEADERS)
    fields |= _bad_fields(headers, _CONTROL, "headers")
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        in_form = _bad_fields(request.form.items(multi=True), _CONTROL_IN_TEXT, "form")
        view = current_app.view_functions.get(request.endpoint or "")
        if in_form and not fields and getattr(view, "marks_form_problems", False):
            request.environ[_FORM_PROBLEMS] = in_form
        else:
            fields |= in_form
    if fields:
        raise reject("Some fields contain characters that are not allowed.", fields)
    if request.is_json and request.get_data(cache=True):
        try:
            payload = request.get_json()
        except BadRequest as exc:
            raise reject(
                "The body is not valid JSON.", {"body": "not valid JSON"}, error_code="bad_request"
            ) from exc
        _check_json(payload)


def _rejected(exc: RejectedInput) -> ResponseReturnValue:
    """The answer where a blueprint has no error page of its own (patient pages show theirs)."""
    status = exc.code or 400
    message = exc.description or "Bad request"
    if request.path.startswith("/api/"):
        return json_error(status, exc.error_code, message, exc.fields)
    if request.path.startswith("/staff"):
        return render_template("staff/error.html", message=message, fields=exc.fields), status
    return exc


def init_app(app: Flask) -> None:
    """Install before any blueprint registers its rules (the converter applies to them)."""
    app.url_map.converters["int"] = IdConverter
    app.json = GuardedJSON(app)
    app.before_request(_check_request)
    app.register_error_handler(RejectedInput, _rejected)
