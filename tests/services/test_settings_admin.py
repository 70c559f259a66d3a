"""Editing clinic settings: validation names fields; managers stay within their locations."""

from __future__ import annotations

import datetime as dt

import pytest

from scheduler.services import settings_admin
from scheduler.services.errors import Forbidden, InvalidInput
from tests.conftest import DEFAULT_NOW as NOW
from tests.factories import HASHER, make_location, make_service, make_staff


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("08:00-12:30", [(dt.time(8), dt.time(12, 30))]),
        ("13:00-18:00, 8:00-12:30", [(dt.time(8), dt.time(12, 30)), (dt.time(13), dt.time(18))]),
        ("08:00-12:00,12:00-13:00", [(dt.time(8), dt.time(12)), (dt.time(12), dt.time(13))]),
    ],
)
def test_parse_hours_accepts(text, expected):
    assert settings_admin.parse_hours(text) == expected


@pytest.mark.parametrize(
    "text", ["9-17", "08:00-08:00", "12:00-08:00", "08:00-12:00, 11:00-13:00", "25:00-26:00"]
)
def test_parse_hours_refuses(text):
    with pytest.raises(ValueError):
        settings_admin.parse_hours(text)


def test_set_hours_names_the_bad_day(session):
    loc = make_location(session)
    with pytest.raises(InvalidInput) as exc:
        settings_admin.set_hours(session, loc, {0: "08:00-12:00", 3: "noon"})
    assert list(exc.value.fields) == ["day3"]
    assert len(loc.hours) == 7  # unchanged


def _service_values(**over):
    values = {
        "slug": "new-svc",
        "name": "New",
        "kind": "infusion",
        "resource_kind": "chair",
        "duration_minutes": "40",
        "prep_minutes": "10",
        "recovery_minutes": "10",
        "slot_step_minutes": "15",
        "min_notice_minutes": "60",
        "horizon_days": "30",
        "late_cancel_hours": "24",
        "active": True,
        "locations": set(),
    }
    values.update(over)
    return values


def test_manager_edits_only_services_of_their_locations(session):
    mine, theirs = make_location(session), make_location(session)
    manager, _ = make_staff(session, role="manager", locations=[mine])
    shared = make_service(session, [mine, theirs])
    local = make_service(session, [mine])
    assert not settings_admin.can_edit_service(manager, shared)
    assert settings_admin.can_edit_service(manager, local)
    with pytest.raises(Forbidden):
        settings_admin.save_service(
            session, manager, local, _service_values(locations={mine.id, theirs.id})
        )
    created = settings_admin.save_service(
        session, manager, None, _service_values(locations={mine.id})
    )
    assert [x.id for x in created.locations] == [mine.id]


def test_service_numbers_are_checked_field_by_field(session):
    admin, _ = make_staff(session, role="admin")
    with pytest.raises(InvalidInput) as exc:
        settings_admin.save_service(
            session, admin, None, _service_values(duration_minutes="forty", prep_minutes="-5")
        )
    assert set(exc.value.fields) == {"duration_minutes", "prep_minutes"}


def test_staff_users_need_a_location_unless_admin_and_a_long_password(session):
    loc = make_location(session)
    with pytest.raises(InvalidInput) as exc:
        settings_admin.save_staff(
            session,
            None,
            {"name": "N", "email": "n@example.com", "role": "nurse", "password": "short"},
            HASHER,
            now=NOW,
        )
    assert set(exc.value.fields) == {"password", "locations"}
    user = settings_admin.save_staff(
        session,
        None,
        {
            "name": "N",
            "email": "N@Example.com",
            "role": "nurse",
            "password": "long enough pw",
            "locations": {loc.id},
        },
        HASHER,
        now=NOW,
    )
    assert user.email == "n@example.com" and user.password_hash.startswith("$argon2")
    assert [x.id for x in user.locations] == [loc.id]


def test_resource_names_are_unique_per_location(session):
    loc = make_location(session, chairs=2)
    with pytest.raises(InvalidInput) as exc:
        settings_admin.add_resource(session, loc, kind="chair", name="Chair 2", position="")
    assert "name" in exc.value.fields
    settings_admin.add_resource(session, loc, kind="room", name="Room 9", position="7")
    assert [r.name for r in loc.resources][-1] == "Room 9"
    # Without an order, a new chair goes after the last chair (rooms are numbered apart).
    settings_admin.add_resource(session, loc, kind="chair", name="Chair 3", position="")
    assert loc.resources[-1].position == 3


def test_staff_e_mail_is_unique_whatever_its_case(session):
    make_staff(session, email="sam@clinic.example")
    with pytest.raises(InvalidInput) as exc:
        settings_admin.save_staff(
            session,
            None,
            {"name": "S", "email": "SAM@clinic.example", "role": "admin", "password": "x" * 12},
            HASHER,
            now=NOW,
        )
    assert exc.value.fields == {"email": "already used by another staff user"}
