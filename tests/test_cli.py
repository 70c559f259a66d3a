"""The command line: db upgrade, seed-demo (idempotent), create-staff, and `flask run` serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import func, select

from scheduler.models import Location, Resource, Service, StaffUser

ROOT = Path(__file__).resolve().parent.parent


def test_seed_demo_creates_the_clinic_once(app, session):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    assert "admin@chairside.example" in first.output
    assert "Admin password:" in first.output and "Admin API token: cs_" in first.output
    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0 and "already present" in second.output
    session.expire_all()
    locations = session.scalars(select(Location)).all()
    assert len(locations) >= 2
    assert "America/Los_Angeles" in {x.timezone for x in locations}
    assert len({x.timezone for x in locations}) >= 2
    for loc in locations:
        kinds = [r.kind for r in loc.resources]
        assert kinds.count("chair") >= 4 and kinds.count("room") >= 1
        assert loc.hours
    services = {x.slug: x for x in session.scalars(select(Service))}
    assert services["initial-consultation"].duration_minutes == 60
    assert services["initial-consultation"].resource_kind == "room"
    assert services["infusion"].duration_minutes == 40
    assert services["infusion"].prep_minutes + services["infusion"].recovery_minutes == 20
    assert services["long-infusion"].duration_minutes == 240
    assert session.scalar(select(func.count()).select_from(StaffUser)) == 1
    assert session.scalar(select(func.count()).select_from(Resource)) == 14


def test_seeded_token_works_for_the_staff_api(app, session, client):
    output = app.test_cli_runner().invoke(args=["seed-demo"]).output
    token = output.split("Admin API token:")[1].split()[0]
    r = client.get(
        "/api/v1/locations/sf-mission/calendar?date=2026-12-01",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200
    assert len(r.get_json()["resources"]) == 7


def test_create_staff_refuses_bad_input_and_adds_a_user(app, session):
    runner = app.test_cli_runner()
    app.test_cli_runner().invoke(args=["seed-demo"])
    bad = runner.invoke(
        args=["create-staff", "--email", "x", "--name", "X", "--role", "nurse", "--password", "p"]
    )
    assert bad.exit_code != 0
    good = runner.invoke(
        args=[
            "create-staff",
            "--email",
            "nurse@clinic.example",
            "--name",
            "Nina",
            "--role",
            "nurse",
            "--location",
            "sf-mission",
            "--password",
            "a long enough secret",
            "--token",
        ]
    )
    assert good.exit_code == 0, good.output
    assert "a long enough secret" not in good.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fresh_sqlite_upgrades_seeds_and_serves(tmp_path):
    """What `make run` does, on a fresh instance folder: the service answers with the demo data."""
    env = {
        **os.environ,
        "CHAIRSIDE_INSTANCE": str(tmp_path),
        "SCHEDULER_EMBEDDED_WORKER": "1",
        "FLASK_APP": "scheduler",
    }
    for name in ("SMTP_HOST", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        env.pop(name, None)
    env.pop("DATABASE_URL", None)
    flask = [sys.executable, "-m", "flask", "--app", "scheduler"]
    for args in (["db", "upgrade"], ["seed-demo"]):
        done = subprocess.run(flask + args, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "chairside.sqlite3").exists()
    port = _free_port()
    log_path = tmp_path / "server.log"
    log_file = log_path.open("w")
    server = subprocess.Popen(
        flask + ["run", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            try:
                r = requests.get(f"http://127.0.0.1:{port}/api/v1/locations", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError("flask run did not answer")
        assert r.status_code == 200
        assert {x["slug"] for x in r.json()} == {"sf-mission", "nyc-flatiron"}
        # Booking on the embedded default: the invite goes to the log, without the address.
        base = f"http://127.0.0.1:{port}/api/v1"
        slot = requests.get(
            f"{base}/locations/sf-mission/availability",
            params={"service": "initial-consultation", "days": 14},
            timeout=10,
        ).json()["slots"][0]
        body = {
            "location": "sf-mission",
            "service": "initial-consultation",  # infusions need a clearance first
            "start": slot["start"],
            "patient": {"name": "Ada", "phone": "+14155550142", "email": "ada@example.com"},
            "sms_consent": True,
        }
        assert requests.post(f"{base}/appointments", json=body, timeout=10).status_code == 201
        for _ in range(100):
            if "mail not sent (SMTP_HOST is not set)" in log_path.read_text():
                break
            time.sleep(0.1)
        logged = log_path.read_text()
        assert "mail not sent (SMTP_HOST is not set)" in logged
        assert "embedded reminder worker started" in logged
        assert "+14155550142" not in logged and "ada@example.com" not in logged
    finally:
        server.terminate()
        server.wait(10)
        log_file.close()
