"""Staff calendar feeds: secret per-location and per-chair URLs, initials only, revocable."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select

from scheduler.models import Appointment, AuditEntry, CalendarFeed, Resource
from scheduler.services import booking
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from tests import icaljs
from tests.factories import make_location, make_service, make_staff
from tests.icaljs import every_ics_checked  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("every_ics_checked")

SETTINGS = ClinicSettings(clinic_name="Harbor Clinic")
LA = ZoneInfo("America/Los_Angeles")


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **app_config,
        "PUBLIC_BASE_URL": "https://book.clinic.example",
        "CLINIC_NAME": "Harbor Clinic",
    }


def _book(session: Any, clock: Any, day: int, hour: int, n: int, chair: Resource) -> Appointment:
    return booking.book(
        session,
        booking.BookingRequest(
            location="sf",
            service="infusion",
            start=dt.datetime(2026, 12, day, hour, 0, tzinfo=LA),
            patient=PatientDetails(
                f"Zoë Patient{n} Ångström", f"+1415555{n:04d}", f"zoe{n}@example.com"
            ),
            note="private note",
            resource_id=chair.id,
            source="staff",
        ),
        now=clock.now,
        settings=SETTINGS,
    )


@pytest.fixture
def clinic(session: Any, clock: Any) -> dict[str, Any]:
    sf = make_location(session, slug="sf", name="Mission Bay")
    adl = make_location(session, slug="adl", timezone="Australia/Adelaide")
    make_service(session, [sf], slug="infusion", name="Ketamine infusion")
    _, admin = make_staff(session, role="admin")
    _, desk = make_staff(session, role="front_desk", locations=[sf])
    _, other_manager = make_staff(session, role="manager", locations=[adl])
    chair1, chair2 = sf.resources[0], sf.resources[1]
    session.commit()
    appts = [
        _book(session, clock, 2, 10, 1, chair1),
        _book(session, clock, 2, 10, 2, chair2),
        _book(session, clock, 3, 14, 3, chair1),
    ]
    cancelled = _book(session, clock, 4, 15, 4, chair2)
    booking.cancel(session, cancelled, now=clock.now, settings=SETTINGS, by_staff=True)
    session.commit()
    return {
        "admin": admin,
        "desk": desk,
        "other_manager": other_manager,
        "appts": appts,
        "cancelled": cancelled,
        "chair1": chair1,
    }


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(client: Any, token: str, **body: Any) -> Any:
    return client.post("/api/v1/locations/sf/feeds", json=body, headers=auth(token))


def fetch(client: Any, url: str) -> Any:
    return client.get(urlsplit(url).path)


def test_location_feed_lists_upcoming_visits_with_initials_only(
    client: Any, session: Any, clinic: dict[str, Any]
) -> None:
    r = create(client, clinic["admin"], label="Front desk iPad")
    assert r.status_code == 201, r.get_json()
    out = r.get_json()
    assert out["url"].startswith("https://book.clinic.example/feeds/")
    assert out["url"].endswith(".ics")
    assert out["webcal_url"] == "webcal://" + out["url"].removeprefix("https://")
    assert out["resource"] is None and out["label"] == "Front desk iPad"

    r = fetch(client, out["url"])
    assert r.status_code == 200
    assert r.mimetype == "text/calendar"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    cal = Calendar.from_ical(r.data)
    events = cal.walk("VEVENT")
    assert len(events) == 3  # the cancelled one is not there
    summaries = sorted(str(e["SUMMARY"]) for e in events)
    assert summaries == [
        "Z.Å. · Infusion · Chair 1",
        "Z.Å. · Infusion · Chair 1",
        "Z.Å. · Infusion · Chair 2",
    ]
    for secret in ("Patient", "zoe", "@example.com", "+1415", "Ketamine", "private note"):
        assert secret.encode() not in r.data
    assert str(cal["X-WR-CALNAME"]) == "Harbor Clinic Mission Bay"

    by_uid = {f"feed-{a.ics_uid}": a for a in clinic["appts"]}
    (doc,) = icaljs.parse([r.data])
    assert doc["method"] == "PUBLISH"
    for event in doc["events"]:
        appt = by_uid[event["uid"]]
        assert dt.datetime.fromisoformat(event["start"]) == appt.start_at
        assert dt.datetime.fromisoformat(event["end"]) == appt.end_at


def test_chair_feed_has_only_that_chairs_visits(
    client: Any, session: Any, clinic: dict[str, Any]
) -> None:
    r = create(client, clinic["admin"], resource="Chair 2")
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["resource"] == "Chair 2"
    cal = Calendar.from_ical(fetch(client, r.get_json()["url"]).data)
    assert [str(e["SUMMARY"]) for e in cal.walk("VEVENT")] == ["Z.Å. · Infusion · Chair 2"]
    assert str(cal["X-WR-CALNAME"]) == "Harbor Clinic Mission Bay · Chair 2"


def test_a_revoked_feed_stops_working_at_once(
    client: Any, session: Any, clinic: dict[str, Any]
) -> None:
    keep = create(client, clinic["admin"]).get_json()
    gone = create(client, clinic["admin"]).get_json()
    assert fetch(client, gone["url"]).status_code == 200
    r = client.delete(f"/api/v1/locations/sf/feeds/{gone['id']}", headers=auth(clinic["admin"]))
    assert r.status_code == 204
    assert fetch(client, gone["url"]).status_code == 404
    assert fetch(client, keep["url"]).status_code == 200
    listed = client.get("/api/v1/locations/sf/feeds", headers=auth(clinic["desk"])).get_json()
    assert {(f["id"], f["revoked"]) for f in listed} == {(keep["id"], False), (gone["id"], True)}
    assert all("url" not in f for f in listed)
    actions = session.scalars(
        select(AuditEntry.action)
        .order_by(AuditEntry.id)
        .where(AuditEntry.action.like("calendar_feed.%"))
    ).all()
    assert actions == ["calendar_feed.created", "calendar_feed.created", "calendar_feed.revoked"]
    details = " ".join(session.scalars(select(AuditEntry.details)).all())
    assert urlsplit(gone["url"]).path.split("/")[-1].removesuffix(".ics") not in details


def test_feed_urls_are_secret(client: Any, session: Any, clinic: dict[str, Any]) -> None:
    out = create(client, clinic["admin"]).get_json()
    token = urlsplit(out["url"]).path.removeprefix("/feeds/").removesuffix(".ics")
    assert len(token) >= 40
    assert client.get(f"/feeds/{token[:-1]}x.ics").status_code == 404
    assert client.get("/feeds/short.ics").status_code == 404
    # Only a hash is stored: the database alone does not give the URL away.
    session.expire_all()
    feed = session.scalars(select(CalendarFeed)).one()
    assert token not in (feed.token_hash, feed.label)
    assert feed.last_used_at is None
    fetch(client, out["url"])
    session.expire_all()
    assert session.scalars(select(CalendarFeed)).one().last_used_at is not None


def test_feed_moves_with_the_clock(
    client: Any, session: Any, clinic: dict[str, Any], clock: Any
) -> None:
    out = create(client, clinic["admin"]).get_json()
    clock.now = dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.UTC)  # a week after 3 Dec 04:00 PST
    events = Calendar.from_ical(fetch(client, out["url"]).data).walk("VEVENT")
    assert len(events) == 1  # only the visit on the 3rd is within the last week


@pytest.mark.parametrize(
    ("who", "method", "path", "status"),
    [
        (None, "post", "/api/v1/locations/sf/feeds", 401),
        (None, "get", "/api/v1/locations/sf/feeds", 401),
        ("desk", "post", "/api/v1/locations/sf/feeds", 403),
        ("desk", "get", "/api/v1/locations/sf/feeds", 200),
        ("other_manager", "get", "/api/v1/locations/sf/feeds", 403),
        ("other_manager", "post", "/api/v1/locations/sf/feeds", 403),
        ("other_manager", "post", "/api/v1/locations/adl/feeds", 201),
        ("desk", "delete", "/api/v1/locations/sf/feeds/1", 403),
        ("admin", "delete", "/api/v1/locations/sf/feeds/999", 404),
    ],
)
def test_feed_management_needs_the_right_staff(
    client: Any, clinic: dict[str, Any], who: str | None, method: str, path: str, status: int
) -> None:
    headers = auth(clinic[who]) if who else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if method == "post":
        kwargs["json"] = {}
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.get_json()
    if status >= 400:
        assert "error" in r.get_json()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"resource": "Chair 99"}, 404, "resource"),
        ({"label": "x" * 101}, 422, "label"),
        ({"resource": 5}, 422, "resource"),
    ],
)
def test_bad_feed_requests_name_the_field(
    client: Any, clinic: dict[str, Any], body: dict[str, Any], status: int, field: str
) -> None:
    r = create(client, clinic["admin"], **body)
    assert r.status_code == status
    assert field in r.get_json()["error"].get("fields", {})


def test_feeds_from_the_cli(app: Any, client: Any, session: Any, clinic: dict[str, Any]) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["feeds", "create", "sf", "--chair", "Chair 1", "--label", "Nurse"])
    assert result.exit_code == 0, result.output
    feed_line, url, webcal = result.output.strip().splitlines()
    feed_id = int(feed_line.split()[1])
    assert webcal.startswith("webcal://book.clinic.example/feeds/")
    events = Calendar.from_ical(fetch(client, url).data).walk("VEVENT")
    assert len(events) == 2
    listed = runner.invoke(args=["feeds", "list", "sf"])
    assert f"{feed_id}\tactive\tChair 1\tNurse" in listed.output
    assert runner.invoke(args=["feeds", "revoke", str(feed_id)]).exit_code == 0
    assert fetch(client, url).status_code == 404
    bad = runner.invoke(args=["feeds", "create", "sf", "--chair", "Chair 99"])
    assert bad.exit_code != 0 and "No such chair" in bad.output


def test_feed_endpoints_are_in_the_openapi_document(client: Any) -> None:
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert set(paths["/api/v1/locations/{location}/feeds"]) == {"get", "post"}
    assert "delete" in paths["/api/v1/locations/{location}/feeds/{feed_id}"]
