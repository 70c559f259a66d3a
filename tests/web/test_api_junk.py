"""Junk in any field of any public endpoint gets a 4xx in the error shape, never a 500."""

from __future__ import annotations

import pytest

from tests.factories import make_location, make_service

JUNK = [
    None,
    0,
    -1,
    1e308,
    "",
    " ",
    "x" * 5000,
    [],
    {},
    True,
    "2026-02-30T10:00:00Z",
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+14:00",
    "2026-12-01T10:00:00+25:00",
    "\x00",
    "null",
    "😀",
]


@pytest.fixture
def clinic(session):
    loc = make_location(session, slug="sf")
    make_service(session, [loc], slug="inf")
    session.commit()


BASE = {
    "location": "sf",
    "service": "inf",
    "start": "2026-12-01T10:00:00-08:00",
    "patient": {"name": "Pat", "phone": "+14155550123", "email": "pat@example.com"},
    "sms_consent": True,
}


def _assert_clean_4xx(response) -> None:
    """A 4xx in the error shape; a 2xx only where the junk happens to be valid (e.g. note "")."""
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if response.status_code < 400:
        return
    body = response.get_json()
    assert set(body["error"]) >= {"code", "message"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "field", ["location", "service", "start", "patient", "sms_consent", "note"]
)
def test_booking_junk_never_500(client, clinic, field):
    for value in JUNK:
        _assert_clean_4xx(client.post("/api/v1/appointments", json={**BASE, field: value}))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("field", ["name", "phone", "email"])
def test_patient_junk_never_500(client, clinic, field):
    for value in JUNK:
        body = {**BASE, "patient": {**BASE["patient"], field: value}}
        _assert_clean_4xx(client.post("/api/v1/appointments", json=body))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_query_and_path_junk_never_500(client, clinic):
    for value in [
        "",
        "x" * 500,
        "9999-12-31",
        "0001-01-01",
        "2026-02-30",
        "-5",
        "1e9",
        "%00",
        "😀",
    ]:
        for query in (f"service=inf&from={value}", f"service=inf&days={value}", f"service={value}"):
            r = client.get(f"/api/v1/locations/sf/availability?{query}")
            assert r.status_code in (200, 400, 404), (query, r.status_code)
            if r.status_code != 200:
                _assert_clean_4xx(r)
        for url in (
            f"/api/v1/locations/{value}/services",
            f"/api/v1/manage/{value}",
            f"/api/v1/manage/{value}/invite.ics",
        ):
            r = client.get(url)
            assert r.status_code in (308, 404, 405), (url, r.status_code)
        r = client.post("/api/v1/manage/" + ("a" * 43) + "/reschedule", json={"start": value})
        assert r.status_code == 404


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_reschedule_junk_never_500(client, clinic):
    token = client.post("/api/v1/appointments", json=BASE).get_json()["manage_token"]
    for value in JUNK:
        r = client.post(f"/api/v1/manage/{token}/reschedule", json={"start": value})
        _assert_clean_4xx(r)
    r = client.post(f"/api/v1/manage/{token}/reschedule", data="junk", content_type="text/plain")
    _assert_clean_4xx(r)
