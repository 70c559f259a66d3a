"""The JSON API's rate limits: bookings tight, reads looser, staff per token; every 429 says when
to come back; and several gunicorn workers share one count through a real Redis."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.factories import make_location, make_service, make_staff, patient_json

ROOT = Path(__file__).resolve().parents[2]


def _assert_429(response: Any) -> None:
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert body["error"]["code"] == "too_many_requests"
    assert "Retry-After" in body["error"]["message"]


LIMITS = {
    "RATELIMIT_ENABLED": True,
    "API_BOOKING_RATELIMIT": "3 per minute",
    "API_READ_RATELIMIT": "5 per minute",
    "API_STAFF_RATELIMIT": "4 per minute",
}


class TestLimits:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, **LIMITS}

    @pytest.fixture
    def clinic(self, session):
        sf = make_location(session, slug="sf")
        make_service(session, [sf], slug="infusion")
        tokens = [make_staff(session, role="admin")[1] for _ in range(2)]
        session.commit()
        return tokens

    def test_booking_writes_share_one_tight_limit_per_address(self, client, clinic):
        codes = [client.post("/api/v1/appointments", json={}).status_code for _ in range(3)]
        assert codes == [422, 422, 422]
        _assert_429(client.post("/api/v1/appointments", json={}))
        # Cancelling and moving by token count in the same bucket, and so do the waitlist's
        # joins and claims.
        _assert_429(client.post("/api/v1/manage/" + "x" * 43 + "/cancel"))
        _assert_429(client.post("/api/v1/waitlist", json={}))
        _assert_429(client.post("/api/v1/waitlist/offers/" + "x" * 32 + "/claim"))
        # Reads are counted apart.
        assert client.get("/api/v1/locations").status_code == 200

    def test_reads_are_limited_more_loosely(self, client, clinic):
        codes = [client.get("/api/v1/locations/sf/services").status_code for _ in range(5)]
        assert codes == [200] * 5
        _assert_429(client.get("/api/v1/locations"))
        assert client.post("/api/v1/appointments", json={}).status_code == 422

    def test_staff_endpoints_count_per_token(self, client, clinic):
        first, second = ({"Authorization": f"Bearer {t}"} for t in clinic)
        url = "/api/v1/locations/sf/calendar?date=2026-12-01"
        assert [client.get(url, headers=first).status_code for _ in range(4)] == [200] * 4
        _assert_429(client.get(url, headers=first))
        _assert_429(client.get("/api/v1/locations/sf/feeds", headers=first))
        assert client.get(url, headers=second).status_code == 200
        # A staff token's use leaves the address's public budget alone.
        assert client.get("/api/v1/locations").status_code == 200

    def test_a_made_up_forwarded_address_buys_no_fresh_budget(self, client, clinic):
        codes = [
            client.get("/api/v1/locations", headers={"X-Forwarded-For": f"203.0.113.{i}"})
            for i in range(6)
        ]
        assert [r.status_code for r in codes] == [200] * 5 + [429]

    def test_guessing_staff_tokens_stops_at_the_address_read_limit(self, client, clinic):
        url = "/api/v1/locations/sf/calendar?date=2026-12-01"

        def guess(i: int) -> Any:
            return client.get(url, headers={"Authorization": f"Bearer cs_guess{i}"})

        assert [guess(i).status_code for i in range(5)] == [401] * 5
        _assert_429(guess(99))
        # This address's public reads are counted apart.
        assert client.get("/api/v1/locations").status_code == 200

    def test_page_limits_say_when_to_come_back(self, app, client, clinic):
        app.config["PATIENT_TOKEN_RATELIMIT"] = "1 per minute"
        assert client.get("/a/" + "C" * 43).status_code == 404
        page = client.get("/a/" + "C" * 43)
        assert page.status_code == 429
        assert int(page.headers["Retry-After"]) >= 1


def test_every_operation_documents_429_and_503_with_retry_after(client):
    document = client.get("/api/v1/openapi.json").get_json()
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert len(operations) > 10
    for op in operations:
        for status in ("429", "503"):
            assert "Retry-After" in op["responses"][status]["headers"], op["operationId"]


class TestBehindOneProxy:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, **LIMITS, "TRUSTED_PROXY_HOPS": 1}

    @pytest.fixture
    def clinic(self, session):
        make_location(session, slug="sf")
        session.commit()

    def test_each_forwarded_client_counts_on_its_own(self, client, clinic):
        def read(address: str) -> int:
            headers = {"X-Forwarded-For": address}
            return int(client.get("/api/v1/locations", headers=headers).status_code)

        # The proxy's forwarded address is the client: each counts on its own.
        assert [read("198.51.100.1") for _ in range(6)] == [200] * 5 + [429]
        assert read("198.51.100.2") == 200


class TestRedisUnreachable:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        dead = f"redis://127.0.0.1:{_free_port()}/0"
        return {**app_config, **LIMITS, "RATELIMIT_STORAGE_URI": dead}

    def test_limits_fall_back_to_memory_instead_of_failing_requests(self, client, session):
        codes = [client.get("/api/v1/locations").status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]


# --- several processes, one count -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("gunicorn exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not start")


LIMIT = 5
BURST = 15


def test_a_flood_of_bookings_across_gunicorn_workers_stops_at_the_shared_limit(
    db_url, session, redis_url, tmp_path
):
    sf = make_location(session, slug="sf", chairs=4)
    make_service(session, [sf], slug="infusion")
    session.commit()
    la = ZoneInfo("America/Los_Angeles")
    day = dt.datetime.now(la).date() + dt.timedelta(days=3)
    starts = [
        dt.datetime.combine(day, dt.time(10), tzinfo=la) + dt.timedelta(minutes=15 * i)
        for i in range(BURST)
    ]
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": db_url,
        "RATELIMIT_STORAGE_URI": redis_url,
        "API_BOOKING_RATELIMIT": f"{LIMIT} per minute",
        "SCHEDULER_EMBEDDED_WORKER": "0",
        "MAIL_DELIVER_AFTER_REQUEST": "0",
        "SECRET_KEY": "flood-test",
        "CHAIRSIDE_INSTANCE": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "3", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "scheduler:create_app()"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for(port, proc)

        def book(i: int) -> requests.Response:
            body = {
                "location": "sf",
                "service": "infusion",
                "start": starts[i].isoformat(),
                "patient": patient_json(100 + i),
                "sms_consent": False,
            }
            return requests.post(
                f"http://127.0.0.1:{port}/api/v1/appointments", json=body, timeout=60
            )

        with ThreadPoolExecutor(max_workers=BURST) as pool:
            responses = list(pool.map(book, range(BURST)))
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    codes = [r.status_code for r in responses]
    assert codes.count(201) == LIMIT, (codes, stderr.decode()[-2000:])
    for response in responses:
        if response.status_code != 201:
            _assert_429(response)
