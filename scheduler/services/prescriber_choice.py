"""The free times near a wanted one with a chosen prescriber (a consultation's `clinician`).

`availability.nearest_slots` answers for any prescriber; when the patient (or the front desk)
chose one, or a visit keeps the one chosen at booking (`booking.move_clinician`), the nearest
times are that prescriber's. Both come from `availability.location_slots`, so what is offered
is what booking accepts.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from scheduler.models import Location, Service
from scheduler.services import availability
from scheduler.services.availability import Slot


def nearest_slots(
    session: Session,
    location: Location,
    service: Service,
    target: dt.datetime,
    now: dt.datetime,
    *,
    clinician: int | None,
    limit: int = 6,
    days_around: int = 7,
    exclude_appointment_id: int | None = None,
    allow_short_notice: bool = False,
    resource_id: int | None = None,
) -> list[Slot]:
    """The free slots closest to `target` (itself excluded), in time order; with a `clinician`,
    only those where that prescriber is free (as `availability.nearest_slots` for anyone)."""
    if clinician is None:
        return availability.nearest_slots(
            session,
            location,
            service,
            target,
            now,
            limit=limit,
            days_around=days_around,
            exclude_appointment_id=exclude_appointment_id,
            allow_short_notice=allow_short_notice,
            resource_id=resource_id,
        )
    tz = ZoneInfo(location.timezone)
    day = target.astimezone(tz).date()
    first = max(now.astimezone(tz).date(), day - dt.timedelta(days=days_around))
    last = day + dt.timedelta(days=days_around)
    if last < first:
        return []
    slots = [
        slot
        for slot in availability.location_slots(
            session,
            location,
            service,
            first,
            (last - first).days + 1,
            now,
            exclude_appointment_id=exclude_appointment_id,
            allow_short_notice=allow_short_notice,
            resource_id=resource_id,
            clinician=clinician,
        )
        if slot.start != target
    ]
    slots.sort(key=lambda slot: (abs(slot.start - target), slot.start))
    return sorted(slots[:limit], key=lambda slot: slot.start)
