"""Logs never carry patient phone numbers or e-mail addresses, not even inside a traceback."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import IntegrityError

from scheduler.models import Patient

PHONE, EMAIL = "+14155550177", "dup@example.com"


def test_database_errors_hide_their_bound_parameters(session):
    session.add(Patient(name="Dup", phone=PHONE, email=EMAIL))
    session.commit()
    session.add(Patient(name="Dup", phone=PHONE, email=EMAIL))
    with pytest.raises(IntegrityError) as caught:
        session.commit()
    session.rollback()
    assert "parameters hidden" in str(caught.value)


def test_a_logged_database_error_is_redacted(app, session, caplog):
    """PostgreSQL repeats the duplicate key's values in its DETAIL: the log must not."""
    session.add(Patient(name="Dup", phone=PHONE, email=EMAIL))
    session.commit()
    session.add(Patient(name="Dup", phone=PHONE, email=EMAIL))
    logger = logging.getLogger("scheduler.test")
    with caplog.at_level(logging.ERROR):
        try:
            session.commit()
        except IntegrityError:
            logger.exception("booking failed for %s", EMAIL)
    session.rollback()
    assert caplog.records
    assert PHONE not in caplog.text and EMAIL not in caplog.text
    assert "[email]" in caplog.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_plain_log_lines_are_redacted_but_times_survive(app, caplog):
    with caplog.at_level(logging.INFO):
        logging.getLogger("scheduler.test").info(
            "sms to %s (%s) at 2026-12-01 10:00 id 12345678", PHONE, EMAIL
        )
    assert PHONE not in caplog.text and EMAIL not in caplog.text
    assert "2026-12-01 10:00" in caplog.text and "12345678" in caplog.text
