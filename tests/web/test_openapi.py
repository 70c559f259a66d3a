"""The OpenAPI document is generated from the served routes and the validating models."""

from __future__ import annotations

import re

import pytest

from scheduler.web import schemas as s
from tests.factories import make_location, make_service, patient_json


def _flask_paths(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((method.lower(), path))
    return out


@pytest.fixture
def doc(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_document_lists_exactly_the_served_routes(app, doc):
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _flask_paths(app)
    assert doc["openapi"].startswith("3.")


def test_contract_routes_are_all_there(doc):
    for method, path in [
        ("get", "/api/v1/locations"),
        ("get", "/api/v1/locations/{location}/services"),
        ("get", "/api/v1/locations/{location}/availability"),
        ("post", "/api/v1/appointments"),
        ("get", "/api/v1/manage/{token}"),
        ("post", "/api/v1/manage/{token}/cancel"),
        ("post", "/api/v1/manage/{token}/reschedule"),
        ("get", "/api/v1/manage/{token}/invite.ics"),
        ("get", "/api/v1/locations/{location}/calendar"),
        ("post", "/api/v1/locations/{location}/blocks"),
        ("post", "/api/v1/appointments/{appointment_id}/status"),
    ]:
        assert method in doc["paths"][path], (method, path)


def test_request_schema_is_the_validating_model(doc):
    body = doc["paths"]["/api/v1/appointments"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {
        name for name, f in s.AppointmentIn.model_fields.items() if f.is_required()
    }
    assert "patient" in schema["properties"]
    params = {p["name"] for p in doc["paths"]["/api/v1/appointments"]["post"]["parameters"]}
    assert "Idempotency-Key" in params
    avail = doc["paths"]["/api/v1/locations/{location}/availability"]["get"]["parameters"]
    assert {p["name"] for p in avail} >= {"location", "service", "from", "days"}


def test_served_responses_validate_against_the_documented_models(client, session):
    loc = make_location(session, slug="sf")
    make_service(session, [loc], slug="inf")
    session.commit()
    s.LocationOut.model_validate(client.get("/api/v1/locations").get_json()[0])
    s.ServiceOut.model_validate(client.get("/api/v1/locations/sf/services").get_json()[0])
    avail = client.get("/api/v1/locations/sf/availability?service=inf&from=2026-12-01&days=1")
    s.AvailabilityOut.model_validate(avail.get_json())
    body = {
        "location": "sf",
        "service": "inf",
        "start": avail.get_json()["slots"][0]["start"],
        "patient": patient_json(1),
    }
    booked = client.post("/api/v1/appointments", json=body)
    s.AppointmentOut.model_validate(booked.get_json())
    error = client.post("/api/v1/appointments", json={}).get_json()
    from scheduler.web.openapi import ErrorBody

    ErrorBody.model_validate(error)


def test_the_waitlist_join_documents_sms_consent_as_required(doc):
    body = doc["paths"]["/api/v1/waitlist"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert "sms_consent" in schema["required"]
    assert "SMS only" in schema["properties"]["sms_consent"]["description"]
