"""Hostile input, whatever the endpoint: far dates, huge ids, NUL and control characters, deep or
broken JSON, oversized bodies and a poisoned `next`. Each is a 4xx naming the field, never a 500,
on the JSON API, the patient pages, the staff pages, the feeds and the webhooks alike."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from scheduler.models import Appointment, Patient, ResourceBlock
from tests.web.staff_support import DAY, make_clinic, sign_in

TWILIO_TOKEN = "hostile-test-auth-token"
PUBLIC = "https://book.chairside.example"
HUGE = "999999999999999999999999999999"  # past any integer column
BIG = "99999999999"  # past a 32-bit integer, inside a 64-bit one


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **app_config,
        "WTF_CSRF_ENABLED": False,
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "TWILIO_FROM_NUMBER": "+14155550000",
        "PUBLIC_BASE_URL": PUBLIC,
    }


@pytest.fixture
def clinic(session):
    c = make_clinic(session)
    session.commit()
    return c


def _bearer(clinic, role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {clinic.tokens[role]}"}


def _admin(client, clinic):
    r = sign_in(client, clinic.users["admin"].email)
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    return client


BOOKING = {
    "location": "sf",
    "service": "infusion",
    "start": f"{DAY}T10:00:00-08:00",
    "patient": {"name": "Pat Patient", "phone": "+14155550123", "email": "pat@example.com"},
    "sms_consent": True,
}


def _api_error(r, status: int | tuple[int, ...], field: str | None = None) -> dict[str, Any]:
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.get_data(as_text=True)[:400])
    body = r.get_json()
    assert set(body["error"]) >= {"code", "message"}, body
    if field is not None:
        assert field in (body["error"].get("fields") or {}), body
    return body["error"]


def _page_4xx(r, *words: str) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:400])
    html = r.get_data(as_text=True)
    assert "<html" in html.lower(), html[:300]  # the site's own error page, not a bare string
    for word in words:
        assert word in html, (word, html[:2000])
    return html


def _count(session, model) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


# --- 1. far dates ---------------------------------------------------------------------------------

FAR_DATES = ["9999-12-31", "0001-01-01"]


@pytest.mark.parametrize("far", FAR_DATES)
def test_far_dates_on_the_api_are_4xx_naming_the_field(client, clinic, far):
    staff = _bearer(clinic)
    start = f"{far}T10:00:00-08:00"
    r = client.post("/api/v1/appointments", json={**BOOKING, "start": start})
    _api_error(r, 422, "start")
    r = client.get(f"/api/v1/locations/sf/availability?service=infusion&from={far}")
    _api_error(r, 400, "from")
    r = client.get(f"/api/v1/locations/sf/calendar?date={far}", headers=staff)
    _api_error(r, 400, "date")
    block = {"resource": "Chair 1", "start": start, "end": f"{far}T11:00:00-08:00"}
    r = client.post("/api/v1/locations/sf/blocks", json=block, headers=staff)
    _api_error(r, 422, "start")
    token = client.post("/api/v1/appointments", json=BOOKING).get_json()["manage_token"]
    r = client.post(f"/api/v1/manage/{token}/reschedule", json={"start": start})
    _api_error(r, 422, "start")
    r = client.get(f"/api/v1/locations/sf/shifts?from={far}&to={far}", headers=staff)
    _api_error(r, 400, "from")
    shift = {"clinician": 1, "start": start, "end": f"{far}T11:00:00-08:00"}
    _api_error(client.post("/api/v1/locations/sf/shifts", json=shift, headers=staff), 422, "start")
    r = client.delete(f"/api/v1/locations/sf/shifts/p1:{far}", headers=staff)
    _api_error(r, 404)


@pytest.mark.parametrize("far", FAR_DATES)
def test_far_dates_on_patient_pages_are_4xx_pages(client, clinic, far):
    _page_4xx(client.get(f"/book/sf/infusion/{far}"))
    _page_4xx(client.get(f"/book/sf/infusion?month={far[:7]}"))
    _page_4xx(client.get(f"/book/sf/infusion/details?start={far}T10:00"))
    token = client.post("/api/v1/appointments", json=BOOKING).get_json()["manage_token"]
    _page_4xx(client.get(f"/a/{token}/reschedule/{far}"))
    _page_4xx(client.get(f"/a/{token}/reschedule?month={far[:7]}"))
    _page_4xx(client.get(f"/a/{token}/reschedule/confirm?start={far}T10:00"))


@pytest.mark.parametrize("far", FAR_DATES)
def test_far_dates_on_staff_pages_are_4xx_pages_naming_the_field(client, clinic, far):
    _admin(client, clinic)
    chair = clinic.sf.resources[0].id
    for url in (
        f"/staff/sf/calendar?date={far}",
        f"/staff/sf/calendar?date={far}&view=week&resource={chair}",
        f"/staff/sf/summary?date={far}",
    ):
        _page_4xx(client.get(url), "date")
    form = {"service": "infusion", "date": far, "time": "10:00", "resource": ""}
    form |= {"name": "Pat Patient", "phone": "+14155550123", "email": "pat@example.com"}
    _page_4xx(client.post("/staff/sf/book", data=form), "date")
    form = {"resource": str(chair), "date": far, "start": "10:00", "end": "11:00", "reason": "x"}
    _page_4xx(client.post("/staff/sf/blocks", data=form), "date")
    form = {"first_day": far, "last_day": far, "reason": "Holiday"}
    _page_4xx(client.post("/staff/settings/locations/sf/closures", data=form), "first_day")


@pytest.mark.parametrize("edge", ["1900-01-01", "2200-12-31"])
def test_the_edges_of_the_supported_range_are_served(client, clinic, edge):
    staff = _bearer(clinic)
    r = client.get(f"/api/v1/locations/sf/availability?service=infusion&from={edge}&days=62")
    assert r.status_code == 200, r.get_json()
    r = client.get(f"/api/v1/locations/sf/calendar?date={edge}", headers=staff)
    assert r.status_code == 200, r.get_json()
    assert client.get(f"/book/sf/infusion/{edge}").status_code == 200
    assert client.get(f"/book/sf/infusion?month={edge[:7]}").status_code == 200
    _admin(client, clinic)
    chair = clinic.sf.resources[0].id
    for url in (
        f"/staff/sf/calendar?date={edge}",
        f"/staff/sf/calendar?date={edge}&view=week&resource={chair}",
        f"/staff/sf/summary?date={edge}",
    ):
        assert client.get(url).status_code == 200, url


# --- 2. ids past the integer range ----------------------------------------------------------------


@pytest.mark.parametrize("big", [BIG, HUGE])
def test_ids_past_the_integer_range_are_404(client, clinic, big):
    staff = _bearer(clinic)
    r = client.post(f"/api/v1/appointments/{big}/status", json={"status": "no_show"}, headers=staff)
    _api_error(r, 404)
    _api_error(client.delete(f"/api/v1/locations/sf/feeds/{big}", headers=staff), 404)
    _api_error(client.delete(f"/api/v1/locations/sf/blocks/{big}", headers=staff), 404)
    for shift_id in (f"s{big}", f"p{big}:{DAY}"):
        r = client.delete(f"/api/v1/locations/sf/shifts/{shift_id}", headers=staff)
        _api_error(r, 404)
    # A path with rules for several methods (GET and PATCH a patient) is still a 404, not 405.
    _api_error(client.patch(f"/api/v1/patients/{big}", json={}, headers=staff), 404)
    r = client.get(f"/api/v1/locations/sf/availability?service=consult&clinician={big}")
    _api_error(r, 400, "clinician")
    r = client.post("/api/v1/appointments", json={**BOOKING, "clinician": int(big)})
    _api_error(r, 422, "clinician")
    shift = {"clinician": int(big), "start": f"{DAY}T10:00:00-08:00"}
    shift |= {"end": f"{DAY}T11:00:00-08:00"}
    r = client.post("/api/v1/locations/sf/shifts", json=shift, headers=staff)
    _api_error(r, 422, "clinician")
    _admin(client, clinic)
    for method, url in (
        ("GET", f"/staff/appointments/{big}"),
        ("POST", f"/staff/appointments/{big}/cancel"),
        ("GET", f"/staff/sf/blocks/{big}"),
        ("POST", f"/staff/sf/blocks/{big}/delete"),
        ("GET", f"/staff/settings/staff/{big}"),
        ("POST", f"/staff/settings/staff/{big}/tokens"),
        ("POST", f"/staff/account/tokens/{big}/revoke"),
        ("POST", f"/staff/settings/locations/sf/closures/{big}/delete"),
        ("POST", f"/staff/settings/locations/sf/resources/{big}"),
    ):
        r = client.open(url, method=method, data={})
        assert r.status_code == 404, (url, r.status_code)
    r = client.get(f"/staff/sf/calendar?date={DAY}&view=week&resource={big}")
    _page_4xx(r, "resource")
    form = {"service": "infusion", "date": str(DAY), "time": "10:00", "resource": big}
    form |= {"name": "Pat Patient", "phone": "+14155550123", "email": "pat@example.com"}
    _page_4xx(client.post("/staff/sf/book", data=form), "resource")
    r = client.post("/staff/settings/staff/new", data={"locations": [big, "²"], "role": "nurse"})
    assert 400 <= r.status_code < 500, r.status_code


def _signed_status(client, query: str, form: dict[str, str]):
    path = f"/webhooks/twilio/status?{query}"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + path, form)
    return client.post(
        path,
        data=urlencode(form),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )


@pytest.mark.parametrize("big", [BIG, HUGE])
def test_a_signed_status_callback_with_a_huge_reminder_id_is_not_a_500(client, clinic, big):
    form = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered"}
    r = _signed_status(client, f"r={big}", form)
    assert r.status_code in (204, 400), r.status_code


# --- 3. NUL and control characters ----------------------------------------------------------------


def test_nul_in_any_api_text_is_refused_naming_the_field_and_nothing_is_stored(
    client, session, clinic
):
    staff = _bearer(clinic)
    cases = [
        ({**BOOKING, "note": "a\x00b"}, "note"),
        ({**BOOKING, "patient": {**BOOKING["patient"], "name": "Pat\x00"}}, "patient.name"),
        ({**BOOKING, "location": "s\x00f"}, "location"),
        ({**BOOKING, "patient": {**BOOKING["patient"], "email": "\ud800@x.org"}}, "patient.email"),
    ]
    for body, field in cases:
        r = client.post("/api/v1/appointments", json=body)
        _api_error(r, (400, 422), field)
    assert _count(session, Patient) == 0
    assert _count(session, Appointment) == 0
    block = {"resource": "Chair 1", "start": f"{DAY}T10:00:00-08:00"}
    block |= {"end": f"{DAY}T11:00:00-08:00", "reason": "pump\x00"}
    _api_error(client.post("/api/v1/locations/sf/blocks", json=block, headers=staff), 422, "reason")
    assert _count(session, ResourceBlock) == 0
    feed = {"label": "front\x00desk"}
    _api_error(client.post("/api/v1/locations/sf/feeds", json=feed, headers=staff), 422, "label")
    r = client.get("/api/v1/locations/s%00f/services")
    _api_error(r, (400, 404), None)
    r = client.get("/api/v1/locations/sf/availability?service=inf%00usion")
    _api_error(r, 400, "service")
    r = client.post("/api/v1/appointments", json=BOOKING, headers={"Idempotency-Key": "k\x01"})
    _api_error(r, (400, 422), "Idempotency-Key")


def test_nul_in_page_forms_and_urls_is_refused_and_nothing_is_stored(client, session, clinic):
    form = {"start": f"{DAY}T10:00", "name": "Pat\x00Patient", "phone": "+14155550123"}
    form |= {"email": "pat@example.com", "note": "", "submission": "s1"}
    _page_4xx(client.post("/book/sf/infusion/details", data=form))
    _page_4xx(client.get("/book/s%00f/infusion"))
    _page_4xx(client.get(f"/book/sf/infusion/details?start={DAY}T10:00%00"))
    assert _count(session, Patient) == 0
    r = client.post("/staff/sign-in", data={"email": "admin@clinic.example\x00", "password": "x"})
    _page_4xx(r, "email")
    _admin(client, clinic)
    _page_4xx(client.get(f"/staff/sf/calendar?date={DAY}%00"), "date")
    staff_form = {"service": "infusion", "date": str(DAY), "time": "10:00", "resource": ""}
    staff_form |= {"name": "Pat Patient", "phone": "+14155550123", "email": "pat@example.com"}
    _page_4xx(client.post("/staff/sf/book", data={**staff_form, "note": "x\x00"}), "note")
    assert _count(session, Appointment) == 0
    # Line breaks and tabs stay fine in free text.
    r = client.post("/staff/sf/book", data={**staff_form, "note": "line one\r\n\tline two"})
    assert r.status_code == 303, r.get_data(as_text=True)[:500]


def test_control_characters_in_webhook_forms_are_refused(client, clinic):
    r = _signed_status(client, "r=1", {"MessageSid": "SM\x00", "MessageStatus": "delivered"})
    assert r.status_code == 400


# --- 4. deep and malformed JSON -------------------------------------------------------------------


def test_json_nested_a_thousand_deep_is_a_400(client, clinic):
    deep = "[" * 1000 + "]" * 1000
    body = json.dumps({**BOOKING, "note": "x"})[:-1] + f', "extra": {deep}}}'
    for url, headers in (
        ("/api/v1/appointments", {}),
        ("/api/v1/locations/sf/blocks", _bearer(clinic)),
        ("/api/v1/locations/sf/feeds", _bearer(clinic)),
    ):
        r = client.post(url, data=body, content_type="application/json", headers=headers)
        error = _api_error(r, 400)
        assert error["code"] == "bad_request"
    deeper = "[" * 100_000 + "]" * 100_000
    r = client.post("/api/v1/appointments", data=deeper, content_type="application/json")
    assert _api_error(r, 400)["code"] == "bad_request"


def test_malformed_json_is_400_bad_request_and_a_non_object_stays_422(client, clinic):
    for bad in ('{"location": ', "{'a': 1}", "\xff\xfe", "NaN-ish"):
        r = client.post("/api/v1/appointments", data=bad, content_type="application/json")
        assert _api_error(r, 400)["code"] == "bad_request"
    r = client.post("/api/v1/appointments", json=[1, 2])
    assert _api_error(r, 422, "body")["code"] == "invalid"


# --- 5. request size ------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_before_it_is_parsed(client, clinic):
    big = json.dumps({**BOOKING, "note": "x" * (1024 * 1024 + 10)})
    r = client.post("/api/v1/appointments", data=big, content_type="application/json")
    assert _api_error(r, 413)["code"] == "request_entity_too_large"
    form = {"name": "x" * (1024 * 1024 + 10)}
    r = client.post("/book/sf/infusion/details", data=form)
    assert r.status_code == 413
    _admin(client, clinic)
    assert client.post("/staff/sf/book", data=form).status_code == 413
    # Just under the limit is read as usual (and refused for its content, not its size).
    ok = json.dumps({**BOOKING, "note": "x" * 5000})
    r = client.post("/api/v1/appointments", data=ok, content_type="application/json")
    _api_error(r, 422, "note")


def test_the_size_limit_is_configurable(db_url, clock):
    from config import TestConfig
    from scheduler import create_app

    app = create_app(TestConfig(db_url, CLOCK=clock, MAX_CONTENT_LENGTH=100))
    r = app.test_client().post("/api/v1/appointments", json=BOOKING)
    assert r.status_code == 413


# --- 6. next= on staff sign-in --------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["/staff/sf%0d%0aSet-Cookie:x=1", "/staff%0a", "%0d%0a/staff"],
    ids=["crlf", "lf", "leading-crlf"],
)
def test_a_line_break_in_next_is_never_a_500(client, clinic, target):
    r = client.get(f"/staff/sign-in?next={target}")
    assert r.status_code < 500
    assert "Set-Cookie" not in str(r.headers.get("Location", ""))
    data = {"email": clinic.users["admin"].email, "password": "correct horse battery"}
    r = client.post(f"/staff/sign-in?next={target}", data=data)
    assert r.status_code < 500
    assert "\n" not in r.headers.get("Location", "") and "\r" not in r.headers.get("Location", "")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/staff/sf/calendar?date=2026-12-01", "/staff/sf/calendar?date=2026-12-01"),
        ("//evil.example/staff", "/staff/"),
        ("https://evil.example/staff", "/staff/"),
        ("/staffevil", "/staff/"),
        ("/staff/\\evil", "/staff/"),
        ("/staff/ evil", "/staff/"),
    ],
    ids=["local", "scheme-relative", "absolute", "prefix", "backslash", "space"],
)
def test_next_only_follows_local_staff_paths(client, clinic, target, expected):
    data = {"email": clinic.users["admin"].email, "password": "correct horse battery"}
    r = client.post("/staff/sign-in?" + urlencode({"next": target}), data=data)
    assert r.status_code == 302
    assert r.headers["Location"] == expected


# --- item 15: every bad field in one round, under one naming scheme -------------------------------


def test_a_booking_with_several_bad_fields_reports_them_all_at_once_with_dotted_names(
    client, clinic
):
    body = {
        **BOOKING,
        "start": "2026-11-01T10:00:00-08:00",  # in the past
        "patient": {"name": "  ", "phone": "12", "email": "not-an-email"},
        "note": "n" * 3000,
    }
    error = _api_error(client.post("/api/v1/appointments", json=body), 422)
    assert error["code"] == "invalid"
    fields = error["fields"]
    assert {"patient.name", "patient.phone", "patient.email", "note", "start"} <= set(fields)
    assert not {"name", "phone", "email"} & set(fields), fields
    # Only the phone wrong: the same dotted name (the service's own check says so too).
    body = {**BOOKING, "patient": {**BOOKING["patient"], "phone": "+1 415 555"}}
    error = _api_error(client.post("/api/v1/appointments", json=body), 422, "patient.phone")
    assert "phone" not in error["fields"]


def test_quoted_path_segments_with_nul_are_refused_on_every_surface(client, clinic):
    for url in (
        "/api/v1/manage/" + quote("a\x00b", safe=""),
        "/a/" + quote("tok\x00en", safe=""),
        "/feeds/" + quote("t\x00", safe="") + ".ics",
    ):
        r = client.get(url)
        assert r.status_code in (400, 404), (url, r.status_code)


def test_a_retry_after_the_start_has_passed_still_replays_the_booking(client, clinic, clock):
    headers = {"Idempotency-Key": "retry-after-start"}
    first = client.post("/api/v1/appointments", json=BOOKING, headers=headers)
    assert first.status_code == 201, first.get_json()
    clock.advance(days=3)  # the visit's start is now in the past
    again = client.post("/api/v1/appointments", json=BOOKING, headers=headers)
    assert again.status_code == 201
    assert again.get_json() == first.get_json()
