"""Availability and booking across the US DST transitions, through the API, on both databases."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import make_location, make_service, patient_json


@pytest.fixture
def clinic(session, clock):
    clock.now = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    loc = make_location(session, slug="sf", chairs=2, hours=((dt.time(9), dt.time(17)),))
    make_service(session, [loc], slug="inf", duration=40, prep=0, recovery=0, step=30)
    session.commit()
    return loc


def first_starts(client, first: str, days: int) -> dict[str, str]:
    r = client.get(f"/api/v1/locations/sf/availability?service=inf&from={first}&days={days}")
    assert r.status_code == 200, r.get_json()
    firsts: dict[str, str] = {}
    for slot in r.get_json()["slots"]:
        firsts.setdefault(slot["start"][:10], slot["start"])
    return firsts


def test_opening_is_nine_local_on_both_sides_of_spring_forward(client, clinic):
    firsts = first_starts(client, "2026-03-06", 5)
    assert firsts["2026-03-07"] == "2026-03-07T09:00:00-08:00"
    assert firsts["2026-03-08"] == "2026-03-08T09:00:00-07:00"
    assert firsts["2026-03-09"] == "2026-03-09T09:00:00-07:00"


def test_opening_is_nine_local_on_both_sides_of_fall_back(client, clinic, clock):
    clock.now = dt.datetime(2026, 10, 20, 12, tzinfo=dt.UTC)
    firsts = first_starts(client, "2026-10-30", 5)
    assert firsts["2026-10-31"] == "2026-10-31T09:00:00-07:00"
    assert firsts["2026-11-01"] == "2026-11-01T09:00:00-08:00"
    assert firsts["2026-11-02"] == "2026-11-02T09:00:00-08:00"


def test_booking_after_spring_forward_lands_at_the_local_time(client, clinic):
    body = {
        "location": "sf",
        "service": "inf",
        "start": "2026-03-09T16:00:00Z",
        "patient": patient_json(1),
    }
    r = client.post("/api/v1/appointments", json=body)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["start"] == "2026-03-09T09:00:00-07:00"
    body["start"] = "2026-03-09T09:00:00-08:00"  # 10:00 PDT: on the grid? no, grid is :00/:30
    body["patient"] = patient_json(2)
    r = client.post("/api/v1/appointments", json=body)
    assert r.status_code == 201
    assert r.get_json()["start"] == "2026-03-09T10:00:00-07:00"
