from tests.factories import make_location, make_service


def test_locations_lists_what_exists(session, client):
    make_location(session, slug="sf", timezone="America/Los_Angeles")
    session.commit()
    response = client.get("/api/v1/locations")
    assert response.status_code == 200
    assert [x["slug"] for x in response.get_json()] == ["sf"]


def test_booking_round_trip(session, client):
    loc = make_location(session, slug="sf")
    make_service(session, [loc], slug="infusion")
    session.commit()
    avail = client.get("/api/v1/locations/sf/availability?service=infusion&from=2026-12-01&days=1")
    assert avail.status_code == 200, avail.get_json()
    slots = avail.get_json()["slots"]
    # Opening 09:00 with 10 minutes of prep: the first start is the one whose prep opens the day.
    assert slots[0]["start"] == "2026-12-01T09:10:00-08:00"
    body = {
        "location": "sf",
        "service": "infusion",
        "start": slots[0]["start"],
        "patient": {"name": "A", "phone": "+14155550123", "email": "a@example.com"},
    }
    r = client.post("/api/v1/appointments", json=body)
    assert r.status_code == 201, r.get_json()
