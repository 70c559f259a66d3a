"""Treatment courses through the JSON API: list, plan, book (idempotent, all or nothing),
the course's manage token, moving a session against the rules, cancel the rest, review."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import Appointment, Course
from scheduler.services import booking, courses
from tests.factories import patient_json
from tests.web.staff_support import DAY, LA, at, make_clinic

INDUCTION = {
    "slug": "induction",
    "name": "IV ketamine induction",
    "service": "infusion",
    "sessions": 6,
    "min_gap_hours": 44,
    "max_gap_hours": 168,
    "within_days": 21,
    "review_after": 2,
}
STARTS = [at(DAY, 10) + dt.timedelta(days=2 * i) for i in range(6)]


@pytest.fixture
def app_config(app_config: dict[str, Any], twilio: Any) -> dict[str, Any]:
    """Texts go through the real Twilio client to the local Twilio server."""
    return {**app_config, **twilio.config()}


def setup(session):
    clinic = make_clinic(session)
    courses.save_template(session, None, INDUCTION)
    session.commit()
    return clinic


def body(starts=STARTS, n: int = 1) -> dict:
    return {
        "location": "sf",
        "course": "induction",
        "starts": [s.astimezone(LA).isoformat() for s in starts],
        "patient": patient_json(n),
        "sms_consent": True,
    }


def appointments(session) -> int:
    return session.scalar(select(func.count()).select_from(Appointment))


def test_list_plan_book_and_manage_a_course(client, session):
    setup(session)
    listed = client.get("/api/v1/locations/sf/courses").get_json()
    assert listed == [
        {
            "slug": "induction",
            "name": "IV ketamine induction",
            "service": "infusion",
            "sessions": 6,
            "min_gap_hours": 44,
            "max_gap_hours": 168,
            "within_days": 21,
            "review_after": 2,
            "weekdays": None,
            "description": "6 sessions, 44 hours to 7 days apart, within 21 days; "
            "review after session 2",
        }
    ]
    r = client.post(
        "/api/v1/courses/plan",
        json={"location": "sf", "course": "induction", "first_start": "2026-12-01T10:00:00-08:00"},
    )
    assert r.status_code == 200, r.get_json()
    plan = r.get_json()
    assert [s["start"] for s in plan["sessions"]] == [s.astimezone(LA).isoformat() for s in STARTS]
    assert plan["sessions"][0]["end"] == "2026-12-01T10:40:00-08:00"

    headers = {"Idempotency-Key": "course-1"}
    r = client.post("/api/v1/courses", json=body(), headers=headers)
    assert r.status_code == 201, r.get_json()
    course = r.get_json()
    assert set(course) >= {"id", "course", "status", "appointments", "manage_token", "manage_url"}
    assert course["course"] == "induction" and course["status"] == "active"
    assert course["progress"] == "0 of 6" and course["review_state"] == "pending"
    assert [a["course"] for a in course["appointments"]] == [
        {"id": course["id"], "session": i, "sessions": 6} for i in range(1, 7)
    ]
    assert [a["awaiting_review"] for a in course["appointments"]] == [False] * 2 + [True] * 4
    assert course["manage_url"].endswith(f"/a/{course['manage_token']}")

    again = client.post("/api/v1/courses", json=body(), headers=headers)
    assert again.status_code == 201 and again.get_json() == course
    other = client.post("/api/v1/courses", json=body(n=2), headers=headers)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_mismatch"
    assert appointments(session) == 6

    managed = client.get(f"/api/v1/manage/{course['manage_token']}").get_json()
    assert managed == course
    first = course["appointments"][0]
    one = client.get(f"/api/v1/manage/{first['manage_token']}").get_json()
    assert one["id"] == first["id"] and one["course"]["session"] == 1
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_errors_name_the_field_or_the_session(client, session, clock):
    clinic = setup(session)
    r = client.post(
        "/api/v1/courses/plan",
        json={"location": "sf", "course": "nope", "first_start": "2026-12-01T10:00:00-08:00"},
    )
    assert r.status_code == 404 and r.get_json()["error"]["fields"] == {"course": "unknown course"}
    r = client.post(
        "/api/v1/courses/plan",
        json={"location": "sf", "course": "induction", "first_start": "2026-12-01T10:05:00-08:00"},
    )
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "no_plan"
    assert "first_start" in r.get_json()["error"]["fields"]

    r = client.post("/api/v1/courses", json=body(STARTS[:5]))
    assert r.status_code == 422 and "starts" in r.get_json()["error"]["fields"]
    spaced = [*STARTS]
    spaced[4] = spaced[3] + dt.timedelta(hours=24)
    r = client.post("/api/v1/courses", json=body(spaced))
    assert r.status_code == 422
    assert set(r.get_json()["error"]["fields"]) == {"starts", "starts[4]"}
    bad = body()
    bad["patient"]["phone"] = "12"
    r = client.post("/api/v1/courses", json=bad)
    assert r.status_code == 422 and "patient.phone" in r.get_json()["error"]["fields"]

    for chair in clinic.sf.resources[:4]:
        booking.create_block(
            session, chair, STARTS[2], STARTS[2] + dt.timedelta(hours=1), now=clock.now
        )
    session.commit()
    r = client.post("/api/v1/courses", json=body())
    assert r.status_code == 409, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "slot_unavailable" and list(error["fields"]) == ["starts[2]"]
    assert appointments(session) == 0
    assert session.scalar(select(func.count()).select_from(Course)) == 0


def test_move_a_session_cancel_the_rest_and_review(client, session, clock):
    clinic = setup(session)
    course = client.post("/api/v1/courses", json=body()).get_json()
    third = course["appointments"][2]
    r = client.post(
        f"/api/v1/manage/{third['manage_token']}/reschedule",
        json={"start": (STARTS[1] + dt.timedelta(hours=24)).isoformat()},
    )
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "too_soon"
    r = client.post(
        f"/api/v1/manage/{third['manage_token']}/reschedule",
        json={"start": (STARTS[2] + dt.timedelta(hours=2)).isoformat()},
    )
    assert r.status_code == 200 and r.get_json()["course"]["session"] == 3

    review = f"/api/v1/courses/{course['id']}/review"
    assert client.post(review, json={"decision": "continue"}).status_code == 401
    front = {"Authorization": f"Bearer {clinic.tokens['front_desk']}"}
    assert client.post(review, json={"decision": "continue"}, headers=front).status_code == 403
    nurse = {"Authorization": f"Bearer {clinic.tokens['nurse']}"}
    # Whether a course goes on is the prescriber's decision: a nurse reads, but cannot record it.
    assert client.post(review, json={"decision": "continue"}, headers=nurse).status_code == 403
    prescriber = {"Authorization": f"Bearer {clinic.tokens['prescriber']}"}
    r = client.post(review, json={"decision": "maybe"}, headers=prescriber)
    assert r.status_code == 422 and "decision" in r.get_json()["error"]["fields"]
    r = client.post(review, json={"decision": "continue"}, headers=prescriber)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["review_state"] == "continued"
    assert not any(a["awaiting_review"] for a in r.get_json()["appointments"])
    assert client.post(review, json={"decision": "stop"}, headers=prescriber).status_code == 409
    assert (
        client.post(
            "/api/v1/courses/999999/review", json={"decision": "stop"}, headers=prescriber
        ).status_code
        == 404
    )
    assert (
        client.get(f"/api/v1/courses/{course['id']}", headers=nurse).get_json()["progress"]
        == "0 of 6"
    )
    calendar = client.get(f"/api/v1/locations/sf/calendar?date={DAY}", headers=nurse).get_json()
    (visit,) = [a for r in calendar["resources"] for a in r["appointments"]]
    assert visit["course"] == {"id": course["id"], "session": 1, "sessions": 6}
    assert visit["course_progress"] == "0 of 6" and visit["awaiting_review"] is False

    clock.now = STARTS[0] - dt.timedelta(hours=10)
    r = client.post(f"/api/v1/manage/{course['manage_token']}/cancel")
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert [a["id"] for a in out["kept_late"]] == [course["appointments"][0]["id"]]
    assert out["cancelled"] == [a["id"] for a in course["appointments"][1:]]
    first = course["appointments"][0]
    r = client.post(f"/api/v1/manage/{first['manage_token']}/cancel")
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "too_late"


def test_stop_at_review_sends_one_discreet_text(app, client, session, clock, twilio):
    from tests.test_sms_reply_flow import send_due

    clinic = setup(session)
    prescriber = {"Authorization": f"Bearer {clinic.tokens['prescriber']}"}
    stopped = client.post("/api/v1/courses", json=body(n=1)).get_json()
    clock.now = at(DAY, 9) - dt.timedelta(days=1)  # Mon 30 Nov, 09:00: outside quiet hours
    r = client.post(
        f"/api/v1/courses/{stopped['id']}/review", json={"decision": "stop"}, headers=prescriber
    )
    assert r.status_code == 200 and r.get_json()["status"] == "stopped"
    assert [a["status"] for a in r.get_json()["appointments"]] == ["booked"] * 2 + ["cancelled"] * 4
    assert send_due(app, clock.now) == "sent=1 skipped=0 failed=0"
    assert send_due(app, clock.now + dt.timedelta(minutes=5)) == "sent=0 skipped=0 failed=0"
    (text,) = twilio.messages
    assert text.to == patient_json(1)["phone"]
    assert "after your review, your visits from Sat 5 Dec" in text.body
    assert "ketamine" not in text.body.lower() and "infusion" not in text.body.lower()


def test_list_items_are_named_by_index_and_instants_are_iso_strings(client, session):
    setup(session)
    iso = [s.astimezone(LA).isoformat() for s in STARTS]
    cases = [
        ({"starts": [None, *iso[1:]]}, "starts[0]", "starts.0"),
        ({"starts": [*iso[:3], "9999-01-01T10:00:00-08:00", *iso[4:]]}, "starts[3]", "starts.3"),
        ({"starts": [1, 2, 3, 4, 5, 6]}, "starts[0]", "starts.0"),
        ({"starts": [str(int(s.timestamp())) for s in STARTS]}, "starts[0]", None),
        ({"sms_consent": "yes"}, "sms_consent", None),
        ({"sms_consent": 1}, "sms_consent", None),
        ({"patient": {**patient_json(1), "name": ""}}, "patient.name", None),
    ]
    for change, field, dotted in cases:
        r = client.post("/api/v1/courses", json={**body(), **change})
        assert r.status_code == 422, (change, r.get_json())
        fields = r.get_json()["error"]["fields"]
        assert field in fields and dotted not in fields, (change, fields)
    r = client.post("/api/v1/courses", json={**body(), "starts": [1, 2, 3, 4, 5, 6]})
    assert "ISO 8601 date and time with an offset" in r.get_json()["error"]["fields"]["starts[0]"]
    for first_start in (1796000000, "1796000000", True):
        r = client.post(
            "/api/v1/courses/plan",
            json={"location": "sf", "course": "induction", "first_start": first_start},
        )
        assert r.status_code == 422 and "first_start" in r.get_json()["error"]["fields"]
    assert appointments(session) == 0
    r = client.post("/api/v1/courses", json=body())  # ISO strings and true: as before
    assert r.status_code == 201, r.get_json()


def test_every_instant_date_and_boolean_in_a_body_refuses_numbers_and_words():
    import datetime as dt
    import typing

    from pydantic import AwareDatetime, BaseModel, ValidationError

    from scheduler.web import schemas

    checked = set()
    for model in vars(schemas).values():
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        if not model.__name__.endswith("In"):
            continue
        for name, info in model.model_fields.items():
            if info.annotation in (AwareDatetime, AwareDatetime | None):
                bad: tuple[object, ...] = (1796000000, "1796000000", 5.0, True)
                message = "ISO 8601 date and time with an offset"
            elif "bool" in str(info.annotation):
                bad, message = ("yes", "true", 1, 0, "on"), "true or false"
            elif any(
                a is dt.date or typing.get_args(a)[:1] == (dt.date,)
                for a in (info.annotation, *typing.get_args(info.annotation))
            ):
                bad, message = (0, 1796000000, "1796000000", 5.0), "YYYY-MM-DD"
            else:
                continue
            checked.add(f"{model.__name__}.{name}")
            for value in bad:
                with pytest.raises(ValidationError) as caught:
                    model.model_validate({name: value})
                errors = [e for e in caught.value.errors() if e["loc"] == (name,)]
                assert errors and message in errors[0]["msg"], (model, name, value)
    assert {
        "AppointmentIn.start",
        "AppointmentIn.sms_consent",
        "AppointmentIn.override_clearance",
        "CourseIn.sms_consent",
        "CoursePlanIn.first_start",
        "RescheduleIn.start",
        "WaitlistOfferIn.start",
        "WaitlistIn.sms_consent",
        "StaffingIn.rules",
        "ShiftIn.start",
        "BlockIn.end",
        "PatientIn.date_of_birth",
        "ClearancesIn.until",
        "PatientPatchIn.date_of_birth",
        "WaitlistIn.earliest",
        "WaitlistIn.latest",
    } <= checked
