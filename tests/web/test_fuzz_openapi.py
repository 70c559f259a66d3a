"""Schemathesis against the served OpenAPI document, on both databases: whatever it sends, valid
by the schema or not, public or with a staff token, the API answers without a 5xx, with a status
the document lists, and every answer matches the response schema the document declares.

Each operation runs Schemathesis' coverage phase (boundary and invalid values derived from the
schema: empty and odd strings, wrong types, missing and extra fields), a short fuzzing phase,
and a hostile round: generated valid requests with one field at a time replaced by a NUL, a
far date, a lone surrogate or an id past the integer columns. Bounded and deterministic: derandomized, no example database, a fixed number of fuzzed
examples, so a run is the same every time and takes seconds.
"""

from __future__ import annotations

import copy as copy_module
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.web.staff_support import make_clinic

FUZZED = 6  # fuzzed examples per operation and round, on top of the coverage phase's cases
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SETTINGS = settings(
    max_examples=FUZZED,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


def _run(
    schema: Any,
    operation: Any,
    headers: dict[str, str],
    seen: Counter[tuple[str, int]],
    path_parameters: dict[str, str],
) -> None:
    def check(case: Any) -> None:
        response = case.call(headers=headers)
        seen[(operation.label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    config = HypothesisTestConfig(
        project=schema.config,
        modes=[HypothesisTestMode.COVERAGE, HypothesisTestMode.FUZZING],
        settings=SETTINGS,
        explicit_settings=SETTINGS,
        override=Override(path_parameters=path_parameters),
    )
    create_test(operation=operation, test_func=check, config=config)()


# What a hand-made attack puts in one field at a time, on top of what Schemathesis generates.
HOSTILE_TEXT = ["a\x00b", "9999-12-31T10:00:00-08:00", "0001-01-01", "\ud800", "1e400"]
HOSTILE_NUMBERS = [99999999999, 2**64, -1]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = copy_module.deepcopy(value)
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return copy


def _hostile_variants(case: Any) -> Iterator[dict[str, Any]]:
    """The case's request with one field at a time replaced by something hostile."""
    parts = {"path_parameters": case.path_parameters or {}, "query": case.query or {}}
    if isinstance(case.body, (dict, list)):
        parts["body"] = case.body
    for container, value in parts.items():
        for path, leaf in _leaves(value):
            if not path:
                continue
            if isinstance(leaf, str):
                candidates: list[Any] = HOSTILE_TEXT
            elif isinstance(leaf, int) and not isinstance(leaf, bool):
                candidates = HOSTILE_NUMBERS
            else:
                continue
            for new in candidates:
                if container != "body" and new == "\ud800":
                    continue  # a URL cannot carry a lone surrogate at all; JSON can
                if container == "path_parameters":
                    new = quote(str(new), safe="")
                yield {**parts, container: _replaced(value, path, new)}


def _run_hostile(
    schema: Any,
    operation: Any,
    headers: dict[str, str],
    seen: Counter[tuple[str, int]],
    path_parameters: dict[str, str],
) -> None:
    @given(case=operation.as_strategy(path_parameters=path_parameters))
    @settings(SETTINGS, max_examples=2)
    def check(case: Any) -> None:
        for parts in _hostile_variants(case):
            hostile = schema.make_case(operation=operation, media_type=case.media_type, **parts)
            response = hostile.call(headers=headers)
            seen[(operation.label, response.status_code)] += 1
            hostile.validate_response(response, checks=CHECKS, headers=headers)

    check()


def test_the_api_survives_schemathesis(app, session):
    clinic = make_clinic(session)
    session.commit()
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    staff = {"Authorization": f"Bearer {clinic.tokens['admin']}"}
    seen: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        # Anything at all with a staff token; then at the real location, so that requests get
        # past the location lookup to the views, with the token and without.
        _run(schema, operation, staff, seen, {})
        if "{location}" in operation.path:
            _run(schema, operation, staff, seen, {"location": "sf"})
            _run(schema, operation, {}, seen, {"location": "sf"})
            _run_hostile(schema, operation, staff, seen, {"location": "sf"})
        else:
            _run_hostile(schema, operation, staff, seen, {})
    assert sum(seen.values()) > len(operations) * FUZZED
    # The run reached the views, staff ones included (the token works), not only the guards.
    answered = {label for (label, status), n in seen.items() if status < 300}
    for label in (
        "GET /api/v1/locations",
        "GET /api/v1/locations/{location}/calendar",
        "GET /api/v1/locations/{location}/feeds",
        "POST /api/v1/locations/{location}/feeds",
    ):
        assert label in answered, sorted(seen.items())
