"""Operators: the app runs from any directory once installed, commands fail with one line,
passwords can be reset, `send-due --now` leaves mail times alone, and logs tell one outcome."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.models import ApiToken, MailOutbox, MailStatus, StaffUser
from scheduler.services import mail, staff
from tests.smtpinbox import Inbox, smtp_config
from tests.test_mail import PATIENT, book, call, setup_clinic

ROOT = Path(__file__).resolve().parent.parent


def installed_copy(tmp_path: Path) -> Path:
    """The package laid out as pyproject.toml installs it (templates and migrations inside),
    without the repository around it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "scheduler", site / "scheduler", ignore=shutil.ignore_patterns("__pycache__")
    )
    for package, source in project["package-dir"].items():
        target = site / package.replace(".", "/")
        if not target.exists():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
    assert set(project["packages"]) >= set(project["package-dir"])
    return site


def run_elsewhere(
    site: Path, cwd: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    code = "import sys; from scheduler.cli import main; sys.argv = ['chairside', *sys.argv[1:]]; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_installed_copy_runs_from_any_directory(tmp_path: Path) -> None:
    site = installed_copy(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "DATABASE_URL", "SMTP_HOST"}
    }
    env["CHAIRSIDE_INSTANCE"] = str(tmp_path / "instance")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'ops.sqlite3'}"

    # Not migrated yet: one line that says what to do, a non-zero exit, no traceback.
    seeded = run_elsewhere(site, elsewhere, "seed-demo", env=env)
    assert seeded.returncode != 0
    assert "run `flask --app scheduler db upgrade` first" in seeded.stderr
    assert "Traceback" not in seeded.stderr and len(seeded.stderr.strip().splitlines()) == 1

    upgraded = run_elsewhere(site, elsewhere, "db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    seeded = run_elsewhere(site, elsewhere, "seed-demo", env=env)
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    assert "Admin password:" in seeded.stdout
    # The pages render from the packaged templates.
    code = (
        "from scheduler import create_app; c = create_app().test_client(); "
        "r = c.get('/'); print(r.status_code, b'</html>' in r.data)"
    )
    page = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        env={**env, "PYTHONPATH": str(site), "SCHEDULER_EMBEDDED_WORKER": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert page.stdout.split() == ["200", "True"], page.stderr[-2000:]
    assert (tmp_path / "instance" / "secret_key").exists()
    assert not (elsewhere / "instance").exists()


def test_reset_password_sets_a_new_one_unlocks_and_ends_sessions(app: Any, session: Any) -> None:
    runner = app.test_cli_runner()
    hasher = staff.password_hasher(app.config["ARGON2_PARAMS"])
    user = staff.create_staff(
        session,
        email="admin@clinic.example",
        name="Ada",
        password="old-password-1",
        role="admin",
        hasher=hasher,
    )
    staff.issue_token(session, user, dt.datetime.now(dt.UTC))
    at = dt.datetime.now(dt.UTC)
    for _ in range(5):  # a lockout for the address
        staff.record_failure(
            session, "admin@clinic.example", now=at, attempts=5, pause=dt.timedelta(hours=1)
        )
    assert staff.locked_until(session, "admin@clinic.example", now=at) is not None
    session.commit()
    old_hash = user.password_hash

    result = runner.invoke(args=["reset-password", "--email", "ADMIN@clinic.example"])
    assert result.exit_code == 0, result.output
    new_password = result.output.split("New password (shown once): ")[1].strip()
    session.expire_all()
    user = session.scalars(select(StaffUser)).one()
    assert user.password_hash != old_hash  # the session fingerprint changes with it
    assert staff.verify_password(hasher, user, new_password)
    assert staff.locked_until(session, "admin@clinic.example", now=at) is None
    assert session.scalars(select(ApiToken.revoked_at)).one() is None

    result = runner.invoke(
        args=[
            "reset-password",
            "--email",
            "admin@clinic.example",
            "--password-stdin",
            "--revoke-tokens",
        ],
        input="chosen-password-2\n",
    )
    assert result.exit_code == 0, result.output
    assert "New password" not in result.output and "API tokens revoked: 1" in result.output
    session.expire_all()
    assert staff.verify_password(
        hasher, session.scalars(select(StaffUser)).one(), "chosen-password-2"
    )

    for args, message in [
        (["--email", "nobody@clinic.example"], "no such staff user"),
        (["--email", "admin@clinic.example", "--password-stdin"], "at least 10 characters"),
    ]:
        result = runner.invoke(args=["reset-password", *args], input="short\n")
        assert result.exit_code == 2 and message in result.output
        assert "{" not in result.output


class TestSendDueWithNow:
    @pytest.fixture
    def inbox(self) -> Any:
        box = Inbox()  # not started: the SMTP port refuses connections
        yield box
        box.stop()

    @pytest.fixture
    def app_config(self, app_config: dict[str, Any], inbox: Inbox) -> dict[str, Any]:
        return {**app_config, **smtp_config(inbox)}

    def test_a_future_now_leaves_mail_retry_times_alone(
        self, app: Any, client: Any, session: Any, clock: Any
    ) -> None:
        setup_clinic(session)
        book(client, "2026-12-02T10:00:00-08:00")  # the prompt send fails: retry in a minute
        (row,) = session.scalars(select(MailOutbox)).all()
        before = (row.status, row.attempts, row.next_attempt_at)
        session.rollback()  # no open transaction (SQLite's write lock) while the CLI runs
        assert before[0] == MailStatus.PENDING and before[2] <= clock.now + dt.timedelta(hours=1)
        later = (clock.now + dt.timedelta(days=14)).isoformat()
        result = app.test_cli_runner().invoke(args=["reminders", "send-due", "--now", later])
        assert result.exit_code == 0, result.output
        session.expire_all()
        row = session.get(MailOutbox, row.id)
        assert (row.status, row.attempts, row.next_attempt_at) == before
        session.rollback()
        # At real time (the app's clock) the mail pass still runs: once due, it is retried.
        clock.advance(hours=1)
        app.test_cli_runner().invoke(args=["reminders", "send-due", "--now", later])
        session.expire_all()
        row = session.get(MailOutbox, row.id)
        assert row.attempts == before[1] + 1
        assert row.next_attempt_at <= clock.now + mail.MAX_RETRY


def test_the_log_tells_one_outcome_per_mail_and_sms(
    app: Any, client: Any, session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from scheduler import jobs

    setup_clinic(session)
    caplog.set_level(logging.INFO)
    body = {
        "location": "sf",
        "service": "infusion",
        "start": "2026-12-02T10:00:00-08:00",
        "patient": PATIENT,
        "sms_consent": True,
    }
    r = call(client, "POST", "/api/v1/appointments", json=body)  # no SMTP_HOST: the log sender
    assert r.status_code == 201, r.get_json()
    mail_lines = [r.getMessage() for r in caplog.records if r.name == "scheduler.mail"]
    assert len(mail_lines) == 1 and "mail not sent" in mail_lines[0], mail_lines
    caplog.clear()
    app.config["CLOCK"].advance(hours=3)  # the 48h reminder is due (11:00 local)
    jobs.dispatch_once(app, app.config["CLOCK"]())
    lines = [
        r.getMessage()
        for r in caplog.records
        if "SMS" in r.getMessage() or "reminders:" in r.getMessage()
    ]
    assert any("SMS not sent" in line for line in lines), lines
    assert not any("sent=" in line.replace("logged-not-sent=", "") for line in lines), lines


def test_docs_live_in_the_repository_and_name_every_setting() -> None:
    texts = {p: p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
    texts |= {p: p.read_text() for d in ("scheduler", "tests") for p in (ROOT / d).rglob("*.py")}
    outside = "../" + "shared"
    assert [str(p) for p, text in texts.items() if outside in text] == []

    source = (ROOT / "scheduler" / "config.py").read_text()
    settings = set(re.findall(r'(?:environ\.get|_flag)\(\s*"([A-Z_0-9]+)"', source))
    settings |= set(re.findall(r'\(\s*"([A-Z_]+_RATELIMIT)"', source))
    assert {"CHAIRSIDE_INSTANCE", "PATIENT_BOOKING_RATELIMIT", "SMTP_TIMEOUT"} <= settings
    api = (ROOT / "docs" / "api.md").read_text()
    assert sorted(s for s in settings if f"`{s}`" not in api) == []
    assert "/staff/sign-in" in (ROOT / "docs" / "deployment.md").read_text()
