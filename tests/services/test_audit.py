"""The audit log: entries keep who and when, never secrets, and filter by location."""

from __future__ import annotations

import datetime as dt

from scheduler.services import audit
from tests.factories import make_location, make_staff


def test_record_keeps_the_actor_name_and_drops_secrets(session, clock):
    loc = make_location(session)
    user, _ = make_staff(session, role="manager", locations=[loc])
    user.name = "Morgan Manager"
    entry = audit.record(
        session,
        actor=user,
        action="staff.updated",
        at=clock.now,
        location_id=loc.id,
        target="staff 9",
        details={"password": "s3cret-s3cret", "token": "cs_x", "role": "nurse"},
    )
    assert entry.staff_name == "Morgan Manager"
    assert audit.details_of(entry) == {"role": "nurse"}
    assert "s3cret" not in entry.details and "cs_x" not in entry.details


def test_name_survives_the_user(session, clock):
    user, _ = make_staff(session)
    user.name = "Gone Soon"
    entry = audit.record(session, actor=user, action="x", at=clock.now)
    session.delete(user)
    session.flush()
    session.expire_all()
    assert (entry.staff_id, entry.staff_name) == (None, "Gone Soon")


def test_recent_filters_by_location_and_orders_newest_first(session, clock):
    a, b = make_location(session), make_location(session)
    user, _ = make_staff(session)
    for i, loc in enumerate([a, b, a, None]):
        audit.record(
            session,
            actor=user,
            action=f"a{i}",
            at=clock.now + dt.timedelta(minutes=i),
            location_id=loc.id if loc else None,
        )
    assert [e.action for e in audit.recent(session, location_ids=[a.id])] == ["a2", "a0"]
    assert [e.action for e in audit.recent(session, location_ids=None)] == ["a3", "a2", "a1", "a0"]
    with_global = audit.recent(session, location_ids=[b.id], include_global=True)
    assert [e.action for e in with_global] == ["a3", "a1"]
