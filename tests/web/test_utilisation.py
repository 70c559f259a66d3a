"""The utilisation API (contract "Reports") and its staff page, on both databases: JSON and CSV
agree, bad ranges name the field, the page shows both heatmaps as tables and the rates."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest

from scheduler.services import booking
from scheduler.services.settings import ClinicSettings
from tests.test_staffing_support import rota
from tests.web.staff_support import DAY, at, book, make_clinic, sign_in

FIELDS = [
    "weekday",
    "hour",
    "open_chair_minutes",
    "booked_chair_minutes",
    "nurse_capacity_minutes",
    "nurse_load_minutes",
]


@pytest.fixture
def clinic(session, clock):
    clinic = make_clinic(session)
    rota(session, clinic.sf, nurses=2, hours=(dt.time(8), dt.time(18)), rules=False)
    a = book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, 1)
    book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, 2)
    book(session, clinic.sf, clinic.consult, at(DAY, 11), clock.now, 3)
    gone = book(session, clinic.sf, clinic.infusion, at(DAY, 14), clock.now, 4)
    late = clock.now + dt.timedelta(hours=10)  # 20 hours before its start
    booking.cancel(session, gone, now=late, settings=ClinicSettings(), by_staff=True)
    session.commit()
    return clinic, a


def _auth(clinic: Any, role: str = "front_desk") -> dict[str, str]:
    return {"Authorization": f"Bearer {clinic.tokens[role]}"}


URL = f"/api/v1/locations/sf/utilisation?from={DAY}&to={DAY + dt.timedelta(days=6)}"


def test_json_has_every_cell_and_csv_says_the_same(client, clinic):
    c, _ = clinic
    r = client.get(URL, headers=_auth(c))
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["timezone"] == "America/Los_Angeles"
    assert len(body["cells"]) == 168
    tuesday_10 = next(x for x in body["cells"] if (x["weekday"], x["hour"]) == (1, 10))
    # Two infusions 10:00-10:40 with 10 minutes of prep before (09:50) and recovery after.
    assert tuesday_10["booked_chair_minutes"] == 2 * 50
    assert tuesday_10["nurse_load_minutes"] == 2 * 50
    assert tuesday_10["open_chair_minutes"] == 4 * 60
    assert tuesday_10["nurse_capacity_minutes"] == 2 * 4 * 60
    tuesday_11 = next(x for x in body["cells"] if (x["weekday"], x["hour"]) == (1, 11))
    assert tuesday_11["booked_chair_minutes"] == 0  # the consultation is in a room
    assert body["late_cancel_rate"] == pytest.approx(1 / 4)  # 20 h before, 24 h rule
    assert body["no_show_rate"] is None  # nothing was due yet

    r = client.get(URL, headers={**_auth(c), "Accept": "text/csv"})
    assert r.status_code == 200
    assert r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert list(rows[0]) == FIELDS
    assert [{k: int(v) for k, v in row.items()} for row in rows] == body["cells"]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("to=2026-12-01", 400, "from"),
        ("from=2026-12-01&to=nope", 400, "to"),
        ("from=2026-12-08&to=2026-12-01", 400, "to"),
        ("from=2026-01-01&to=2026-12-31", 400, "to"),
        ("from=0001-01-01&to=0001-01-02", 400, "from"),
        ("from=9999-12-30&to=9999-12-31", 400, "to"),
        ("from=2201-01-01&to=2201-01-02", 400, "from"),
    ],
    ids=["missing", "not-a-date", "backwards", "too-long", "year-1", "year-9999", "year-2201"],
)
def test_bad_ranges_name_the_field(client, clinic, query, status, field):
    """Query parameters are refused as the availability endpoint refuses them: 400 invalid."""
    c, _ = clinic
    r = client.get(f"/api/v1/locations/sf/utilisation?{query}", headers=_auth(c))
    assert r.status_code == status
    assert r.get_json()["error"]["code"] == "invalid"
    assert field in r.get_json()["error"]["fields"]


def test_the_last_supported_month_is_reported(client, clinic):
    """Every date endpoint reads 1900-01-01 to 2200-12-31; so does the report."""
    c, _ = clinic
    r = client.get(
        "/api/v1/locations/sf/utilisation?from=2200-12-01&to=2200-12-31", headers=_auth(c)
    )
    assert r.status_code == 200, r.get_json()


def test_openapi_lists_the_report_with_json_and_csv(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    op = doc["paths"]["/api/v1/locations/{location}/utilisation"]["get"]
    assert set(op["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert {p["name"] for p in op["parameters"]} >= {"location", "from", "to"}


def test_staff_page_shows_tables_rates_and_the_csv_link(client, clinic, clock):
    c, _ = clinic
    sign_in(client, c.users["nurse"].email)
    home = client.get("/staff/").get_data(as_text=True)
    assert "/staff/sf/utilisation" in home  # in the staff nav
    page = client.get(f"/staff/sf/utilisation?from={DAY}&to={DAY + dt.timedelta(days=6)}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="chairs-heat"' in html and 'id="nurses-heat"' in html
    assert '<th scope="col">Tuesday</th>' in html
    assert "100 of 240 chair-min" in html  # Tuesday 10:00
    assert "25.0%" in html  # late-cancel rate
    csv_url = f"/staff/sf/utilisation.csv?from={DAY}&amp;to={DAY + dt.timedelta(days=6)}"
    assert csv_url in html
    r = client.get(csv_url.replace("&amp;", "&"))
    api = client.get(URL, headers={**_auth(c), "Accept": "text/csv"})
    assert r.status_code == 200 and r.get_data() == api.get_data()
    # Defaults: the four weeks before today.
    default = client.get("/staff/sf/utilisation").get_data(as_text=True)
    today = dt.date(2026, 11, 30)  # the suite's now, in Los Angeles
    assert f'value="{today - dt.timedelta(days=28)}"' in default
    assert f'value="{today - dt.timedelta(days=1)}"' in default
    assert client.get("/staff/sf/utilisation?from=2026-12-08&to=2026-12-01").status_code == 422
    assert client.get("/staff/sf/utilisation?from=x").status_code == 400
