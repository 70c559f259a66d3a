"""What staff read: local times with their zone, formatted phone numbers, labels for codes."""

from __future__ import annotations

import datetime as dt

import pytest

from scheduler.web import formatting

UTC = dt.UTC


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        (
            dt.datetime(2026, 12, 1, 17, 15, tzinfo=UTC),
            "America/Los_Angeles",
            "Tue 01 Dec 2026 09:15 PST",
        ),
        (
            dt.datetime(2026, 7, 1, 16, 0, tzinfo=UTC),
            "America/Los_Angeles",
            "Wed 01 Jul 2026 09:00 PDT",
        ),
        (
            dt.datetime(2026, 12, 1, 17, 15, tzinfo=UTC),
            "America/New_York",
            "Tue 01 Dec 2026 12:15 EST",
        ),
        (dt.datetime(2026, 12, 1, 17, 15, tzinfo=UTC), "UTC", "Tue 01 Dec 2026 17:15 UTC"),
    ],
    ids=["winter", "summer", "new-york", "utc"],
)
def test_local_times_carry_their_zone(instant, zone, expected):
    assert formatting.local_zoned(instant, zone) == expected
    assert formatting.local(instant, zone) == expected.rsplit(" ", 1)[0]
    assert formatting.local_zoned(None, zone) == ""


@pytest.mark.parametrize(
    ("raw", "shown", "href"),
    [
        ("+14155551200", "(415) 555-1200", "tel:+14155551200"),
        ("+442071838750", "+44 20 7183 8750", "tel:+442071838750"),
        ("not a number", "not a number", ""),
        ("", "", ""),
    ],
    ids=["us-national", "uk-international", "junk", "empty"],
)
def test_phone_numbers_are_formatted_and_callable(raw, shown, href):
    assert formatting.phone(raw) == shown
    assert formatting.tel_href(raw) == href


def test_audit_actions_and_reminder_events_have_human_labels():
    assert formatting.audit_action("appointment.checked_in") == "Checked in"
    assert formatting.audit_action("appointment.no_show") == "Marked no-show"
    assert formatting.audit_action("block.created") == "Chair blocked"
    assert formatting.audit_action("something.brand_new") == "Brand new"  # unknown: readable
    assert formatting.reminder_event("skipped") == "Not sent"
    assert formatting.reminder_event("confirmed") == "Patient confirmed"
