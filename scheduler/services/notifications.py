"""What every appointment change sets in motion (invite e-mail, reminder plan, waitlist).

Called by the booking service inside its transaction: it only writes rows (outbox, reminders,
the waitlist's "a slot may have freed" queue); delivery happens after commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from sqlalchemy.orm import Session

from scheduler.models import Appointment
from scheduler.services import mail, reminders, waitlist
from scheduler.services.settings import ClinicSettings

Change = Literal["booked", "rescheduled", "cancelled", "status"]


def appointment_changed(
    session: Session,
    appointment: Appointment,
    change: Change,
    now: dt.datetime,
    settings: ClinicSettings,
    *,
    invite: bool = True,
    previous: tuple[dt.datetime, dt.datetime] | None = None,
) -> None:
    """Queue what `change` to `appointment` owes the patient, and the waitlist's look at the
    time it freed (`previous`: the occupied interval a move left). Only writes rows; sends
    nothing.

    `invite` False: the caller mails the invite itself (a course's sessions share one e-mail).
    """
    reminders.sync_plan(session, appointment, change, now, settings)  # SMS reminder rows
    if invite:
        mail.queue_invite(session, appointment, change, now, settings)
    waitlist.appointment_freed(session, appointment, change, now=now, previous=previous)
