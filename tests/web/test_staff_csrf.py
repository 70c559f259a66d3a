"""CSRF on every staff form: each POST form carries a token, and a POST without one is refused."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.models import Appointment, AuditEntry, ResourceBlock
from scheduler.services import booking
from tests.web.staff_support import DAY, at, book, csrf_token, make_clinic, sign_in


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WTF_CSRF_ENABLED": True}


class Forms(HTMLParser):
    """Every <form method=post> and whether it holds a csrf_token input."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "get").lower() == "post":
            self._current = {"action": a.get("action"), "csrf": False}
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and a.get("name") == "csrf_token":
            self._current["csrf"] = bool(a.get("value"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


@pytest.fixture
def world(session, clock):
    clinic = make_clinic(session)
    appt = book(session, clinic.sf, clinic.infusion, at(DAY, 10), clock.now, 1, "Sf Patient")
    block = booking.create_block(
        session, clinic.sf.resources[3], at(DAY, 8), at(DAY, 9), reason="x", now=clock.now
    )
    session.commit()
    return clinic, appt, block


def test_sign_in_without_token_is_refused(client, world):
    clinic, _, _ = world
    r = client.post(
        "/staff/sign-in", data={"email": clinic.users["admin"].email, "password": "x" * 12}
    )
    assert r.status_code == 400
    assert sign_in(client, clinic.users["admin"].email).status_code == 302


def test_every_post_form_on_staff_pages_carries_a_token(client, world):
    clinic, appt, block = world
    assert sign_in(client, clinic.users["admin"].email).status_code == 302
    pages = [
        "/staff/",
        f"/staff/sf/calendar?date={DAY}",
        f"/staff/sf/calendar?date={DAY}&view=week&resource={clinic.sf.resources[0].id}",
        f"/staff/sf/summary?date={DAY}",
        "/staff/sf/book",
        "/staff/sf/blocks/new",
        f"/staff/sf/blocks/{block.id}",
        f"/staff/appointments/{appt.id}",
        "/staff/account",
        "/staff/settings",
        "/staff/settings/locations/sf",
        "/staff/settings/locations/new",
        "/staff/settings/services/new",
        "/staff/settings/services/infusion",
        "/staff/settings/staff/new",
        f"/staff/settings/staff/{clinic.users['nurse'].id}",
        "/staff/audit",
    ]
    seen = 0
    for path in pages:
        r = client.get(path)
        assert r.status_code == 200, path
        parser = Forms()
        parser.feed(r.get_data(as_text=True))
        for form in parser.forms:
            assert form["csrf"], (path, form["action"])
            seen += 1
    assert seen > 20


def test_posts_without_a_token_change_nothing(client, session, world):
    clinic, appt, block = world
    assert sign_in(client, clinic.users["admin"].email).status_code == 302
    nurse = clinic.users["nurse"]
    chair = clinic.sf.resources[0]
    posts = {
        "/staff/sign-out": {},
        "/staff/sf/book": {
            "service": "infusion",
            "date": str(DAY),
            "time": "12:00",
            "name": "X Y",
            "phone": "+14155550166",
            "email": "x@example.com",
        },
        "/staff/sf/blocks": {
            "resource": str(chair.id),
            "date": str(DAY),
            "start": "15:00",
            "end": "16:00",
            "reason": "r",
        },
        f"/staff/sf/blocks/{block.id}/delete": {},
        f"/staff/appointments/{appt.id}/status": {"status": "checked_in"},
        f"/staff/appointments/{appt.id}/cancel": {"reason": "r"},
        f"/staff/appointments/{appt.id}/move": {"date": str(DAY), "time": "12:00"},
        "/staff/account/tokens": {"label": "x"},
        f"/staff/account/tokens/{nurse.tokens[0].id}/revoke": {},
        "/staff/settings/locations/sf": {"name": "Renamed", "timezone": "UTC"},
        "/staff/settings/locations/sf/hours": {"day0": "09:00-10:00"},
        "/staff/settings/locations/sf/closures": {"first_day": str(DAY)},
        "/staff/settings/locations/sf/resources": {"kind": "chair", "name": "Chair 7"},
        f"/staff/settings/locations/sf/resources/{chair.id}": {"name": "Renamed"},
        "/staff/settings/locations/new": {"slug": "la", "name": "LA", "timezone": "UTC"},
        "/staff/settings/services/new": {"slug": "s", "name": "S"},
        "/staff/settings/services/infusion": {"name": "Renamed"},
        "/staff/settings/staff/new": {
            "name": "N",
            "email": "n@example.com",
            "role": "admin",
            "password": "p" * 12,
        },
        f"/staff/settings/staff/{nurse.id}": {"name": "Renamed", "role": "admin"},
        f"/staff/settings/staff/{nurse.id}/tokens": {"label": "x"},
    }
    for path, data in posts.items():
        r = client.post(path, data=data)
        assert r.status_code == 400, path
        assert "CSRF" in r.get_data(as_text=True), path
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0
    assert session.scalar(select(func.count()).select_from(ResourceBlock)) == 1
    assert session.get(Appointment, appt.id).status == "booked"
    # Still signed in (sign-out was refused too), and a form with its token goes through.
    page = client.get(f"/staff/appointments/{appt.id}")
    assert page.status_code == 200
    r = client.post(
        f"/staff/appointments/{appt.id}/status",
        data={"status": "checked_in", "csrf_token": csrf_token(page.get_data(as_text=True))},
    )
    assert r.status_code == 303
