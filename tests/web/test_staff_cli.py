"""A staff user added with `create-staff` signs in; the password never appears in the output."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import make_location
from tests.web.staff_support import sign_in


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": False}


def test_create_staff_then_sign_in(app, session, client):
    make_location(session, slug="sf", name="San Francisco Mission")
    session.commit()
    password = "a long cli password"
    result = app.test_cli_runner().invoke(
        args=[
            "create-staff",
            "--email", "Nina.Nurse@Clinic.example",
            "--name", "Nina Nurse",
            "--role", "nurse",
            "--location", "sf",
        ],
        input=f"{password}\n{password}\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert password not in result.output
    assert sign_in(client, "nina.nurse@clinic.example", "wrong password!").status_code == 401
    # Any case of the address works.
    assert sign_in(client, "nina.nurse@CLINIC.example", password).status_code == 302
    page = client.get("/staff/")
    assert "San Francisco Mission" in page.get_data(as_text=True)
    assert client.get("/staff/settings").status_code == 403
