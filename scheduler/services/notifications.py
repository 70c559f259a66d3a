"""What every appointment change sets in motion (invite e-mail, reminder plan).

Called by the booking service inside its transaction: it only writes rows (outbox, reminders);
delivery happens after commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from sqlalchemy.orm import Session

from scheduler.models import Appointment
from scheduler.services import mail, reminders
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
) -> None:
    """Queue what `change` to `appointment` owes the patient. Only writes rows; sends nothing.

    `invite` False: the caller mails the invite itself (a course's sessions share one e-mail).
    """
    reminders.sync_plan(session, appointment, change, now, settings)  # SMS reminder rows
    if invite:
        mail.queue_invite(session, appointment, change, now, settings)
