"""Staff accounts: sign-in does not tell which addresses exist, deactivation is for good, and one
rule (CLI and settings alike) keeps e-mail addresses unique whatever their case."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask_migrate import upgrade
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import IntegrityError

from config import TestConfig
from scheduler import create_app
from scheduler.extensions import db
from scheduler.models import ApiToken, StaffUser
from tests.web.staff_support import PASSWORD, make_clinic, sign_in


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


@pytest.fixture
def clinic(session):
    c = make_clinic(session)
    session.commit()
    return c


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Counts password verifications (each costs the same, real account or not)."""
    calls: list[str] = []
    verify = PasswordHasher.verify

    def counting(self, hash_, password):  # type: ignore[no-untyped-def]
        calls.append("verify")
        return verify(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return calls


def test_known_and_unknown_addresses_answer_alike_through_a_lockout(client, clinic, clock, hashes):
    known = clinic.users["nurse"].email
    unknown = "nobody.here@clinic.example"
    for address in (known, unknown):
        codes = [sign_in(client, address, "wrong password").status_code for _ in range(5)]
        assert codes == [401] * 5, address
        assert len(hashes) == 5, address  # one hash per refusal, known or not
        hashes.clear()
        locked = sign_in(client, address, PASSWORD)  # even the right password waits
        assert locked.status_code == 429, address
        assert "Too many failed attempts" in locked.get_data(as_text=True)
        assert 1 <= int(locked.headers["Retry-After"]) <= 15 * 60
        assert hashes == [], address  # a paused address costs no hash, known or not
    # The count follows the address whatever case it is typed in.
    assert sign_in(client, known.upper(), PASSWORD).status_code == 429
    clock.advance(minutes=16)
    assert sign_in(client, unknown, PASSWORD).status_code == 401
    assert sign_in(client, known.upper(), PASSWORD).status_code == 302


def test_a_success_forgets_earlier_failures(client, clinic, clock):
    email = clinic.users["nurse"].email
    for _ in range(4):
        assert sign_in(client, email, "wrong password").status_code == 401
    assert sign_in(client, email).status_code == 302
    client.post("/staff/sign-out")
    for _ in range(4):
        assert sign_in(client, email, "wrong password").status_code == 401
    assert sign_in(client, email).status_code == 302


def _save_nurse(client, clinic, *, active: bool) -> None:
    nurse = clinic.users["nurse"]
    data = {"name": nurse.name, "email": nurse.email, "role": "nurse"}
    data["locations"] = str(clinic.sf.id)
    if active:
        data["active"] = "on"
    r = client.post(f"/staff/settings/staff/{nurse.id}", data=data)
    assert r.status_code == 303, r.get_data(as_text=True)


def test_reactivating_a_user_revives_neither_old_tokens_nor_old_sessions(
    client, app, session, clinic
):
    nurse_client = app.test_client()
    assert sign_in(nurse_client, clinic.users["nurse"].email).status_code == 302
    assert nurse_client.get("/staff/sf/calendar").status_code == 200
    bearer = {"Authorization": f"Bearer {clinic.tokens['nurse']}"}
    assert client.get("/api/v1/locations/sf/calendar", headers=bearer).status_code == 200
    assert sign_in(client, clinic.users["admin"].email).status_code == 302
    _save_nurse(client, clinic, active=False)
    _save_nurse(client, clinic, active=True)
    # The old cookie and the old token stay dead.
    assert nurse_client.get("/staff/sf/calendar").status_code == 302
    assert client.get("/api/v1/locations/sf/calendar", headers=bearer).status_code == 401
    session.expire_all()
    tokens = session.scalars(select(ApiToken).where(ApiToken.staff_id == clinic.users["nurse"].id))
    assert [t.revoked_at is not None for t in tokens] == [True]
    # A fresh sign-in works again.
    fresh = app.test_client()
    assert sign_in(fresh, clinic.users["nurse"].email).status_code == 302
    assert fresh.get("/staff/sf/calendar").status_code == 200


def _create_staff(app, *args: str) -> Any:
    return app.test_cli_runner().invoke(
        args=["create-staff", *args, "--password", "a long enough secret"]
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--email", "ADMIN@Clinic.example", "--name", "Twin", "--role", "admin"],
            "email: already used by another staff user",
        ),
        (["--email", "x@clinic.example", "--name", "  ", "--role", "admin"], "name: required"),
        (
            ["--email", "n@clinic.example", "--name", "Nina", "--role", "nurse"],
            "locations: choose at least one location",
        ),
        (
            ["--email", "n@clinic.example", "--name", "Nina", "--role", "nurse"]
            + ["--location", "atlantis"],
            "locations: unknown location atlantis",
        ),
        (
            ["--email", "not an address", "--name", "Nina", "--role", "admin"],
            "email: not a valid e-mail address",
        ),
    ],
    ids=["case-twin", "blank-name", "nurse-without-location", "unknown-location", "bad-email"],
)
def test_create_staff_refuses_with_readable_errors(app, session, clinic, args, line):
    result = _create_staff(app, *args)
    assert result.exit_code == 2
    assert line in result.output
    assert "{" not in result.output  # no raw dict
    assert session.scalars(select(StaffUser).order_by(StaffUser.id)).all() == sorted(
        clinic.users.values(), key=lambda user: user.id
    )


def test_create_staff_stores_the_address_lower_case_and_it_signs_in(app, client, session, clinic):
    result = _create_staff(
        app, "--email", "Nina.Nurse@Clinic.example", "--name", "Nina", "--role", "nurse",
        "--location", "sf",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    session.expire_all()
    assert session.scalars(select(StaffUser.email).where(StaffUser.name == "Nina")).one() == (
        "nina.nurse@clinic.example"
    )
    assert sign_in(client, "NINA.nurse@clinic.EXAMPLE", "a long enough secret").status_code == 302


# --- the migration ----------------------------------------------------------------------------


def test_migration_sets_case_twins_aside_and_the_database_refuses_new_ones(unmigrated_url):
    app = create_app(TestConfig(unmigrated_url))
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with app.app_context():
        upgrade(revision="0006")
        with db.engine.begin() as conn:
            for staff_id, email in [(1, "Admin@Clinic.example"), (2, "admin@clinic.example")]:
                conn.execute(
                    text(
                        "INSERT INTO staff_users (id, email, name, password_hash, role, active,"
                        " failed_logins, created_at) VALUES (:id, :email, 'A', 'x', 'admin',"
                        " :on, 0, :at)"
                    ),
                    {"id": staff_id, "email": email, "on": True, "at": created},
                )
                conn.execute(
                    text(
                        "INSERT INTO api_tokens (staff_id, token_hash, label, created_at)"
                        " VALUES (:id, :hash, '', :at)"
                    ),
                    {"id": staff_id, "hash": f"{staff_id:064d}", "at": created},
                )
        upgrade()
        db.engine.dispose()
    engine = create_engine(unmigrated_url)
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT id, email, active FROM staff_users ORDER BY id")).all()
        tokens = conn.execute(
            text("SELECT staff_id, revoked_at IS NOT NULL FROM api_tokens ORDER BY staff_id")
        ).all()
    assert [(r[0], r[1], bool(r[2])) for r in rows] == [
        (1, "admin@clinic.example", True),
        (2, "duplicate-2-admin@clinic.example", False),
    ]
    # Every token is still there (no cascade from a copied table); the twin's is revoked.
    assert [(r[0], bool(r[1])) for r in tokens] == [(1, False), (2, True)]
    for statement in (
        "UPDATE staff_users SET email = 'ADMIN@clinic.example' WHERE id = 1",
        "INSERT INTO staff_users (email, name, password_hash, role, active, created_at)"
        " VALUES ('New@clinic.example', 'N', 'x', 'admin', true, CURRENT_TIMESTAMP)",
    ):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()
