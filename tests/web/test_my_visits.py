""" "My visits": a one-time code by SMS, then the patient picks who they are and sees their
visits; rate limits, expiry, the lock after five wrong codes, and no account enumeration."""

from __future__ import annotations

import re
from typing import Any

import pytest

from scheduler.services.sms import SendResult
from tests.factories import make_location, make_service

PHONE = "+14155550142"


class FakeSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        self.sent.append((to, body))
        return SendResult(sid=f"SM{len(self.sent)}", status="queued")


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


@pytest.fixture
def sms(app) -> FakeSms:
    fake = FakeSms()
    app.extensions["chairside_sms"] = fake
    return fake


@pytest.fixture
def family(client, session) -> None:
    loc = make_location(session, slug="sf")
    make_service(
        session, [loc], slug="plain", name="Ketamine infusion", duration=30, prep=0, recovery=0
    )
    session.commit()
    for name, dob, hour in (("Ana Diaz", "1975-01-01", 10), ("Luis Diaz", "1978-05-05", 11)):
        body = {
            "location": "sf",
            "service": "plain",
            "start": f"2026-12-02T{hour}:00:00-08:00",
            "patient": {
                "name": name,
                "phone": PHONE,
                "email": "d@example.com",
                "date_of_birth": dob,
            },
        }
        assert client.post("/api/v1/appointments", json=body).status_code == 201


def ask(client, phone: str = PHONE):
    return client.post("/my-visits", data={"phone": phone})


def the_code(sms: FakeSms) -> str:
    match = re.search(r"\b(\d{6})\b", sms.sent[-1][1])
    assert match
    return match.group(1)


def test_a_patient_sees_their_visits_after_the_code_and_choosing_who_they_are(client, sms, family):
    r = ask(client, "(415) 555-0142")
    assert r.status_code == 303 and r.headers["Location"].endswith("/my-visits/code")
    (to, body) = sms.sent[0]
    assert to == PHONE and "infusion" not in body.lower() and "Ketamine" not in body
    assert (
        client.post(
            "/my-visits/code", data={"code": "000000" if the_code(sms) != "000000" else "111111"}
        ).status_code
        == 422
    )
    r = client.post("/my-visits/code", data={"code": the_code(sms)})
    assert r.status_code == 303
    page = client.get("/my-visits/who").get_data(as_text=True)
    assert "Ana Diaz" in page and "Luis Diaz" in page
    ids = dict(re.findall(r'value="(\d+)"><label for="p\d+">([^<]+)<', page))
    luis = next(i for i, n in ids.items() if n == "Luis Diaz")
    wrong = client.post("/my-visits/who", data={"patient": luis, "date_of_birth": "1975-01-01"})
    assert wrong.status_code == 422
    r = client.post("/my-visits/who", data={"patient": luis, "date_of_birth": "1978-05-05"})
    assert r.status_code == 303
    visits = client.get("/my-visits/visits").get_data(as_text=True)
    assert "11:00 AM" in visits and "10:00 AM" not in visits and 'href="/a/' in visits
    # A code is single-use.
    assert client.post("/my-visits/code", data={"code": the_code(sms)}).status_code == 422


def test_an_unknown_number_gets_the_same_answer_and_no_text(client, sms, family):
    r = ask(client, "+14155550199")
    assert r.status_code == 303 and r.headers["Location"].endswith("/my-visits/code")
    assert sms.sent == []
    page = client.get("/my-visits/code").get_data(as_text=True)
    assert "If this number is one we know" in page


def test_codes_are_rate_limited_and_expire(client, sms, family, clock):
    assert ask(client).status_code == 303
    again = ask(client)
    assert again.status_code == 429 and "wait a minute" in again.get_data(as_text=True)
    clock.advance(minutes=11)
    code = the_code(sms)
    assert client.post("/my-visits/code", data={"code": code}).status_code == 422  # expired
    for _ in range(4):
        clock.advance(minutes=2)
        assert ask(client).status_code == 303
    clock.advance(minutes=2)
    assert ask(client).status_code == 429  # five an hour


def test_five_wrong_codes_lock_the_phone_for_fifteen_minutes(client, sms, family, clock):
    ask(client)
    code = the_code(sms)
    wrong = "123456" if code != "123456" else "654321"
    for _ in range(5):
        assert client.post("/my-visits/code", data={"code": wrong}).status_code == 422
    locked = client.post("/my-visits/code", data={"code": code})
    assert locked.status_code == 429 and "Too many wrong codes" in locked.get_data(as_text=True)
    assert ask(client).status_code == 429
    clock.advance(minutes=16)
    assert ask(client).status_code == 303
    assert client.post("/my-visits/code", data={"code": the_code(sms)}).status_code == 303


def test_the_visits_page_needs_a_verified_phone(client, family):
    assert client.get("/my-visits/visits").status_code == 303
    assert client.get("/my-visits/who").status_code == 303
