"""db.attach: the ORM object for a row a Core statement read or wrote, on both databases."""

from __future__ import annotations

from scheduler.db import attach
from scheduler.models import Location, Patient
from scheduler.services import patients
from tests.factories import make_location


def test_a_row_read_joins_the_session_without_a_query(session):
    loc = make_location(session, slug="sf")
    session.commit()
    columns = {c.key: getattr(loc, c.key) for c in Location.__table__.columns}
    session.expunge_all()
    got = attach(session, Location(**columns))
    assert got in session
    assert not session.dirty and not session.new
    assert session.get(Location, columns["id"]) is got


def test_a_row_read_leaves_the_sessions_own_object_and_its_changes(session):
    loc = make_location(session, slug="sf")
    session.commit()
    loc.name = "Renamed, not yet flushed"
    stale = Location(**{c.key: getattr(loc, c.key) for c in Location.__table__.columns})
    stale.name = "What the database said"
    assert attach(session, stale) is loc
    assert loc.name == "Renamed, not yet flushed"


def test_finding_a_patient_refreshes_the_sessions_own_object(session, clock):
    details = patients.PatientDetails("Pat One", "+14155550101", "pat@example.com", True)
    first = patients.find_or_create(session, details, clock.now)
    session.commit()
    assert first.sms_consent is True
    again = patients.find_or_create(
        session,
        patients.PatientDetails(details.name, details.phone, details.email, False),
        clock.now,
    )
    assert again is first
    assert first.sms_consent is False  # the latest booking's choice, as the row now says
    assert not session.dirty
    session.commit()
    session.expire_all()
    assert session.get(Patient, first.id).sms_consent is False
